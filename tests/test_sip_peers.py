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

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsm.checker import check_lines
from tests.test_bridge_serve_e2e import CLI, finish, start_bridge

if importlib.util.find_spec("pjsua2") is None:
    pytest.skip(
        "the SIP tests need PJSIP's bindings: pip install -e '.[sip]' (extra 'sip')", allow_module_level=True
    )

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
PASSWORD = "s3cret-Pa55"
#: the agent's SIP account: the end-point of the default directory's agent-1
ACCOUNT = "1001"


def _customers(sipp: str, workdir: Path, address: str, *options: str) -> subprocess.CompletedProcess[str]:
    """SIPp playing customers (tests/peers/sipp/customer.xml) who call the
    agent's account at ``address``; its errors go to customers.errors."""
    return subprocess.run(
        [
            sipp,
            *("-sf", str(PEERS / "sipp" / "customer.xml"), "-s", ACCOUNT, address),
            *("-i", "127.0.0.1", "-p", str(_free_port()), *options, "-timeout", "110", "-nostdin"),
            *("-trace_err", "-error_file", str(workdir / "customers.errors")),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _free_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise AssertionError("no free port on loopback")


def _need(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.skip(f"{binary} is not installed: Debian's package {package} (.ci/run installs it)")
    return found


#: where Debian puts Kamailio's modules
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def certificate(workdir: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    openssl = _need("openssl", "openssl")
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class Kamailio:
    """A registrar and proxy (tests/peers/kamailio.cfg) on loopback UDP and TCP."""

    def __init__(self, workdir: Path, *, far: str, max_expires: int = 3600, tls: bool = False) -> None:
        binary = _need("kamailio", "kamailio")
        self.port = _free_port()
        self.log_path = workdir / "kamailio.log"
        self.log = self.log_path.open("w")
        rundir = workdir / "kamailio-run"
        rundir.mkdir()
        listen = ["-l", f"udp:127.0.0.1:{self.port}", "-l", f"tcp:127.0.0.1:{self.port}"]
        if tls:  # on the next port: its certificate for 127.0.0.1, made here
            if not Path(MODULES, "tls.so").exists():
                pytest.skip("Kamailio's TLS module is not installed: Debian's kamailio-tls-modules (.ci/run)")
            self.tls_port = _free_port()
            self.certificate, key = certificate(workdir, "registrar")
            listen += ["-l", f"tls:127.0.0.1:{self.tls_port}", "-A", "WITH_TLS"]
            listen += ["-A", f'TLS_CERT="{self.certificate}"', "-A", f'TLS_KEY="{key}"']
        self.process = subprocess.Popen(
            [
                binary,
                *("-f", str(PEERS / "kamailio.cfg"), "-DD", "-E", "-n", "1", "-Y", str(rundir)),
                *listen,
                *("-A", f'PASSWORD="{PASSWORD}"', "-A", f'FAR="{far}"', "-A", f"MAXEXPIRES={max_expires}"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Kamailio answers a request with Max-Forwards 0 with a 483 at once
        (to the address of its Via)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.2)
            mine = sock.getsockname()[1]
            probe = (
                f"OPTIONS sip:probe@127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{mine};branch=z9hG4bK-probe\r\n"
                "Max-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n"
                "Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            for _ in range(50):
                assert self.process.poll() is None, self.log_path.read_text()
                sock.sendto(probe, ("127.0.0.1", self.port))
                with contextlib.suppress(TimeoutError):
                    if sock.recv(4096).startswith(b"SIP/2.0 483"):
                        return
        raise AssertionError(f"kamailio did not answer: {self.log_path.read_text()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def accepted(self, what: str) -> list[str]:
        """What it logged as accepted: ``REGISTER ...`` or ``INVITE ...`` lines."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line.partition("accepted ")[2] for line in lines if f"accepted {what}" in line]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    peer = Kamailio(tmp_path, far="sip:127.0.0.1:9")
    try:
        yield peer
    finally:
        peer.close()


def _sip_serve(
    tmp_path: Path, bridge_port: int, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``serve --switch sip`` connected to the bridge process, until it closes the connection."""
    return subprocess.Popen(
        [
            *CLI,
            "serve",
            *("--connect", f"127.0.0.1:{bridge_port}", "--switch", "sip"),
            *("--trace", str(tmp_path / "serve.jsonl"), "--max-reconnects", "3", "--exit-on-close"),
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _serve(
    tmp_path: Path, bridge_port: int, kamailio: Kamailio, *options: str, password: str = PASSWORD
) -> subprocess.Popen[str]:
    """agent-1's softphone registering its account at Kamailio; the
    password comes from the environment, never the command line."""
    return _sip_serve(
        tmp_path,
        bridge_port,
        *("--sip-listen", f"127.0.0.1:{_free_port()}", "--sip-user", ACCOUNT),
        *("--sip-registrar", kamailio.address, "--sip-password-env", "SIP_PASSWORD"),
        *options,
        env={"SIP_PASSWORD": password},
    )


def _steps(tmp_path: Path, steps: list[dict[str, object]]) -> str:
    path = tmp_path / "agent.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in steps), encoding="utf-8")
    return str(path)


def _expires(registers: list[str]) -> list[int]:
    return [int(m.group(1)) for line in registers if (m := re.search(r"expires=(\d+)", line))]


def _bridge_entries(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (tmp_path / "bridge.jsonl").read_text().splitlines()]


def _responses(tmp_path: Path, name: str) -> list[dict[str, object]]:
    found = []
    for entry in _bridge_entries(tmp_path):
        message = entry.get("message")
        if entry.get("to") == "bridge" and isinstance(message, dict):
            header = message["header"]
            if header["type"] == "cti.response" and header["name"] == name:
                found.append(header)
    return found


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_registers_with_digest_auth_reregisters_and_unregisters(
    tmp_path: Path, kamailio: Kamailio, transport: str
) -> None:
    """Activate registers the agent's account at the registrar (answering
    its 401 challenge), the registration is refreshed before it expires,
    and the logout unregisters it (expires=0)."""
    steps = _steps(tmp_path, [{"actor": "bridge", "wait": {"seconds": 5}}])
    bridge, port = start_bridge(tmp_path, "--steps", steps)
    serve = _serve(tmp_path, port, kamailio, "--sip-expires", "6", "--sip-transport", transport)
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert (0, 0) == (bridge_code, serve_code), (bridge_err, serve_err)
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err
    expires = _expires(kamailio.accepted("REGISTER"))
    assert len(expires) >= 3 and expires[-1] == 0 and all(e > 0 for e in expires[:-1]), expires
    assert all(f" over {transport} " in line for line in kamailio.accepted("REGISTER")), transport
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


def test_a_wrong_password_fails_the_activate_naming_the_status(tmp_path: Path, kamailio: Kamailio) -> None:
    """The registrar refuses the credentials: activate is answered FAILURE
    with the registrar's status, and the bridge says the login failed."""
    bridge, port = start_bridge(tmp_path)
    serve = _serve(tmp_path, port, kamailio, password="not-the-password")
    bridge_code, bridge_err = finish(bridge)
    finish(serve)
    assert 1 == bridge_code, bridge_err
    activate = _responses(tmp_path, "channel.request.activate")
    assert ["FAILURE"] == [h["result"] for h in activate], activate
    assert "401 Unauthorized" in str(activate[0].get("errorMessage")), activate
    assert [] == kamailio.accepted("REGISTER")
    assert "failed: channel.request.activate" in bridge_err, bridge_err


def test_a_customer_calls_through_the_proxy(tmp_path: Path, kamailio: Kamailio) -> None:
    """SIPp, as a customer, calls the agent's number at the proxy; Kamailio
    finds the registered softphone; the agent accepts, the customer hangs
    up after talking, the agent completes. SIPp counts one successful call."""
    sipp = _need("sipp", "sip-tester")
    steps = _steps(
        tmp_path,
        [
            {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 20},
            {"actor": "agent", "action": "accept"},
            {"actor": "bridge", "wait": {"state": "ENDED"}, "timeout": 20},
            {"actor": "agent", "action": "complete"},
        ],
    )
    bridge, port = start_bridge(tmp_path, "--steps", steps)
    serve = _serve(tmp_path, port, kamailio)
    deadline = time.monotonic() + 20
    while not kamailio.accepted("REGISTER") and time.monotonic() < deadline:
        time.sleep(0.1)
    customer = _customers(sipp, tmp_path, kamailio.address, "-m", "1")
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


def _stat(output: str, row: str) -> int:
    """A cumulative figure of SIPp's final statistics screen (its last column)."""
    rows = [line for line in output.splitlines() if line.strip().startswith(row)]
    assert rows, output[-3000:]
    return int(rows[-1].split("|")[-1].strip())


def _most_at_once(trace: Path) -> int:
    """The most customer calls live at the same time, from serve's trace."""
    live: set[str] = set()
    most = 0
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        event = entry.get("event") if entry.get("from") == "switch" else None
        if not isinstance(event, dict):
            continue
        if event["kind"] == "offered":
            live.add(event["call"])
        elif event["kind"] in ("ended", "failed"):
            live.discard(event["call"])
        most = max(most, len(live))
    return most


LOAD_CALLS = 50
#: customers at once: with one consult leg, the 4 calls the SIP stack holds
AT_ONCE = 3
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


def test_load_run_of_sipp_customers_and_experts(tmp_path: Path) -> None:
    """SIPp customers call the softphone 50 times at 5 calls/s, up to 3 at a
    time (with a consult leg: the 4 calls the SIP stack's wheel is built
    for, adapters/sip/config.py MAX_CALLS); every call is accepted and
    completed, every other one consults an expert (a second SIPp, built-in
    uas) first. Every call succeeds at both SIPp ends, the bridge has every
    answer with 0 failed and 0 violations, no call is left over, and both
    traces pass check."""
    sipp = _need("sipp", "sip-tester")
    experts_port, phone_port = _free_port(), _free_port()
    consults = LOAD_CALLS // 2
    experts = subprocess.Popen(
        [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(experts_port), "-m", str(consults), "-nostdin"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    scripts = []
    for name, script in (("accept", ACCEPT), ("consult", CONSULT)):
        scripts += ["--per-call", _steps_file(tmp_path, name, script)]
    bridge, port = start_bridge(tmp_path, *scripts, "--calls", str(LOAD_CALLS), "--timeout", "120")
    serve = _sip_serve(
        tmp_path, port, "--sip-listen", f"127.0.0.1:{phone_port}", "--sip-domain", f"127.0.0.1:{experts_port}"
    )
    time.sleep(1.5)  # the bridge logs the agent in
    started = time.monotonic()
    customers = _customers(
        sipp, tmp_path, f"127.0.0.1:{phone_port}", "-m", str(LOAD_CALLS), "-r", "5", "-l", str(AT_ONCE)
    )
    took = time.monotonic() - started
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    experts_out, _ = experts.communicate(timeout=30)
    # accept and complete for each call, consult, release and retrieve for half of them;
    # and the agent's activate, ready and logout
    requests = LOAD_CALLS * 2 + consults * 3 + 3
    print(
        f"load run: {LOAD_CALLS} calls ({consults} with a consult) in {took:.1f} s, "
        f"at most {_most_at_once(tmp_path / 'serve.jsonl')} at once, {requests} agent requests"
    )
    assert 0 == customers.returncode, (
        customers.stdout[-3000:],
        (tmp_path / "customers.errors").read_text()[-3000:],
    )
    assert (LOAD_CALLS, 0) == (
        _stat(customers.stdout, "Successful call"),
        _stat(customers.stdout, "Failed call"),
    )
    assert 0 == experts.returncode, experts_out[-3000:]
    assert consults == _stat(experts_out, "Successful call")
    assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
    assert f"{requests} agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err, bridge_err
    assert AT_ONCE == _most_at_once(tmp_path / "serve.jsonl")
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


def _steps_file(tmp_path: Path, name: str, steps: list[dict[str, object]]) -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in steps), encoding="utf-8")
    return str(path)


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
    sipp = _need("sipp", "sip-tester")
    phone_port = _free_port()
    bridge, port = start_bridge(
        tmp_path, "--per-call", _steps_file(tmp_path, "call", HOLD_AND_RETRIEVE), "--calls", "1"
    )
    serve = _sip_serve(tmp_path, port, "--sip-listen", f"127.0.0.1:{phone_port}")
    time.sleep(1.5)  # the bridge logs the agent in
    customer = subprocess.run(
        [
            sipp,
            *("-sf", str(PEERS / "sipp" / "held-customer.xml"), "-key", "retrieve_answer", retrieve_answer),
            *("-s", ACCOUNT, f"127.0.0.1:{phone_port}", "-i", "127.0.0.1", "-p", str(_free_port())),
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
    assert 1 == _stat(customer.stdout, "Successful call")
    assert 0 == bridge_code, bridge_err
    assert "0 failed, 0 rule violations" in bridge_err, bridge_err


def test_a_retrieve_answered_one_way_fails_naming_the_direction(tmp_path: Path) -> None:
    """The far end answers the retrieve with a=recvonly: the agent would
    speak and hear nothing. The retrieve is answered FAILURE naming the
    direction, never reported as a call connected both ways."""
    customer, bridge_code, bridge_err = _held_customer(tmp_path, "recvonly")
    assert 0 == customer.returncode, (customer.stdout[-2000:], (tmp_path / "errors").read_text()[-2000:])
    assert 1 == bridge_code, bridge_err
    retrieve = _responses(tmp_path, "conversation.request.retrieve")
    assert ["FAILURE"] == [h["result"] for h in retrieve], retrieve
    said = str(retrieve[0]["errorMessage"])
    assert "retrieve answered with one-way media: sendonly" in said, said
    assert [] == [e for e in _switch_events(tmp_path, "retrieved")], "reported retrieved"


def _switch_events(tmp_path: Path, kind: str) -> list[dict[str, object]]:
    events = []
    for line in (tmp_path / "serve.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("from") == "switch" and entry["event"]["kind"] == kind:
            events.append(entry["event"])
    return events


def test_attended_transfer_reaches_the_target_with_replaces(tmp_path: Path) -> None:
    """The agent consults a SIPp party, then transfers the customer to it:
    the customer's phone is sent a REFER with Replaces, and the transfer
    target (tests/peers/sipp/transfer-target.xml, nobody's code here)
    receives an INVITE whose Replaces header names its consult call. The
    customer is the project's scripted far end (a PJSIP phone)."""
    from adapters.sip.demo import CastProcess  # the SIP stack loads only when this test runs

    sipp = _need("sipp", "sip-tester")
    target_port, phone_port = _free_port(), _free_port()
    target = subprocess.Popen(
        [
            sipp,
            *("-sf", str(PEERS / "sipp" / "transfer-target.xml"), "-i", "127.0.0.1", "-p", str(target_port)),
            *("-m", "2", "-timeout", "40", "-nostdin", "-trace_msg"),
            *("-trace_err", "-error_file", str(tmp_path / "errors")),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
        bridge, port = start_bridge(tmp_path, "--steps", _steps_file(tmp_path, "agent", steps))
        serve = _sip_serve(
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
    ended = [(e["call"], e["cause"]) for e in _switch_events(tmp_path, "ended")]
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
    sipp = _need("sipp", "sip-tester")
    far_port = _free_port()
    far = subprocess.Popen(
        [
            *(sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(far_port)),
            *("-m", "1", "-timeout", "40", "-nostdin", "-trace_msg"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proxy = Kamailio(tmp_path, far=f"sip:127.0.0.1:{far_port}")
    try:
        steps: list[dict[str, object]] = [
            {"actor": "agent", "action": "dial", "body": {"destination": "300"}},
            {"actor": "bridge", "wait": {"state": "STARTED"}, "timeout": 20},
            {"actor": "agent", "action": "release"},
            {"actor": "agent", "action": "complete"},
        ]
        bridge, port = start_bridge(tmp_path, "--steps", _steps_file(tmp_path, "agent", steps))
        serve = _serve(
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
    assert 0 == far.returncode and 1 == _stat(far_out, "Successful call"), far_out[-2000:]
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
    dial = _responses(tmp_path, "channel.request.dial")
    assert ["SUCCESS"] == [h["result"] for h in dial], dial
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace


def test_a_call_beyond_the_maximum_is_refused_and_logged(tmp_path: Path) -> None:
    """With --sip-max-calls 2, three customers calling at once: two ring
    (and are rejected by the desktop), the third is refused 486 Busy Here
    by the softphone, which logs why; the engine never hears of it."""
    sipp = _need("sipp", "sip-tester")
    phone_port = _free_port()
    reject: list[dict[str, object]] = [
        {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 20},
        {"actor": "bridge", "wait": {"seconds": 1}},  # the third call comes meanwhile
        {"actor": "agent", "action": "reject"},
        {"actor": "agent", "action": "complete"},
    ]
    bridge, port = start_bridge(
        tmp_path, "--per-call", _steps_file(tmp_path, "reject", reject), "--calls", "2"
    )
    serve = _sip_serve(tmp_path, port, "--sip-listen", f"127.0.0.1:{phone_port}", "--sip-max-calls", "2")
    time.sleep(1.5)  # the bridge logs the agent in
    customers = _customers(sipp, tmp_path, f"127.0.0.1:{phone_port}", "-m", "3", "-r", "20", "-l", "3")
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
    assert "refused with 486 Busy Here: the softphone holds 2 calls, its maximum" in serve_err, serve_err
    assert 2 == len(_switch_events(tmp_path, "offered"))
    busy = (tmp_path / "customers.errors").read_text()
    assert 1 == busy.count("SIP/2.0 486 Busy Here"), busy[-3000:]
    assert 3 == _stat(customers.stdout, "Failed call"), customers.stdout[-2000:]


@pytest.mark.parametrize("trusted", [True, False])
def test_registers_and_dials_over_tls_verifying_the_registrar(tmp_path: Path, trusted: bool) -> None:
    """--sip-transport tls: the softphone registers over TLS, verifying the
    registrar's certificate against --sip-tls-ca, and dials over TLS through
    it (to SIPp, built-in uas, which answers: the call connects, is released
    and completed); with a CA that did not sign the registrar's
    certificate, nothing reaches the registrar and the activate fails."""
    sipp = _need("sipp", "sip-tester")
    far_port = _free_port()
    far = subprocess.Popen(
        [
            # a UAS that copies the Record-Route into its answer, as RFC 3261 asks
            # (SIPp's built-in uas does not: the route set would be empty)
            *(sipp, "-sf", str(PEERS / "sipp" / "transfer-target.xml"), "-i", "127.0.0.1"),
            *("-p", str(far_port), "-m", "1", "-timeout", "30", "-nostdin"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proxy = Kamailio(tmp_path, far=f"sip:127.0.0.1:{far_port}", tls=True)
    try:
        own, own_key = certificate(tmp_path, "softphone")
        ca = proxy.certificate if trusted else certificate(tmp_path, "stranger")[0]
        dial: list[dict[str, object]] = [
            {"actor": "agent", "action": "dial", "body": {"destination": "300"}},
            {"actor": "bridge", "wait": {"state": "STARTED"}, "timeout": 20},
            {"actor": "agent", "action": "release"},
            {"actor": "agent", "action": "complete"},
        ]
        bridge, port = start_bridge(tmp_path, "--steps", _steps_file(tmp_path, "agent", dial))
        serve = _sip_serve(
            tmp_path,
            port,
            *("--sip-listen", f"127.0.0.1:{_free_port()}", "--sip-user", ACCOUNT),
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
    activate = _responses(tmp_path, "channel.request.activate")
    if trusted:
        assert (0, 0) == (bridge_code, serve_code), (bridge_err[-3000:], serve_err[-3000:])
        assert [300, 0] == _expires(registers), registers
        assert all(" over tls " in line for line in registers), registers
        # the dial's INVITE went over TLS (a bare number's URI carries the
        # transport), was answered, and the far end saw the call through
        assert 1 == len(invites) and " over tls " in invites[0], invites
        assert ["SUCCESS"] == [h["result"] for h in _responses(tmp_path, "channel.request.dial")]
        assert 0 == far.returncode and 1 == _stat(far_out, "Successful call"), far_out[-2000:]
    else:
        assert 1 == bridge_code, bridge_err
        assert ["FAILURE"] == [h["result"] for h in activate], activate
        assert "REGISTER at " in str(activate[0]["errorMessage"]) and "ECERTVERIF" in str(
            activate[0]["errorMessage"]
        ), activate
        assert [] == registers
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace
