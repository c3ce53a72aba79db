"""The softphone against SIP software nobody here wrote: Kamailio (Debian's
``kamailio``) as registrar and proxy with digest authentication, SIPp
(Debian's ``sip-tester``) as the customer. Each test starts and stops its
peers on loopback; a test whose peer is not installed is skipped, naming
the package (``.ci/run`` installs them).

The adapter runs as ``serve --switch sip`` against the ``bridge`` process,
as a user runs it; the assertions read what the peers themselves reported
(Kamailio's log of what it accepted, SIPp's exit status and its count of
successful calls), the bridge's verdict, and every trace passes ``check``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsm.checker import check_lines
from tests.sip_peers import (
    ACCOUNT,
    DIAL_AND_HANG_UP,
    PASSWORD,
    PEERS,
    ROOT,
    Kamailio,
    certificate,
    expires_of,
    free_port,
    most_at_once,
    need,
    responses,
    serve_registered,
    sip_serve,
    sipp_customers,
    sipp_far_end,
    stat,
    steps_file,
    switch_events,
)
from tests.test_bridge_serve_e2e import finish, start_bridge

if importlib.util.find_spec("pjsua2") is None:
    pytest.skip(
        "the SIP tests need PJSIP's bindings: pip install -e '.[sip]' (extra 'sip')", allow_module_level=True
    )

pytestmark = pytest.mark.e2e


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    peer = Kamailio(tmp_path, far="sip:127.0.0.1:9")
    try:
        yield peer
    finally:
        peer.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_registers_with_digest_auth_reregisters_and_unregisters(
    tmp_path: Path, kamailio: Kamailio, transport: str
) -> None:
    """Activate registers the agent's account at the registrar (answering
    its 401 challenge), the registration is refreshed before it expires,
    and the logout unregisters it (expires=0)."""
    steps = steps_file(tmp_path, "agent", [{"actor": "bridge", "wait": {"seconds": 5}}])
    bridge, port = start_bridge(tmp_path, "--steps", steps)
    serve = serve_registered(tmp_path, port, kamailio, "--sip-expires", "6", "--sip-transport", transport)
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert (0, 0) == (bridge_code, serve_code), (bridge_err, serve_err)
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err
    expires = expires_of(kamailio.accepted("REGISTER"))
    assert len(expires) >= 3 and expires[-1] == 0 and all(e > 0 for e in expires[:-1]), expires
    assert all(f" over {transport} " in line for line in kamailio.accepted("REGISTER")), transport
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


def test_a_wrong_password_fails_the_activate_naming_the_status(tmp_path: Path, kamailio: Kamailio) -> None:
    """The registrar refuses the credentials: activate is answered FAILURE
    with the registrar's status, and the bridge says the login failed."""
    bridge, port = start_bridge(tmp_path)
    serve = serve_registered(tmp_path, port, kamailio, password="not-the-password")
    bridge_code, bridge_err = finish(bridge)
    finish(serve)
    assert 1 == bridge_code, bridge_err
    activate = responses(tmp_path, "channel.request.activate")
    assert ["FAILURE"] == [h["result"] for h in activate], activate
    assert "401 Unauthorized" in str(activate[0].get("errorMessage")), activate
    assert [] == kamailio.accepted("REGISTER")
    assert "failed: channel.request.activate" in bridge_err, bridge_err


def test_a_customer_calls_through_the_proxy(tmp_path: Path, kamailio: Kamailio) -> None:
    """SIPp, as a customer, calls the agent's number at the proxy; Kamailio
    finds the registered softphone; the agent accepts, the customer hangs
    up after talking, the agent completes. SIPp counts one successful call."""
    sipp = need("sipp", "sip-tester")
    steps = steps_file(
        tmp_path,
        "agent",
        [
            {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 20},
            {"actor": "agent", "action": "accept"},
            {"actor": "bridge", "wait": {"state": "ENDED"}, "timeout": 20},
            {"actor": "agent", "action": "complete"},
        ],
    )
    bridge, port = start_bridge(tmp_path, "--steps", steps)
    serve = serve_registered(tmp_path, port, kamailio)
    deadline = time.monotonic() + 20
    while not kamailio.accepted("REGISTER") and time.monotonic() < deadline:
        time.sleep(0.1)
    customer = sipp_customers(sipp, tmp_path, kamailio.address, "-m", "1")
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert 0 == customer.returncode, (customer.stdout[-2000:], (tmp_path / "customers.errors").read_text())
    assert (0, 0) == (bridge_code, serve_code), (bridge_err, serve_err)
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err
    invites = kamailio.accepted("INVITE")
    to_agent = [line for line in invites if "from sip:5551000@" in line and f"to sip:{ACCOUNT}@" in line]
    assert 1 == len(to_agent), invites
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


