"""The message envelope and the targets: F-ENV, D-ENV, D-BODY, F-TARGET, D-TARGET.

Every test goes through the real ``run`` runner (tests/drive.py), so what is
checked is what a bridge would receive on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm.catalog import CATALOG, FreeProperties, NoProperties
from fsm.checker import check_lines
from fsm.fastread import read_plain_event, read_valid
from fsm.intake import _read_checked, _read_event
from fsm.switch_events import EVENT_FIELDS
from tests.driver import (
    CH,
    Driver,
    body,
    commands,
    error_message,
    events,
    login_trace,
    messages,
    ok,
    responses,
    result,
    state,
)

ROOT = Path(__file__).resolve().parents[1]
#: the header keys the client writes (protocol.md, the table of "Messages")
CLIENT_HEADER_KEYS = {"type", "name", "target", "requestId", "result", "errorMessage"}


def full_call_outputs() -> list[dict[str, Any]]:
    d = Driver()
    out: list[dict[str, Any]] = []
    for line in (ROOT / "adapters" / "scenarios" / "full-call.jsonl").read_text().splitlines():
        out += d.feed(json.loads(line))
    return out


def test_f_env_every_message_the_client_writes_is_header_and_body() -> None:
    """F-ENV, D-ENV: over the whole recorded call, every message out is
    exactly {header, body}, the body an object, the header only the table's keys."""
    written = messages(full_call_outputs())
    assert len(written) > 30
    for message in written:
        assert {"header", "body"} == set(message), message
        assert isinstance(message["body"], dict), message
        assert set(message["header"]) <= CLIENT_HEADER_KEYS, message


def test_d_env_body_may_be_absent_or_empty_on_input() -> None:
    """D-ENV: a message without properties may leave its body out or send {}."""
    d = Driver()
    d.switch("offered")
    without = d.feed(
        {
            "from": "bridge",
            "message": {
                "header": {
                    "type": "cti.query",
                    "name": "interaction.query.init",
                    "target": f"{CH}.c1",
                    "requestId": "r1",
                }
            },
        }
    )
    empty = d.msg("interaction.query.init", rid="r2", properties={})
    assert "SUCCESS" == result(without)
    assert "SUCCESS" == result(empty)


def test_d_env_unknown_keys_are_ignored_at_every_level() -> None:
    """D-ENV: unknown keys at the top level, in the header and in a body are
    ignored: the consult runs with its destination, as without them."""
    d = Driver()
    d.talking_call()
    message = {
        "header": {
            "type": "cti.request",
            "name": "interaction.request.consult",
            "target": f"{CH}.c1",
            "requestId": "r-x",
            "priority": "high",
        },
        "body": {"destination": "200", "comment": {"from": "a newer bridge"}},
        "trace-id": 7,
    }
    out = d.feed({"from": "bridge", "message": message})
    assert "SUCCESS" == result(out)
    consult = [c for c in commands(out) if c["op"] == "consult"]
    assert [{"id": consult[0]["id"], "op": "consult", "call": "c1", "destination": "200"}] == consult


def test_d_env_every_key_of_setdata_is_data() -> None:
    """D-ENV: where a body is data (setdata), no key is ignored."""
    d = Driver()
    d.talking_call()
    out = d.req("setdata", destination="x", comment="y")
    assert ok(out)
    assert {"destination": "x", "comment": "y"} == {
        k: v
        for k, v in body(d.msg("interaction.query.data"))["interaction-data"].items()
        if k in ("destination", "comment")
    }


@pytest.mark.parametrize("old_key", ["headers", "properties"])
def test_d_env_the_old_envelope_is_a_defect_naming_the_real_one(old_key: str) -> None:
    """D-ENV, D-BAD: a message with `headers` or `properties` is refused,
    and the error says that the envelope is {header, body}; nothing changes."""
    d = Driver()
    d.talking_call()
    before = state(d.engine)
    header = {
        "type": "cti.request",
        "name": "interaction.request.consult",
        "target": f"{CH}.c1",
        "requestId": "r-old",
    }
    if old_key == "headers":
        out = d.feed({"from": "bridge", "message": {"headers": header, "properties": {"destination": "2"}}})
        [error] = [o["protocol_error"] for o in out if "protocol_error" in o]
        assert "D-BAD" == error["rule"]
        assert "the envelope is {header, body}" in error["message"]
    else:
        out = d.feed({"from": "bridge", "message": {"header": header, "properties": {"destination": "2"}}})
        assert "FAILURE" == result(out)
        assert "D-BAD" == d.rule(out)
        assert "unknown key 'properties': the envelope is {header, body}" == error_message(out)
    assert [] == commands(out)
    assert before == state(d.engine)


def test_d_env_a_body_that_is_not_an_object_names_the_body() -> None:
    """D-ENV, D-BAD: the error names body.<key> (and header.<key>) as on the wire."""
    d = Driver()
    d.talking_call()
    out = d.req("consult", destination=200)
    assert "FAILURE" == result(out)
    assert "body.destination: expected a string, got the number 200" in error_message(out)
    out = d.feed(
        {
            "from": "bridge",
            "message": {
                "header": {"type": "cti.request", "name": 5, "target": f"{CH}.c1", "requestId": "r9"}
            },
        }
    )
    assert "header.name: expected a string" in error_message(out)


def test_d_body_bodies_the_client_writes() -> None:
    """D-BODY: init snapshots, consult's nativeid, {} on FAILURE and for a
    plain SUCCESS; interaction.created, datachanged and conversation.ended bodies."""
    d = Driver()
    created = events(d.switch("offered", ani="1"))
    assert [{"interactionid": "c1", "type": "telephony"}] == [e["body"] for e in created]
    assert "ALERTING" == d.init()["interaction-state"]
    refused = responses(d.req("consult", destination="200"))
    assert [{}] == [r["body"] for r in refused]
    assert [{}] == [r["body"] for r in responses(d.create("b1", "c1"))]
    d.conv_init("b1")
    d.req("accept")
    changed = events(d.req("setdata", note="vip"))
    assert [{"interaction-data": {"note": "vip"}}] == [e["body"] for e in changed]
    consult = responses(d.req("consult", destination="200"))
    assert [{"nativeid": "sim-1"}] == [r["body"] for r in consult]
    assert ok(d.create("b2", "sim-1"))
    d.conv_init("b2")
    ended = [e for e in events(d.conv("release", "b2")) if e["header"]["name"] == "conversation.ended"]
    assert [{"cause": "released"}] == [e["body"] for e in ended]
    started = [
        e for e in events(d.switch("ended", "c1", cause="hangup")) if e["header"]["name"].startswith("conv")
    ]
    assert [{"cause": "hangup"}] == [e["body"] for e in started]


@pytest.mark.parametrize(
    ("call", "encoded"),
    [("c1.k1", "c1%2Ek1"), ("50%off", "50%25off"), ("a.%2E", "a%2E%252E"), ("plain", "plain")],
)
def test_d_target_ids_the_client_places_are_percent_encoded(call: str, encoded: str) -> None:
    """D-TARGET, F-TARGET: the interaction's target is CHANNEL.I with I the
    call id encoded for % and . only; interactionid is that encoded I; the
    init lists the raw call id (D-CONV-ID)."""
    d = Driver()
    [created] = events(d.switch("offered", call))
    assert {"interactionid": encoded, "type": "telephony"} == created["body"]
    init = d.init(f"{CH}.{encoded}")
    assert {"primary": {"id": call}} == init["conversations"]


def test_d_target_a_dotted_call_id_cannot_shadow_another_interaction() -> None:
    """D-TARGET: call c1's conversation k1 is CH.c1.k1; a later call named
    "c1.k1" gets CH.c1%2Ek1, and both stay reachable."""
    d = Driver()
    d.switch("offered", "c1")
    d.init()
    assert ok(d.create("k1", "c1"))
    d.switch("offered", "c1.k1")
    assert "ALERTING" == d.init(f"{CH}.c1%2Ek1")["interaction-state"]
    assert {"conversation-state": "ALERTING", "nativeid": "c1", "role": "primary"} == d.conv_init("k1")
    out = d.msg(
        "interaction.request.createconversation", f"{CH}.c1%2Ek1", None, {"id": "k1", "nativeid": "c1.k1"}
    )
    assert ok(out)
    assert "c1.k1" == body(d.msg("conversation.query.init", f"{CH}.c1%2Ek1.k1"))["nativeid"]


@pytest.mark.parametrize("bridge_id", ["", "b.1", "."])
def test_d_cc_2_a_conversation_id_empty_or_dotted_is_refused(bridge_id: str) -> None:
    """D-CC-2, D-TARGET: createconversation's id must be non-empty without '.'."""
    d = Driver()
    d.switch("offered")
    d.init()
    before = state(d.engine)
    out = d.create(bridge_id, "c1")
    assert "FAILURE" == result(out)
    assert "D-CC-2" == d.rule(out)
    assert before == state(d.engine)


# -- the checker


def _trace(*client: dict[str, Any]) -> list[str]:
    asked = {
        "header": {
            "type": "cti.query",
            "name": "interaction.query.init",
            "target": f"{CH}.c1",
            "requestId": "r1",
        },
        "body": {},
    }
    created = {
        "header": {"type": "cti.event", "name": "interaction.created", "target": CH},
        "body": {"interactionid": "c1", "type": "telephony"},
    }
    lines = [{"to": "bridge", "message": created}, {"from": "bridge", "message": asked}]
    lines += [{"to": "bridge", "message": m} for m in client]
    return [*LOGIN, *(json.dumps(x) for x in lines)]


#: the agent's login, before the lines of each trace (the channel is initialized)
LOGIN: Final = login_trace()


_INIT_BODY = {
    "interaction-state": "ALERTING",
    "interaction-data": {},
    "conversations": {"primary": {"id": "c1"}},
}
_HEADER = {
    "type": "cti.response",
    "name": "interaction.query.init",
    "target": f"{CH}.c1",
    "requestId": "r1",
    "result": "SUCCESS",
}


def test_checker_is_clean_on_a_well_formed_answer() -> None:
    """The control for the next tests: the same trace, answered in the envelope."""
    assert [] == check_lines(_trace({"header": _HEADER, "body": _INIT_BODY}))


def test_checker_reports_client_messages_in_the_old_envelope_as_d_bad() -> None:
    """D-BAD, F-ENV: a response written as {headers, properties, body}."""
    found = [
        v for v in check_lines(_trace({"headers": _HEADER, "body": _INIT_BODY})) if v.line == len(LOGIN) + 3
    ]
    assert ["D-BAD"] == [v.rule for v in found]
    assert "the envelope is {header, body}" in found[0].explanation


def test_checker_reports_a_missing_body_and_extra_header_keys_as_d_env() -> None:
    """D-ENV: the client always writes body and only the table's header keys."""
    no_body = check_lines(_trace({"header": _HEADER}))
    assert "D-ENV" in [v.rule for v in no_body]
    extra = check_lines(_trace({"header": {**_HEADER, "properties": "x"}, "body": _INIT_BODY}))
    assert ["D-ENV"] == [v.rule for v in extra]


def test_checker_reports_a_failure_with_a_body_as_d_body() -> None:
    """D-BODY: a FAILURE's body is always {}."""
    failure = {**_HEADER, "result": "FAILURE", "errorMessage": "no"}
    assert [] == check_lines(_trace({"header": failure, "body": {}}))
    assert ["D-BODY"] == [v.rule for v in check_lines(_trace({"header": failure, "body": {"x": "1"}}))]


def test_checker_judges_a_request_lost_in_a_drop_as_lost() -> None:
    """D-RECONNECT, harness.md "Traces": a request left unanswered when the
    trace's next {"connection": N} line comes is lost, not unanswered (S-REQ-1)."""
    unanswered = _trace()
    assert ["S-REQ-1"] == [v.rule for v in check_lines([json.dumps({"connection": 1}), *unanswered])]
    lost = [json.dumps({"connection": 1}), *unanswered, json.dumps({"connection": 2})]  # the login's too
    assert [] == check_lines(lost)


# -- the one-pass reader (fsm/fastread.py) and the general one (fsm/intake.py)

_names = st.sampled_from(sorted(CATALOG))
_text = st.text(max_size=6)
_json_leaf = st.none() | st.booleans() | st.integers(-3, 3) | _text


