"""Floods: a bridge or switch that sends without pause meets the D-BOUND
limits with a clear error and a bounded memory footprint, and the engine
keeps serving the other interactions.

Everything here drives a real :class:`~fsm.engine.Engine` through its
sans-IO API (bytes from the bridge, :class:`SwitchEvent` values from the
switch). Memory is checked with ``tracemalloc``: the bytes still allocated
after a second, larger part of a flood, measured from the end of a first
part, so that warm-up (interning, free lists, dict resizes) is left out.
No assertion depends on timing.

Frames at the maximum size over real loopback TCP are covered by
``tests/test_transport.py``: ``test_many_messages_and_large_ones`` (frames of
exactly the maximum and one byte under it are delivered, one over it is
refused before anything is written) and
``test_d_wire_broken_stream_is_logged_and_closes_the_connection[too-large]``
(a length of max + 1 with no contents after it: logged with the frame's
offset, and the connection closed; the protocol has no error message).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fsm.engine import BridgeError, Engine, Output, SwitchError, ToBridge, ToSwitch
from fsm.messages import EVENT, FAILURE, RESPONSE, SUCCESS, Message
from fsm.policy import Policy
from fsm.switch_events import SwitchEvent
from tests.benchmarks.flood import wire
from tests.driver import logged_in, with_device

CH = "S1.G1.1001"
#: tracemalloc growth allowed for "nothing grows" (bytes): far below one
#: byte per flood item, well above allocator noise.
FLAT = 64 * 1024


# --------------------------------------------------------------------------
# Helpers.


def target(call: str) -> str:
    return f"{CH}.{call}"


def sw(engine: Engine, kind: str, call: str, **fields: Any) -> list[Output]:
    return engine.receive_switch(SwitchEvent(kind=kind, call=call, **with_device(kind, fields)))


def to_bridge(outs: list[Output]) -> list[ToBridge]:
    return [o for o in outs if isinstance(o, ToBridge)]


def one_response(outs: list[Output]) -> ToBridge:
    found = [o for o in to_bridge(outs) if o.message.header.type == RESPONSE]
    assert len(found) == 1, outs
    return found[0]


def result(outs: list[Output]) -> str:
    value = one_response(outs).message.header.result
    assert value is not None
    return value


def error_of(outs: list[Output]) -> tuple[str, str]:
    """(rule, errorMessage) of the one FAILURE response in ``outs``."""
    found = one_response(outs)
    assert found.message.header.result == FAILURE, outs
    assert found.rule is not None
    assert found.message.header.error_message is not None
    return found.rule, found.message.header.error_message


def events(outs: list[Output]) -> list[Message]:
    return [o.message for o in to_bridge(outs) if o.message.header.type == EVENT]


def live_call(engine: Engine, call: str, *, initialized: bool = True) -> None:
    """An inbound call, connected on the switch; initialized when asked."""
    sw(engine, "offered", call, ani="5551000")
    if initialized:
        assert SUCCESS == result(engine.receive_bridge(wire("interaction.query.init", target(call), "i")))
    sw(engine, "connected", call)


def setdata_ok(engine: Engine, call: str, rid: str, value: str) -> None:
    """A normal request on another interaction: answered SUCCESS at once,
    with its datachanged event."""
    outs = engine.receive_bridge(wire("interaction.request.setdata", target(call), rid, {"k": value}))
    assert SUCCESS == result(outs)
    assert ["interaction.datachanged"] == [m.name for m in events(outs)]


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Trace allocations; yields a function giving the bytes still allocated
    since the start, after a full collection."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]

        def growth() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - start

        yield growth
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------
# (a) Switch events before init.


def test_100k_switch_events_before_init_are_folded_and_bounded() -> None:
    """D-LIFE-3 / S-LIFE-2 / D-BOUND: 100,000 held/retrieved events on a call
    whose interaction is not initialized send nothing to the bridge, keep
    nothing per event (no queue of pre-init changes: traced growth between
    event 10,000 and 100,000 is ~0), and the later init snapshot is the
    state they left; no event about them is sent afterwards. Another
    interaction is served normally in between."""
    engine = logged_in()
    live_call(engine, "c1", initialized=False)
    live_call(engine, "c2")

    def toggle(i: int) -> None:
        outs = sw(engine, "held" if i % 2 == 0 else "retrieved", "c1")
        assert [] == outs
        if i % 10_000 == 9_999:
            setdata_ok(engine, "c2", f"o{i}", str(i))

    for i in range(10_000):
        toggle(i)
    with traced() as growth:
        for i in range(10_000, 100_000):
            toggle(i)
        assert growth() < FLAT

    # one more held: the call ends HELD, which the snapshot must show
    assert [] == sw(engine, "held", "c1")
    outs = engine.receive_bridge(wire("interaction.query.init", target("c1"), "i1"))
    snapshot = one_response(outs).message.body
    assert isinstance(snapshot, dict)
    assert "STARTED" == snapshot["interaction-state"]
    assert {"primary": {"id": "c1"}} == snapshot["conversations"]
    assert [] == events(outs)
    created = engine.receive_bridge(
        wire("interaction.request.createconversation", target("c1"), "cc", {"id": "b1", "nativeid": "c1"})
    )
    assert SUCCESS == result(created)
    conv = engine.receive_bridge(wire("conversation.query.init", f"{target('c1')}.b1", "ci"))
    assert {"conversation-state": "HELD", "nativeid": "c1", "role": "primary"} == (
        one_response(conv).message.body
    )
    # after init, a change is an event again (S-LIFE-2 satisfied)
    assert ["conversation.talking"] == [m.name for m in events(sw(engine, "retrieved", "c1"))]


# --------------------------------------------------------------------------
# (b) Endless requests while one is pending.


def test_requests_while_one_is_pending_are_refused_at_the_bound() -> None:
    """D-SERIAL / D-BOUND: while accept waits for the switch, requests queue
    up to ``max_pending_requests`` (the executing one included); each of
    10,000 further requests is answered FAILURE D-BOUND naming the policy.
    The queue does not grow past the bound; the only per-request memory is
    the D-DUP requestId record, itself bounded by ``max_request_ids``.
    Queries are answered at once meanwhile, and another interaction's
    requests are answered normally in between. When the call connects,
    the queued requests run in arrival order."""
    policy = Policy(max_request_ids=20_000)
    engine = logged_in(policy, switch_acknowledges=True)
    sw(engine, "offered", "c1")
    assert SUCCESS == result(engine.receive_bridge(wire("interaction.query.init", target("c1"), "i")))
    accept = engine.receive_bridge(wire("interaction.request.accept", target("c1"), "acc"))
    assert [] == to_bridge(accept)
    (command,) = [o.command for o in accept if isinstance(o, ToSwitch)]
    live_call(engine, "c2")
    interaction = engine.interactions["c1"]

    queued = policy.max_pending_requests - 1
    refused = 0

    def flood(i: int) -> None:
        nonlocal refused
        outs = engine.receive_bridge(
            wire("interaction.request.setdata", target("c1"), f"f{i}", {"n": str(i)})
        )
        if i < queued:
            assert [] == outs
            return
        rule, message = error_of(outs)
        assert "D-BOUND" == rule
        assert "max_pending_requests" in message
        refused += 1
        if i % 1_000 == 999:
            setdata_ok(engine, "c2", f"o{i}", str(i))
            data = engine.receive_bridge(wire("interaction.query.data", target("c1"), f"q{i}"))
            assert SUCCESS == result(data)

    for i in range(1_000):
        flood(i)
    ids_before = len(interaction.request_ids)
    with traced() as growth:
        for i in range(1_000, 10_000 + queued):
            flood(i)
        grown = growth()
    ids_grown = len(interaction.request_ids) - ids_before
    assert 10_000 == refused
    assert queued == len(interaction.waiting)
    # no more than the requestId records (a short str key in a dict: < 160 B each)
    assert grown < FLAT + 160 * ids_grown, (grown, ids_grown)

    confirmed = sw(engine, "result", "", command=command.id, ok=True)
    assert [] == [
        o for o in to_bridge(confirmed) if o.message.header.type == RESPONSE
    ]  # D-DONE: accepted only
    done = sw(engine, "connected", "c1")
    answered = [o.message for o in to_bridge(done) if o.message.header.type == RESPONSE]
    assert ["acc", *(f"f{i}" for i in range(queued))] == [m.header.request_id for m in answered]
    assert all(m.header.result == SUCCESS for m in answered)
    assert [] == interaction.waiting


# --------------------------------------------------------------------------
# (c) Duplicates, malformed input, and the requestId bound.


def test_endless_duplicates_and_malformed_messages_keep_nothing() -> None:
    """D-DUP / D-BAD / D-BOUND: 10,000 each of a duplicate requestId,
    non-JSON bytes, a malformed message with a requestId and one without
    are each answered FAILURE (D-DUP: the malformed message's requestId was
    seen at its first arrival, D-BAD then) or reported as a protocol error
    (D-BAD); state is unchanged and traced memory does not grow."""
    engine = logged_in()
    live_call(engine, "c1")
    live_call(engine, "c2")
    assert SUCCESS == result(
        engine.receive_bridge(wire("interaction.request.setdata", target("c1"), "dup", {"k": "v"}))
    )
    duplicate = wire("interaction.request.setdata", target("c1"), "dup", {"k": "other"})
    not_json = b'{"header": {"type": "cti.request", '
    bad_with_id = wire("interaction.request.setdata", target("c1"), "bad", {"k": 1})
    bad_without_id = wire("interaction.request.nosuch", target("c1"), None)
    counts: dict[str, int] = {}
    assert "D-BAD" == error_of(engine.receive_bridge(bad_with_id))[0]

    def round_(i: int) -> None:
        for raw, expect in ((duplicate, "D-DUP"), (bad_with_id, "D-DUP")):
            rule, _ = error_of(engine.receive_bridge(raw))
            assert expect == rule
            counts[rule] = counts.get(rule, 0) + 1
        for raw in (not_json, bad_without_id):
            (out,) = engine.receive_bridge(raw)
            assert isinstance(out, BridgeError) and "D-BAD" == out.rule
            counts["protocol error"] = counts.get("protocol error", 0) + 1
        if i % 1_000 == 999:
            setdata_ok(engine, "c2", f"o{i}", str(i))

    for i in range(1_000):
        round_(i)
    with traced() as growth:
        for i in range(1_000, 10_000):
            round_(i)
        assert growth() < FLAT
    assert {"D-DUP": 20_000, "protocol error": 20_000} == counts
    assert {"ani": "5551000", "k": "v"} == engine.interactions["c1"].data
    # D-DUP: a malformed request's requestId counts as seen, once
    assert "bad" in engine.interactions["c1"].request_ids


def test_request_id_memory_is_bounded_by_max_request_ids() -> None:
    """D-DUP / D-BOUND: past ``max_request_ids`` requestIds on one
    destination the engine refuses with D-BOUND naming the policy, and the
    record stops growing; other interactions are unaffected."""
    limit = 1_000
    engine = logged_in(Policy(max_request_ids=limit))
    live_call(engine, "c1")
    live_call(engine, "c2")
    for i in range(limit - 1):  # the init query used one
        assert SUCCESS == result(
            engine.receive_bridge(wire("interaction.request.setdata", target("c1"), f"r{i}", {"k": str(i)}))
        )
    assert limit == len(engine.interactions["c1"].request_ids)

    def refused(i: int) -> None:
        rule, message = error_of(
            engine.receive_bridge(wire("interaction.request.setdata", target("c1"), f"x{i}", {"k": "x"}))
        )
        assert "D-BOUND" == rule
        assert "max_request_ids" in message
        if i % 1_000 == 999:
            setdata_ok(engine, "c2", f"o{i}", str(i))

    for i in range(1_000):
        refused(i)
    with traced() as growth:
        for i in range(1_000, 10_000):
            refused(i)
        assert growth() < FLAT
    assert limit == len(engine.interactions["c1"].request_ids)


def test_dispose_still_works_after_the_request_id_bound() -> None:
    """D-LIFE-4 says dispose is valid in any state; D-BOUND only asks for a
    clear error. Once ``max_request_ids`` requestIds were seen on an
    interaction (a flood of refused requests is enough: each one uses up a
    requestId), every later message to it is refused D-BOUND, dispose
    included, so the interaction can never be forgotten and stays in
    memory."""
    engine = logged_in(Policy(max_request_ids=10))
    live_call(engine, "c1")
    for i in range(9):
        engine.receive_bridge(wire("interaction.request.setdata", target("c1"), f"r{i}", {"k": str(i)}))
    outs = engine.receive_bridge(wire("interaction.request.dispose", target("c1"), "bye"))
    assert SUCCESS == result(outs)
    assert "c1" not in engine.interactions


# --------------------------------------------------------------------------
# (d) Messages at the maximum frame size.


def sized_setdata(call: str, rid: str, size: int, fill: str = "x") -> bytes:
    """A setdata message of exactly ``size`` bytes."""
    overhead = len(wire("interaction.request.setdata", target(call), rid, {"k": ""}))
    raw = wire("interaction.request.setdata", target(call), rid, {"k": fill * (size - overhead)})
    assert size == len(raw)
    return raw


def test_messages_at_the_maximum_frame_size() -> None:
    """D-BOUND / D-WIRE (``max_frame_size``): bytes of exactly the maximum
    are accepted; one byte more is refused D-BOUND before decoding, as a
    protocol error naming the policy, and changes nothing. The default
    maximum (1 MiB) is used; the other interaction is still served."""
    engine = logged_in()
    limit = engine.policy.max_frame_size
    assert 1 << 20 == limit
    live_call(engine, "c1")
    live_call(engine, "c2")
    for i, fill in enumerate("ab"):
        outs = engine.receive_bridge(sized_setdata("c1", f"m{i}", limit, fill))
        assert SUCCESS == result(outs)
        assert ["interaction.datachanged"] == [m.name for m in events(outs)]
    kept = engine.interactions["c1"].data["k"]
    outs = engine.receive_bridge(sized_setdata("c1", "over", limit + 1, "c"))
    (out,) = outs
    assert isinstance(out, BridgeError)
    assert "D-BOUND" == out.rule
    assert f"{limit + 1} bytes" in out.message
    assert "max_frame_size" in out.message
    assert kept is engine.interactions["c1"].data["k"]
    assert "over" not in engine.interactions["c1"].request_ids
    setdata_ok(engine, "c2", "o", "still served")


def test_oversized_text_and_a_small_limit() -> None:
    """D-BOUND: the bound holds for text input too, and follows the policy."""
    engine = logged_in(Policy(max_frame_size=300))
    live_call(engine, "c1")
    assert SUCCESS == result(engine.receive_bridge(sized_setdata("c1", "a", 300)))
    (out,) = engine.receive_bridge(sized_setdata("c1", "b", 301).decode())
    assert isinstance(out, BridgeError) and "D-BOUND" == out.rule
    assert not [o for o in engine.receive_bridge(sized_setdata("c1", "c", 300)) if isinstance(o, SwitchError)]