LOAD_CALLS = 50
#: a SIP stack for more calls than the wheel's 4, built by .ci/pjsua2 (which .ci/run runs)
BUILT_STACK = os.environ.get("TFSM_PJSUA2", "")


@pytest.mark.parametrize("stack", ["wheel", "built"])
def test_the_stack_holds_the_calls_it_declares(stack: str) -> None:
    """The SIP stack really holds the calls it declares, each with its media:
    one endpoint, set up as the softphone sets it up, calls itself until
    every slot is taken (tests/sip_capacity.py), and every leg is
    confirmed with audio both ways. The wheel declares nothing and holds 4;
    a build of .ci/pjsua2 declares what it was built for (64 by default).
    The softphone's default maximum follows: the wheel's 4, or one less
    than a larger stack holds."""
    if stack == "built" and not BUILT_STACK:
        pytest.skip("no SIP stack for more than 4 calls: set TFSM_PJSUA2 to a build of .ci/pjsua2")
    # the wheel, whatever stack a PYTHONPATH would put first (.ci/run runs the SIP tests on both)
    env = {**os.environ, "PYTHONPATH": os.path.realpath(BUILT_STACK) if stack == "built" else ""}
    command = [sys.executable, "-m", "tests.sip_capacity"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert 0 == run.returncode, run.stderr[-3000:]
    said = json.loads(run.stdout.splitlines()[-1])
    if stack == "built":
        assert said["stack"].startswith(os.path.realpath(BUILT_STACK)), said
        assert said["capacity"] > 4, said
        assert said["capacity"] - 1 == said["default_max_calls"], said
    else:
        assert (4, 4) == (said["capacity"], said["default_max_calls"]), said
    every = said["capacity"]
    assert ("", every, every) == (said["failure"], said["legs"], said["confirmed"]), said


#: every call: accepted when it rings, completed once the customer has hung up
ACCEPT: list[dict[str, object]] = [
    {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 30},
    {"actor": "agent", "action": "accept"},
    {"actor": "bridge", "wait": {"state": "ENDED"}, "timeout": 30},
    {"actor": "agent", "action": "complete"},
]
#: every other call: a consult of an expert too, released, and the customer retrieved
CONSULT: list[dict[str, object]] = [
    *ACCEPT[:2],
    {"actor": "agent", "action": "consult", "body": {"destination": "300"}},
    {"actor": "bridge", "wait": {"state": "TALKING", "role": "consult"}, "timeout": 30},
    {"actor": "agent", "action": "release", "role": "consult"},
    {"actor": "agent", "action": "retrieve"},
    *ACCEPT[2:],
]


@pytest.mark.parametrize(
    ("stack", "at_once"),
    [
        # with one consult leg, the 4 calls the wheel's SIP stack holds
        pytest.param("wheel", 3, id="wheel-3-at-once"),
        # 8 customers and their consult legs: a stack built for 64 calls
        pytest.param("built", 8, id="built-8-at-once"),
    ],
)
def test_load_run_of_sipp_customers_and_experts(tmp_path: Path, stack: str, at_once: int) -> None:
    """SIPp customers call the softphone 50 times at 5 calls/s, up to
    ``at_once`` at a time; every call is accepted and completed, every
    other one consults an expert (a second SIPp, built-in uas) first. Every
    call succeeds at both SIPp ends, the bridge has every answer with 0
    failed and 0 violations, no call is left over, and both traces pass
    check. On the wheel of the extra 'sip' (4 calls), 3 customers at once;
    on a stack built by .ci/pjsua2 (TFSM_PJSUA2 names its directory), 8,
    with the softphone's default maximum (one less than the stack holds)."""
    if stack == "built":
        if not BUILT_STACK:
            pytest.skip(
                "no SIP stack for more than 4 calls: build one with `bash .ci/pjsua2 DIR` "
                "and set TFSM_PJSUA2=DIR (.ci/run does)"
            )
        env = {"PYTHONPATH": os.path.realpath(BUILT_STACK)}
    else:
        env = {"PYTHONPATH": ""}  # the wheel, whatever a PYTHONPATH would put first
    sipp = need("sipp", "sip-tester")
    experts_port, phone_port = free_port(), free_port()
    consults = LOAD_CALLS // 2
    experts = sipp_far_end(sipp, tmp_path, experts_port, "uas", "-m", str(consults))
    scripts = []
    for name, script in (("accept", ACCEPT), ("consult", CONSULT)):
        scripts += ["--per-call", steps_file(tmp_path, name, script)]
    bridge, port = start_bridge(tmp_path, *scripts, "--calls", str(LOAD_CALLS), "--timeout", "120")
    serve = sip_serve(
        tmp_path,
        port,
        *("--sip-listen", f"127.0.0.1:{phone_port}", "--sip-domain", f"127.0.0.1:{experts_port}"),
        env=env,
    )
    time.sleep(1.5)  # the bridge logs the agent in
    started = time.monotonic()
    customers = sipp_customers(
        sipp, tmp_path, f"127.0.0.1:{phone_port}", "-m", str(LOAD_CALLS), "-r", "5", "-l", str(at_once)
    )
    took = time.monotonic() - started
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    experts_out, _ = experts.communicate(timeout=30)
    # accept and complete for each call, consult, release and retrieve for half of them;
    # and the agent's activate, ready and logout
    requests = LOAD_CALLS * 2 + consults * 3 + 3
    print(
        f"load run ({stack} stack): {LOAD_CALLS} calls ({consults} with a consult) in {took:.1f} s, "
        f"at most {most_at_once(tmp_path / 'serve.jsonl')} customers at once, {requests} agent requests"
    )
    assert 0 == customers.returncode, (
        customers.stdout[-3000:],
        (tmp_path / "customers.errors").read_text()[-3000:],
    )
    assert (LOAD_CALLS, 0) == (
        stat(customers.stdout, "Successful call"),
        stat(customers.stdout, "Failed call"),
    )
    assert 0 == experts.returncode, experts_out[-3000:]
    assert consults == stat(experts_out, "Successful call")
    assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
    assert f"{requests} agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err, bridge_err
    assert at_once == most_at_once(tmp_path / "serve.jsonl")
    assert "refused with 486" not in serve_err, serve_err[-3000:]
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


HOLD_AND_RETRIEVE: list[dict[str, object]] = [
    {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 20},
    {"actor": "agent", "action": "accept"},
    {"actor": "agent", "action": "hold"},
    {"actor": "agent", "action": "retrieve"},
    {"actor": "bridge", "wait": {"state": "ENDED"}, "timeout": 20},
    {"actor": "agent", "action": "complete"},
]


def _held_customer(tmp_path: Path, retrieve_answer: str) -> tuple[subprocess.CompletedProcess[str], int, str]:
    """A SIPp customer (tests/peers/sipp/held-customer.xml) who checks that
    the agent's hold offers a=sendonly and the retrieve a=sendrecv, and
    answers the retrieve with a=``retrieve_answer``; the bridge holds and
    retrieves it. SIPp's result, the bridge's exit status and its report."""
    sipp = need("sipp", "sip-tester")
    phone_port = free_port()
    bridge, port = start_bridge(
        tmp_path, "--per-call", steps_file(tmp_path, "call", HOLD_AND_RETRIEVE), "--calls", "1"
    )
    serve = sip_serve(tmp_path, port, "--sip-listen", f"127.0.0.1:{phone_port}")
    time.sleep(1.5)  # the bridge logs the agent in
    customer = subprocess.run(
        [
            sipp,
            *("-sf", str(PEERS / "sipp" / "held-customer.xml"), "-key", "retrieve_answer", retrieve_answer),
            *("-s", ACCOUNT, f"127.0.0.1:{phone_port}", "-i", "127.0.0.1", "-p", str(free_port())),
            *("-m", "1", "-timeout", "30", "-nostdin", "-trace_err", "-error_file", str(tmp_path / "errors")),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert 0 == serve_code, serve_err[-3000:]
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace
    return customer, bridge_code, bridge_err


def test_hold_and_retrieve_as_the_held_party_saw_them(tmp_path: Path) -> None:
    """The independent party asserts the SDP it was offered: a=sendonly for
    the hold, a=sendrecv for the retrieve (its scenario fails otherwise)."""
    customer, bridge_code, bridge_err = _held_customer(tmp_path, "sendrecv")
    assert 0 == customer.returncode, (customer.stdout[-2000:], (tmp_path / "errors").read_text()[-2000:])
    assert 1 == stat(customer.stdout, "Successful call")
    assert 0 == bridge_code, bridge_err
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err


def test_a_retrieve_answered_one_way_fails_naming_the_direction(tmp_path: Path) -> None:
    """The far end answers the retrieve with a=recvonly: the agent would
    speak and hear nothing. The retrieve is answered FAILURE naming the
    direction, never reported as a call connected both ways."""
    customer, bridge_code, bridge_err = _held_customer(tmp_path, "recvonly")
    assert 0 == customer.returncode, (customer.stdout[-2000:], (tmp_path / "errors").read_text()[-2000:])
    assert 1 == bridge_code, bridge_err
    retrieve = responses(tmp_path, "conversation.request.retrieve")
    assert ["FAILURE"] == [h["result"] for h in retrieve], retrieve
    said = str(retrieve[0]["errorMessage"])
    assert "retrieve answered with one-way media: sendonly" in said, said
    assert [] == [e for e in switch_events(tmp_path, "retrieved")], "reported retrieved"


def test_attended_transfer_reaches_the_target_with_replaces(tmp_path: Path) -> None:
    """The agent consults a SIPp party, then transfers the customer to it:
    the customer's phone is sent a REFER with Replaces, and the transfer
    target (tests/peers/sipp/transfer-target.xml, nobody's code here)
    receives an INVITE whose Replaces header names its consult call. The
    customer is the project's scripted far end (a PJSIP phone)."""
    from adapters.sip.demo import CastProcess  # the SIP stack loads only when this test runs

    sipp = need("sipp", "sip-tester")
    target_port, phone_port = free_port(), free_port()
    target = sipp_far_end(
        sipp,
        tmp_path,
        target_port,
        "transfer-target.xml",
        *("-m", "2", "-timeout", "40", "-trace_msg", "-trace_err", "-error_file", str(tmp_path / "errors")),
    )
    steps: list[dict[str, object]] = [
        {"actor": "agent", "action": "accept"},
        {"actor": "agent", "action": "consult", "body": {"destination": "300"}},
        {"actor": "bridge", "wait": {"state": "TALKING", "role": "consult"}, "timeout": 20},
        {"actor": "agent", "action": "transfer"},
        {"actor": "bridge", "wait": {"state": "ENDED"}, "timeout": 20},
        {"actor": "agent", "action": "complete"},
    ]
    cast = CastProcess(f"sip:agent@127.0.0.1:{phone_port}")
    try:
        bridge, port = start_bridge(tmp_path, "--steps", steps_file(tmp_path, "agent", steps))
        serve = sip_serve(
            tmp_path,
            port,
            "--sip-listen",
            f"127.0.0.1:{phone_port}",
            "--sip-domain",
            f"127.0.0.1:{target_port}",
        )
        cast.send({"do": "call", "party": "5551000", "to": "800"})
        bridge_code, bridge_err = finish(bridge)
        serve_code, serve_err = finish(serve)
        cast.send({"do": "hangup", "party": "5551000"})  # the customer, now talking with the target
        target_out, _ = target.communicate(timeout=30)
    finally:
        cast.close()
        if target.poll() is None:
            target.kill()
    assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err
    assert 0 == target.returncode, (target_out[-2000:], (tmp_path / "errors").read_text()[-2000:])
    # what the target logged: "call CALL-ID [Replaces: CALL-ID;to-tag=...;from-tag=...]"
    calls = [line.split() for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert 2 == len(calls) and 2 == len(calls[0]), calls  # the consult, without Replaces
    assert "Replaces:" == calls[1][2] and calls[1][3].startswith(f"{calls[0][1]};"), calls
    ended = [(e["call"], e["cause"]) for e in switch_events(tmp_path, "ended")]
    assert [("sip-1", "transferred"), ("sip-2", "transferred")] == sorted(ended), ended
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


def test_the_agent_dials_through_the_proxy_answering_its_challenge(tmp_path: Path) -> None:
    """The desktop dials (channel.request.dial): the softphone's INVITE goes
    to the proxy, which challenges it (407, digest auth of an INVITE from a
    registered account); the softphone answers the challenge, and the proxy
    relays the call to the far end (SIPp, built-in uas), which answers. The
    request goes through the --sip-proxy, the offer puts the codec of
    --sip-codecs first and the media at --sip-media-address."""
    sipp = need("sipp", "sip-tester")
    far_port = free_port()
    far = sipp_far_end(sipp, tmp_path, far_port, "uas", "-m", "1", "-timeout", "40", "-trace_msg")
    proxy = Kamailio(tmp_path, far=f"sip:127.0.0.1:{far_port}")
    try:
        bridge, port = start_bridge(tmp_path, "--steps", steps_file(tmp_path, "agent", DIAL_AND_HANG_UP))
        serve = serve_registered(
            tmp_path,
            port,
            proxy,
            *("--sip-codecs", "PCMA/8000", "--sip-proxy", proxy.address, "--sip-media-address", "127.0.0.2"),
        )
        bridge_code, bridge_err = finish(bridge)
        serve_code, serve_err = finish(serve)
        far_out, _ = far.communicate(timeout=30)
        invites = proxy.accepted("INVITE")
        challenged = [line for line in proxy.log_path.read_text().splitlines() if "challenged INVITE" in line]
    finally:
        proxy.close()
        if far.poll() is None:
            far.kill()
    assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err
    assert 1 == len(challenged), challenged  # the first INVITE, without credentials: 407
    # one INVITE, the agent's, let through once it answered the challenge
    assert 1 == len(invites) and invites[0].startswith(f"INVITE from sip:{ACCOUNT}@"), invites
    assert invites[0].endswith("(authenticated)") and " to sip:300@" in invites[0], invites
    assert f"route=<sip:{proxy.address};lr>" in invites[0], invites  # through --sip-proxy
    assert 0 == far.returncode and 1 == stat(far_out, "Successful call"), far_out[-2000:]
    # the codec asked for first (--sip-codecs: PCMA, payload type 8) is offered first
    offers = [
        line
        for log in tmp_path.glob("uas_*_messages.log")
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("m=audio")
    ]
    assert offers and offers[0].split()[3] == "8", offers
    # its media where --sip-media-address puts it
    addresses = [
        line
        for log in tmp_path.glob("uas_*_messages.log")
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("c=IN IP4")
    ]
    assert addresses and addresses[0] == "c=IN IP4 127.0.0.2", addresses
    dial = responses(tmp_path, "channel.request.dial")
    assert ["SUCCESS"] == [h["result"] for h in dial], dial
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


def test_a_call_beyond_the_maximum_is_refused_and_logged(tmp_path: Path) -> None:
    """With --sip-max-calls 2, three customers calling at once: two ring
    (and are rejected by the desktop), the third is refused 486 Busy Here
    by the softphone, which logs why; the engine never hears of it."""
    sipp = need("sipp", "sip-tester")
    phone_port = free_port()
    reject: list[dict[str, object]] = [
        {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 20},
        {"actor": "bridge", "wait": {"seconds": 1}},  # the third call comes meanwhile
        {"actor": "agent", "action": "reject"},
        {"actor": "agent", "action": "complete"},
    ]
    bridge, port = start_bridge(
        tmp_path, "--per-call", steps_file(tmp_path, "reject", reject), "--calls", "2"
    )
    serve = sip_serve(tmp_path, port, "--sip-listen", f"127.0.0.1:{phone_port}", "--sip-max-calls", "2")
    time.sleep(1.5)  # the bridge logs the agent in
    customers = sipp_customers(sipp, tmp_path, f"127.0.0.1:{phone_port}", "-m", "3", "-r", "20", "-l", "3")
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
    assert "refused with 486 Busy Here: the softphone holds 2 calls, its maximum" in serve_err, serve_err
    assert 2 == len(switch_events(tmp_path, "offered"))
    busy = (tmp_path / "customers.errors").read_text()
    assert 1 == busy.count("SIP/2.0 486 Busy Here"), busy[-3000:]
    assert 3 == stat(customers.stdout, "Failed call"), customers.stdout[-2000:]


@pytest.mark.parametrize("trusted", [True, False])
def test_registers_and_dials_over_tls_verifying_the_registrar(tmp_path: Path, trusted: bool) -> None:
    """--sip-transport tls: the softphone registers over TLS, verifying the
    registrar's certificate against --sip-tls-ca, and dials over TLS through
    it (to a SIPp UAS, which answers: the call connects, is released and
    completed, and SIPp counts it); with a CA that did not sign the registrar's
    certificate, nothing reaches the registrar and the activate fails."""
    sipp = need("sipp", "sip-tester")
    far_port = free_port()
    # a UAS that copies the Record-Route into its answer, as RFC 3261 asks
    # (SIPp's built-in uas does not: the route set would be empty)
    far = sipp_far_end(sipp, tmp_path, far_port, "transfer-target.xml", "-m", "1", "-timeout", "30")
    proxy = Kamailio(tmp_path, far=f"sip:127.0.0.1:{far_port}", tls=True)
    try:
        own, own_key = certificate(tmp_path, "softphone")
        ca = proxy.certificate if trusted else certificate(tmp_path, "stranger")[0]
        bridge, port = start_bridge(tmp_path, "--steps", steps_file(tmp_path, "agent", DIAL_AND_HANG_UP))
        serve = sip_serve(
            tmp_path,
            port,
            *("--sip-listen", f"127.0.0.1:{free_port()}", "--sip-user", ACCOUNT),
            *("--sip-registrar", f"127.0.0.1:{proxy.tls_port}", "--sip-password-env", "SIP_PASSWORD"),
            *("--sip-transport", "tls", "--sip-tls-cert", str(own), "--sip-tls-key", str(own_key)),
            *("--sip-tls-ca", str(ca)),
            env={"SIP_PASSWORD": PASSWORD},
        )
        bridge_code, bridge_err = finish(bridge)
        serve_code, serve_err = finish(serve)
        registers, invites = proxy.accepted("REGISTER"), proxy.accepted("INVITE")
    finally:
        proxy.close()
        try:  # it ends by itself after its one call; without a call, at once
            far_out, _ = far.communicate(timeout=20 if trusted else 0.1)
        except subprocess.TimeoutExpired:
            far.kill()
            far_out, _ = far.communicate()
    activate = responses(tmp_path, "channel.request.activate")
    if trusted:
        assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
        assert [300, 0] == expires_of(registers), registers
        assert all(" over tls " in line for line in registers), registers
        # the dial's INVITE went over TLS (a bare number's URI carries the
        # transport), was answered, and the far end saw the call through
        assert 1 == len(invites) and " over tls " in invites[0], invites
        assert ["SUCCESS"] == [h["result"] for h in responses(tmp_path, "channel.request.dial")]
        assert 0 == far.returncode and 1 == stat(far_out, "Successful call"), far_out[-2000:]
    else:
        assert 1 == bridge_code, bridge_err
        assert ["FAILURE"] == [h["result"] for h in activate], activate
        assert "REGISTER at " in str(activate[0]["errorMessage"]) and "ECERTVERIF" in str(
            activate[0]["errorMessage"]
        ), activate
        assert [] == registers
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace
