"""D-SESS-1: the same agent in two sessions (a second desktop). One device,
one call and one interaction machine, judged once; each session has its own
channel group, channel, interaction and conversation destinations, each
with its own lifecycle, init state, requestId memory and conversation
registry, and each initialized one receives the events. Requests from both
share the interaction's one queue (D-SERIAL); a dispose removes only that
session's destination (D-LIFE-4)."""

from __future__ import annotations

import io
from typing import Any

from fsm.checker import check_lines
from fsm.snapshot import restore, snapshot
from tests.driver import (
    CH,
    DEVICE,
    Driver,
    body,
    commands,
    event_names,
    events,
    ok,
    responses,
    result,
    rule,
    state,
)

CH2 = "S2.G1.1001"
I1, I2 = f"{CH}.c1", f"{CH2}.c1"


def targets_of(out: list[dict[str, Any]], name: str) -> list[str]:
    return [m["header"]["target"] for m in events(out) if m["header"]["name"] == name]


def two_desktops() -> Driver:
    """agent-1 logged in twice: S1 (the driver's) and S2."""
    d = Driver()
    d.login(session="S2")
    return d


def shown_on_both(d: Driver) -> None:
    """An inbound call c1, initialized on both desktops, its primary
    created as b1 on each (their own registries)."""
    out = d.switch("offered", ani="5551000")
    assert [CH, CH2] == targets_of(out, "interaction.created")
    for target in (I1, I2):
        assert "ALERTING" == body(d.msg("interaction.query.init", target))["interaction-state"]
        assert ok(
            d.msg("interaction.request.createconversation", target, None, {"id": "b1", "nativeid": "c1"})
        )
        assert ok(d.msg("conversation.query.init", f"{target}.b1"))


def test_d_sess_1_a_second_session_of_a_logged_in_agent_is_allowed() -> None:
    """D-SESS-1: the second session's init is SUCCESS with its own channel
    group (D-SESS-2); its channel shows the same device: ACTIVE and READY
    already, so activate and ready send no command."""
    d = Driver()
    out = d.msg("session.query.init", "S2", None, {"name": "agent-1"})
    assert {"session-state": "LOGGEDIN", "channel-groups": [{"id": "G1"}]} == body(out)
    assert ok(d.msg("channelgroup.query.init", "S2.G1"))
    answer = body(d.msg("channel.query.init", CH2))
    assert ("ACTIVE", "READY") == (answer["channel-state"], answer["ready-state"])
    for name in ("activate", "ready"):
        out = d.msg(f"channel.request.{name}", CH2)
        assert "SUCCESS" == result(out) and [] == commands(out)
    assert {"S1", "S2"} == set(d.engine.sessions)


def test_d_sess_1_one_call_two_destinations_each_told() -> None:
    """D-SESS-1, D-LEG: one call is one interaction, announced on both
    channels; accepted from the second desktop, it is answered once (one
    switch command) and both destinations receive the events, each on its
    own conversation target (D-ORDER: interaction events first)."""
    d = two_desktops()
    shown_on_both(d)
    assert 1 == len(d.engine.interactions)
    out = d.msg("interaction.request.accept", I2)
    assert 1 == len([c for c in commands(out) if c["op"] == "answer"])
    assert "SUCCESS" == result(out)
    # the simulated switch reports the answer: events on both desktops
    names = [(m["header"]["name"], m["header"]["target"]) for m in events(out)]
    assert ("interaction.started", I1) in names and ("interaction.started", I2) in names
    assert ("conversation.talking", f"{I1}.b1") in names and ("conversation.talking", f"{I2}.b1") in names
    assert max(names.index(("interaction.started", t)) for t in (I1, I2)) < min(
        names.index(("conversation.talking", f"{t}.b1")) for t in (I1, I2)
    )
    out = d.switch("ended", cause="normal")
    assert [I1, I2] == targets_of(out, "interaction.ended")
    assert [f"{I1}.b1", f"{I2}.b1"] == targets_of(out, "conversation.ended")


def test_d_sess_1_events_only_on_initialized_destinations() -> None:
    """S-LIFE-2 per destination: the second desktop has not sent its
    interaction init, so it gets no interaction event; its init then
    shows the state the call is in (D-LIFE-3)."""
    d = two_desktops()
    d.switch("offered")
    assert ok(d.msg("interaction.query.init", I1))
    out = d.msg("interaction.request.accept", I1)
    assert [I1] == targets_of(out, "interaction.started")
    assert "STARTED" == body(d.msg("interaction.query.init", I2))["interaction-state"]
    out = d.msg("interaction.request.setdata", I1, None, {"k": "v"})
    assert [I1, I2] == targets_of(out, "interaction.datachanged")


def test_d_sess_1_requests_before_init_are_judged_per_destination() -> None:
    """D-LIFE-5 per destination: an accept on the second desktop's
    destination before its init is refused, though the first's is
    initialized."""
    d = two_desktops()
    d.switch("offered")
    assert ok(d.msg("interaction.query.init", I1))
    out = d.msg("interaction.request.accept", I2)
    assert "D-LIFE-5" == rule(out)


def test_d_dup_request_ids_are_per_destination_across_sessions() -> None:
    """D-DUP, D-SESS-1: each destination has its own requestId memory."""
    d = two_desktops()
    d.switch("offered")
    for target in (I1, I2):
        assert ok(d.msg("interaction.query.init", target, "same"))
    assert "D-DUP" == rule(d.msg("interaction.query.init", I2, "same"))


def test_d_cc_2_each_session_has_its_own_conversation_registry() -> None:
    """D-CC-2, D-CC-3, D-SESS-1: both desktops may name the primary b1 (own
    registries); a desktop cannot register the same leg under a second id,
    and the other desktop's registration does not count for it."""
    d = two_desktops()
    d.switch("offered")
    for target in (I1, I2):
        d.msg("interaction.query.init", target)
    assert ok(d.msg("interaction.request.createconversation", I1, None, {"id": "b1", "nativeid": "c1"}))
    assert ok(d.msg("interaction.request.createconversation", I2, None, {"id": "x7", "nativeid": "c1"}))
    out = d.msg("interaction.request.createconversation", I2, None, {"id": "b1", "nativeid": "c1"})
    assert "D-CC-3" == rule(out)
    assert ok(d.msg("conversation.query.init", f"{I2}.x7"))
    assert "D-TARGET" == rule(d.msg("conversation.query.init", f"{I2}.b1"))
    assert {"conversation-state": "ALERTING", "nativeid": "c1", "role": "primary"} == body(
        d.msg("conversation.query.init", f"{I1}.b1")
    )


def test_d_sess_1_a_consult_is_creatable_where_it_was_asked() -> None:
    """S-CC-1, D-SESS-1: a consult asked from the second desktop may be
    created there; the first desktop was sent no response naming it, so it
    may create it only once its re-init lists it (D-CC-3)."""
    d = two_desktops()
    shown_on_both(d)
    assert ok(d.msg("interaction.request.accept", I2))
    out = d.msg("interaction.request.consult", I2, None, {"destination": "200"})
    nativeid = responses(out)[-1]["body"]["nativeid"]
    assert [I2] == [m["header"]["target"] for m in responses(out)]
    refused = d.msg("interaction.request.createconversation", I1, None, {"id": "b2", "nativeid": nativeid})
    assert "S-CC-1" == rule(refused)
    assert ok(d.msg("interaction.request.createconversation", I2, None, {"id": "b2", "nativeid": nativeid}))
    assert {"id": nativeid} == body(d.msg("interaction.query.init", I1))["conversations"]["consult"]
    assert ok(d.msg("interaction.request.createconversation", I1, None, {"id": "b2", "nativeid": nativeid}))


def test_d_serial_both_desktops_share_one_queue() -> None:
    """D-SERIAL, D-SESS-1: a request from the second desktop waits behind
    the first desktop's executing one: the interaction has one queue."""
    d = Driver(scripted=True)
    d.login(session="S2")
    d.switch("offered", ani="5551000")
    for target in (I1, I2):
        d.msg("interaction.query.init", target)
    first = d.message("interaction.request.accept", I1)
    assert first.result is None  # waits for the switch
    second = d.message("interaction.request.setdata", I2, {"k": "v"})
    assert second.result is None  # queued behind it
    answer = commands(first.outputs)[-1]
    out = d.feed({"from": "switch", "event": {"kind": "result", "command": answer["id"], "ok": True}})
    out += d.switch("connected")
    assert ["SUCCESS", "SUCCESS"] == [m["header"]["result"] for m in responses(out)]
    assert [I1, I2] == [m["header"]["target"] for m in responses(out)]


def test_d_life_4_a_dispose_removes_only_that_sessions_destination() -> None:
    """D-LIFE-4, D-SESS-1: disposing the first desktop's interaction
    destination leaves the call and the second desktop's destination; the
    disposed target is refused, the events go on to the other, and the
    requests the first had queued are answered FAILURE first."""
    d = two_desktops()
    shown_on_both(d)
    assert ok(d.msg("interaction.request.dispose", I1))
    assert "D-LIFE-4" == rule(d.msg("interaction.query.init", I1))
    assert "D-LIFE-4" == rule(d.msg("conversation.query.init", f"{I1}.b1"))
    out = d.msg("interaction.request.accept", I2)
    assert "SUCCESS" == result(out)
    assert [I2] == targets_of(out, "interaction.started")
    assert [f"{I2}.b1"] == targets_of(out, "conversation.talking")
    assert ["c1"] == list(d.engine.interactions)