@st.composite
def near_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Messages close to well-formed: the right shape most of the time, a
    key or a type off now and then."""
    name = draw(_names)
    spec = CATALOG[name]
    header: dict[str, Any] = {
        "type": spec.kind,
        "name": name,
        "target": f"{CH}.c1",
        "requestId": draw(st.sampled_from(["r1", "", "x" * 257, "r\ud800"]) | _text),
    }
    if draw(st.booleans()):
        header[draw(st.sampled_from(["type", "name", "target", "requestId", "result", "extra"]))] = draw(
            _json_leaf
        )
    message: dict[str, Any] = {"header": header}
    if spec.properties not in (NoProperties, FreeProperties):
        keys = [f for f in spec.properties.__attrs_attrs__]
        body: Any = {k.name: draw(_text) for k in keys}
    else:
        body = draw(st.dictionaries(_text, _text, max_size=2))
    if draw(st.booleans()):
        body = (
            draw(st.dictionaries(_text, _json_leaf, max_size=3)) if draw(st.booleans()) else draw(_json_leaf)
        )
    if draw(st.booleans()):
        message["body"] = body
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.sampled_from(["headers", "properties", "other"]))] = {}
    return message


@settings(max_examples=400, deadline=None)
@given(near_messages())
def test_the_one_pass_reader_equals_the_general_reader_or_declines(message: dict[str, Any]) -> None:
    """D-BAD, D-ENV: on generated input the fast reader returns exactly what
    the general reader returns, or declines (None)."""
    fast = read_valid(message, False)
    general = _read_checked(message)
    if fast is not None:
        assert general == fast


# -- the one-pass switch-event reader and the general one (fsm/switch_events.py)

_plain_key = st.sampled_from(["a", "b", "k"])


def _nested_data(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """Data as D-DATA wants it (strings and objects), ``depth`` levels deep."""
    leaf = st.dictionaries(_plain_key, st.sampled_from(["v", "w"]), max_size=3)
    if depth <= 1:
        return leaf
    return st.builds(lambda inner, rest: {**rest, "k": inner}, _nested_data(depth - 1), leaf)


#: data of 1 to 12 levels (D-DATA keeps 8), or with values that are not strings
_event_data = st.integers(1, 12).flatmap(_nested_data) | st.dictionaries(
    _text, _text | _json_leaf, max_size=3
)
_odd_value = st.sampled_from(["", "c\u00e9", "c\ud800"]) | _text


@st.composite
def near_switch_events(draw: st.DrawFn) -> dict[str, Any]:
    """Switch events close to well-formed (harness.md, "Switch events"): half
    of them a known kind with its fields of the right type, the others with
    a kind, a field or a type off; data of any depth and kind."""
    plain = draw(st.booleans())
    kind = draw(
        st.sampled_from(sorted(EVENT_FIELDS)) if plain else st.sampled_from(sorted(EVENT_FIELDS)) | _text
    )
    required, optional = EVENT_FIELDS.get(kind, (("call",), ()))
    chosen = draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []
    event: dict[str, Any] = {"kind": kind}
    for name in (*required, *chosen):
        if name == "ok":
            event[name] = draw(st.booleans())
        elif name == "data":
            event[name] = draw(_event_data)
        else:
            event[name] = draw(st.sampled_from(["c1", "cmd-1", "hangup"]) if plain else _odd_value)
    if not plain and draw(st.booleans()):
        event[draw(st.sampled_from(["kind", "call", "ok", "data", "cause", "extra"]))] = draw(
            _json_leaf | _event_data
        )
    return event


@settings(max_examples=400, deadline=None)
@given(near_switch_events())
def test_the_one_pass_switch_event_reader_equals_the_general_reader_or_declines(raw: dict[str, Any]) -> None:
    """H-SW-1, D-DATA: on generated input the fast reader of switch events
    returns exactly what the general reader returns, or declines (None)."""
    fast = read_plain_event(raw)
    if fast is not None:
        assert fast == _read_event(raw)


def test_d_wire_max_frame_size_counts_bytes_of_utf8_not_characters() -> None:
    """D-WIRE, D-BOUND, H-RUN-2: 300 three-byte characters are 900 bytes:
    over a 600-byte limit although they are only 300 characters, in a run
    line and in a bridge message given to the engine as text."""
    d = Driver(max_frame_size=600)
    d.switch("offered")
    text = "\u20ac" * 300
    line = json.dumps(
        {"from": "bridge", "message": {"header": {"type": "cti.request"}, "pad": text}}, ensure_ascii=False
    )
    assert len(line) < 600 < len(line.encode())
    out = d.raw(line)
    assert [f"input line of {len(line.encode())} bytes exceeds 600 (max_frame_size)"] == [
        o["error"]["message"] for o in out if "error" in o
    ]
    message = json.dumps(
        {
            "header": {
                "type": "cti.query",
                "name": "interaction.query.init",
                "target": f"{CH}.c1",
                "requestId": "r1",
            },
            "body": {"pad": text},
        },
        ensure_ascii=False,
    )
    [refused] = d.engine.receive_bridge(message)
    assert "D-BOUND" == refused.rule  # type: ignore[union-attr]