def test_d_life_4_disposing_the_first_session_keeps_the_call_for_the_second() -> None:
    """D-LIFE-4, D-SESS-1: the first session's dispose takes its channel
    group, channel and destinations; the second desktop keeps the call, its
    destinations, its requestIds and its registry."""
    d = two_desktops()
    shown_on_both(d)
    assert ok(d.msg("interaction.query.init", I2, "seen-on-2"))
    assert ok(d.msg("session.request.dispose", "S1"))
    assert "D-LIFE-4" == rule(d.msg("interaction.query.init", I1))
    assert "D-DUP" == rule(d.msg("interaction.query.init", I2, "seen-on-2"))
    out = d.msg("interaction.request.accept", I2)
    assert [f"{I2}.b1"] == targets_of(out, "conversation.talking")
    out = d.switch("ended", cause="normal")
    assert [I2] == targets_of(out, "interaction.ended")
    assert ok(d.msg("interaction.request.complete", I2))
    assert ok(d.msg("interaction.request.dispose", I2))
    assert {} == d.engine.interactions


def test_d_sess_1_a_new_desktop_lists_the_live_call() -> None:
    """D-SESS-1, D-CH-1: a session made while a call is live gets its own
    destination of it, listed in its channel's init; a call that ended
    before is not this channel's."""
    d = Driver()
    d.switch("offered")
    d.switch("offered", call="c2")
    d.switch("ended", call="c2", cause="normal")
    d.login(session="S2")
    assert ["c1"] == body(d.msg("channel.query.init", CH2))["interactions"]
    assert "ALERTING" == body(d.msg("interaction.query.init", I2))["interaction-state"]
    assert "D-TARGET" == rule(d.msg("interaction.query.init", f"{CH2}.c2"))


def test_d_sess_1_logout_from_either_desktop_logs_the_device_out() -> None:
    """D-SESS-2, D-CH-1, D-SESS-1: the device is one: a logout from the
    second desktop is refused while the call is live, then logs the device
    out, and both channels report it."""
    d = two_desktops()
    d.switch("offered")
    assert "D-SESS-2" == rule(d.msg("session.request.logout", "S2"))
    d.switch("ended", cause="normal")
    out = d.msg("session.request.logout", "S2")
    assert "SUCCESS" == result(out)
    assert [CH, CH2] == targets_of(out, "channel.deactivated")
    assert "logout" in [c["op"] for c in commands(out)]
    assert DEVICE in d.engine.devices_by_end_point


def test_snapshot_keeps_both_desktops() -> None:
    """The snapshot round-trips a call shown on two desktops: the restored
    engine answers and tells both as the original does."""
    d = two_desktops()
    shown_on_both(d)
    before = snapshot(d.engine)
    restored = restore(before)
    assert before == snapshot(restored)
    assert state(d.engine) == state(restored)
    original = d.engine
    d.engine = restored
    d.runner.engine = restored
    out = d.msg("interaction.request.accept", I2)
    assert [I1, I2] == targets_of(out, "interaction.started")
    assert "interaction.started" in event_names(out)
    assert original is not restored


def test_the_checker_accepts_a_call_handled_from_two_desktops() -> None:
    """The checker follows both sessions' destinations of one call (S-LIFE-2,
    D-CC-*, D-DUP, S-REQ-1 per destination): a trace in which the second
    desktop accepts, consults and conferences, the first desktop watches,
    is disposed, and the second completes, has no violation."""
    trace = io.StringIO()
    d = Driver(trace=trace)
    d.login(session="S2")
    shown_on_both(d)
    assert ok(d.msg("interaction.request.accept", I2))
    out = d.msg("interaction.request.consult", I2, None, {"destination": "200"})
    nativeid = responses(out)[-1]["body"]["nativeid"]
    assert ok(d.msg("interaction.request.createconversation", I2, None, {"id": "b2", "nativeid": nativeid}))
    assert ok(d.msg("conversation.query.init", f"{I2}.b2"))
    d.switch("connected", call=nativeid)
    assert ok(d.msg("interaction.query.init", I1))
    assert ok(d.msg("interaction.request.createconversation", I1, None, {"id": "b2", "nativeid": nativeid}))
    assert ok(d.msg("conversation.query.init", f"{I1}.b2"))
    assert ok(d.msg("interaction.request.consultconference", I2))
    assert ok(d.msg("session.request.dispose", "S1"))
    d.switch("ended", cause="normal")
    assert ok(d.msg("interaction.request.complete", I2))
    assert ok(d.msg("interaction.request.dispose", I2))
    lines = trace.getvalue().splitlines()
    assert [] == check_lines(lines)
    assert sum('"target":"S1.G1.1001.c1.b2"' in line for line in lines) > 1
