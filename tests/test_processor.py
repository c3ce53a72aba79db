"""The processor client above the interactions: the control destination,
sessions, channel groups, channels and dial (spec: "Processor control",
"Session, channel group, channel"). Each test drives a real engine, its
simulated (or scripted) switch and the ``run`` runner through the Driver,
and cites the rule it checks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fsm.directory import Agent, AgentDirectory
from tests.driver import (
    CH,
    CONTROL,
    DEVICE,
    GROUP,
    SESSION,
    Driver,
    body,
    commands,
    error_message,
    errors,
    event_names,
    events,
    ok,
    responses,
    result,
)

CHAT = f"{GROUP}.agent-1-chat"


def agent_event(d: Driver, state: str, device: str = DEVICE) -> list[dict[str, Any]]:
    return d.feed({"from": "switch", "event": {"kind": "agent", "device": device, "state": state}})


def link(d: Driver, up: bool, reason: str = "") -> list[dict[str, Any]]:
    return d.feed({"from": "switch", "event": {"kind": "link", "up": up, "reason": reason}})


def status_events(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["body"] for m in events(out) if m["header"]["name"] == "cti.status"]


# --------------------------------------------------------------------------
# The control destination.


def test_f_ctrl_2_status_is_answered_then_reported() -> None:
    """F-CTRL-2, D-CTRL-1: the status request is SUCCESS {} and then a
    cti.status with the current status follows, in that order (D-ORDER)."""
    d = Driver(login=False)
    out = d.msg("cti.request.status", CONTROL)
    kinds = [m["header"]["type"] for m in (o["message"] for o in out if o.get("to") == "bridge")]
    assert ["cti.response", "cti.event"] == kinds
    assert {} == responses(out)[0]["body"]
    assert [{"status": "started", "reason": ""}] == status_events(out)


def test_d_ctrl_1_capabilities_are_the_drivers() -> None:
    """D-CTRL-1: an object of booleans, channel groups first, no media channels (D-UCH)."""
    d = Driver(login=False)
    answer = body(d.msg("cti.query.capabilities", CONTROL))
    assert "channel-groups-supported" == next(iter(answer))
    assert all(isinstance(value, bool) for value in answer.values())
    assert (False, False) == (answer["chat"], answer["email"])
    assert answer["consult"] and answer["telephony"]


def test_d_ctrl_1_no_status_event_before_the_first_status_response() -> None:
    """D-CTRL-1: the link going down before the start-up exchange changes the
    status but sends no cti.status; the status response then reports it."""
    d = Driver(login=False)
    assert [] == events(link(d, False, "cable"))
    out = d.msg("cti.request.status", CONTROL)
    assert [{"status": "cti-lost", "reason": "cable"}] == status_events(out)


def test_f_ctrl_3_link_loss_and_return_are_reported() -> None:
    """F-CTRL-3, D-CTRL-1: link down -> cti-lost, up -> started, each a cti.status."""
    d = Driver()
    assert [{"status": "cti-lost", "reason": "switch gone"}] == status_events(link(d, False, "switch gone"))
    assert [{"status": "started", "reason": ""}] == status_events(link(d, True))
    assert "started" == d.engine.control.state


def test_d_ctrl_2_validatelogin_checks_the_directory() -> None:
    """D-CTRL-2: SUCCESS for a known agent (and end-point); FAILURE naming which is unknown."""
    d = Driver(login=False)
    assert ok(d.msg("cti.request.validatelogin", CONTROL, None, {"agent": "agent-1", "password": "x"}))
    assert ok(d.msg("cti.request.validatelogin", CONTROL, None, {"agent": "agent-1", "end-point": "1001"}))
    out = d.msg("cti.request.validatelogin", CONTROL, None, {"agent": "nobody"})
    assert "D-CTRL-2" == d.rule(out)
    assert "agent 'nobody' is unknown" in error_message(out)
    out = d.msg("cti.request.validatelogin", CONTROL, None, {"agent": "agent-1", "end-point": "2002"})
    assert "D-CTRL-2" == d.rule(out)
    assert "end-point '2002' is unknown" in error_message(out)


def test_d_ctrl_2_agent_query_answers_from_the_directory() -> None:
    """D-CTRL-2: cti.query.agent answers agent, name (the display name) and end-point."""
    directory = AgentDirectory((Agent(agent="ann", end_point="2001", name="Ann Smith"),))
    d = Driver(login=False, directory=directory)
    expected = {"agent": "ann", "name": "Ann Smith", "end-point": "2001"}
    assert expected == body(d.msg("cti.query.agent", CONTROL, None, {"agent": "ann"}))
    out = d.msg("cti.query.agent", CONTROL, None, {"agent": "bob"})
    assert "D-CTRL-2" == d.rule(out)


def test_d_ctrl_3_no_new_session_while_not_started() -> None:
    """D-CTRL-3: a session init for a new session while cti-lost is FAILURE and creates nothing."""
    d = Driver(login=False)
    link(d, False)
    out = d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    assert "D-CTRL-3" == d.rule(out)
    assert "client not started" in error_message(out)
    assert SESSION not in d.engine.destinations


def test_d_ctrl_3_requests_that_need_the_switch_are_refused_while_cti_lost() -> None:
    """D-CTRL-3: accept (a switch operation) is refused with the status as the
    reason; queries and setdata (no operation) are answered."""
    d = Driver()
    d.switch("offered")
    d.init()
    link(d, False)
    out = d.req("accept")
    assert "D-CTRL-3" == d.rule(out)
    assert "cti-lost" in error_message(out)
    assert ok(d.req("setdata", note="x"))
    assert ok(d.msg("interaction.query.data"))
    assert [] == commands(out)


def test_d_ctrl_3_link_down_fails_what_waits_on_the_switch() -> None:
    """D-CTRL-3: a request waiting on the switch is answered FAILURE at once when the link goes down."""
    d = Driver(scripted=True)
    d.switch("offered")
    d.init()
    pending = d.message("interaction.request.accept", f"{CH}.c1")
    assert pending.result is None
    out = link(d, False, "lost")
    failed = pending.later(out)
    assert "FAILURE" == failed.result
    assert "D-CTRL-3" == failed.refusal_rule()


def test_s_life_2_unknown_kind_of_message_to_the_control_is_d_target() -> None:
    """D-TARGET: a channel request to the control destination names the wrong kind."""
    d = Driver()
    out = d.msg("channel.request.ready", CONTROL)
    assert "D-TARGET" == d.rule(out)


# --------------------------------------------------------------------------
# Sessions.


def test_f_sess_2_d_sess_2_session_init_names_one_channel_group() -> None:
    """F-SESS-2, D-SESS-2: the session init answers LOGGEDIN and exactly one group, G1."""
    d = Driver(login=False)
    answer = body(d.msg("session.query.init", SESSION, None, {"name": "agent-1"}))
    assert {"session-state": "LOGGEDIN", "channel-groups": [{"id": "G1"}]} == answer


def test_d_sess_1_an_unknown_agent_creates_nothing() -> None:
    """D-SESS-1: session init for an agent the directory does not know is FAILURE."""
    d = Driver(login=False)
    out = d.msg("session.query.init", SESSION, None, {"name": "mallory"})
    assert "D-SESS-1" == d.rule(out)
    assert [] == [t for t in d.engine.destinations if t.startswith(SESSION)]


def test_d_sess_1_the_booleans_are_optional_and_strict() -> None:
    """D-SESS-1, D-BAD: chat/email/callback default false; a string is not a boolean."""
    d = Driver(login=False)
    out = d.msg("session.query.init", SESSION, None, {"name": "agent-1", "chat": "yes"})
    assert "D-BAD" == d.rule(out)
    assert "body.chat" in error_message(out)
    assert ok(d.msg("session.query.init", SESSION, None, {"name": "agent-1"}))


def test_d_life_5_a_repeated_session_init_names_its_agent() -> None:
    """D-LIFE-5: re-init with the same agent is SUCCESS; with another, FAILURE."""
    directory = AgentDirectory((Agent("agent-1", "1001"), Agent("agent-2", "1002")))
    d = Driver(directory=directory)
    assert ok(d.msg("session.query.init", SESSION, None, {"name": "agent-1"}))
    out = d.msg("session.query.init", SESSION, None, {"name": "agent-2"})
    assert "D-LIFE-5" == d.rule(out)


def test_d_target_a_session_target_with_a_dot_is_refused() -> None:
    """D-TARGET: the bridge's session id is used verbatim and may not hold a '.'."""
    d = Driver(login=False)
    out = d.msg("session.query.init", "S.1", None, {"name": "agent-1"})
    assert "D-TARGET" == d.rule(out)


def test_d_sess_2_logout_deactivates_and_the_session_stays() -> None:
    """D-SESS-2, D-DONE: logout sends logout on the device, is answered on the
    agent event, the channel reports deactivated, the session stays."""
    d = Driver()
    out = d.msg("session.request.logout", SESSION)
    assert [{"id": "cmd-3", "op": "logout", "device": DEVICE}] == commands(out)
    assert ["channel.deactivated"] == event_names(out)
    assert ok(out)
    assert SESSION in d.engine.sessions


def test_d_sess_2_logout_is_refused_while_a_call_is_live() -> None:
    """D-SESS-2: refused while a channel has a live interaction."""
    d = Driver()
    d.switch("offered")
    out = d.msg("session.request.logout", SESSION)
    assert "D-SESS-2" == d.rule(out)


def test_d_life_4_a_session_dispose_forgets_everything_below() -> None:
    """D-LIFE-4: disposing a session forgets its group, channels and
    interactions; later messages to them are refused as disposed."""
    d = Driver()
    d.switch("offered")
    d.init()
    assert ok(d.msg("session.request.dispose", SESSION))
    for target in (SESSION, GROUP, CH, f"{CH}.c1"):
        assert target not in d.engine.destinations
    out = d.msg("channel.query.init", CH)
    assert "D-LIFE-4" == d.rule(out)
    assert [] == d.switch("connected")  # a disposed interaction's call: ignored (D-LIFE-4)


def test_d_life_4_a_live_call_outlives_the_dispose_of_its_session() -> None:
    """D-LIFE-4, D-CH-1: a dispose hangs up nothing: the agent's ringing
    call, whose destinations went with the session, is listed by the
    channel of the agent's next session, under that channel's target."""
    d = Driver()
    d.switch("offered")
    d.init()
    assert ok(d.msg("session.request.dispose", SESSION))
    assert ok(d.msg("session.query.init", "S2", None, {"name": "agent-1"}))
    assert ok(d.msg("channelgroup.query.init", "S2.G1"))
    channel = body(d.msg("channel.query.init", "S2.G1.1001"))
    assert ["c1"] == channel["interactions"]
    assert "ALERTING" == body(d.msg("interaction.query.init", "S2.G1.1001.c1"))["interaction-state"]
    assert ["interaction.started"] == event_names(d.msg("interaction.request.accept", "S2.G1.1001.c1"))
    assert "D-LIFE-4" == d.rule(d.msg("interaction.query.init", f"{CH}.c1"))


def test_d_life_4_a_finished_call_goes_with_the_dispose_of_its_session() -> None:
    """D-LIFE-4, D-CH-1: an ended call the disposed channel showed is not
    listed by the next session's channel (it showed nothing yet)."""
    d = Driver()
    d.switch("offered")
    d.switch("ended")
    assert ok(d.msg("session.request.dispose", SESSION))
    d.msg("session.query.init", "S2", None, {"name": "agent-1"})
    assert [] == body(d.msg("channel.query.init", "S2.G1.1001"))["interactions"]


# --------------------------------------------------------------------------
# Channel groups and channels.


def test_f_cg_1_a_disposed_channel_is_no_longer_listed() -> None:
    """F-CG-1, D-LIFE-4: the group's init lists the channel destinations it
    has: one disposed is gone from it."""
    d = Driver(login=False)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1", "chat": True})
    assert ok(d.msg("channel.request.dispose", CHAT))
    expected = {"channels": [{"end-point": "1001", "type": "telephony"}]}
    assert expected == body(d.msg("channelgroup.query.init", GROUP))


def test_f_cg_1_d_cg_1_the_group_lists_its_channels() -> None:
    """F-CG-1, D-CG-1: telephony first; chat and email when asked, at AGENT-chat / AGENT-email."""
    d = Driver(login=False)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1", "chat": True, "email": True})
    expected = {
        "channels": [
            {"end-point": "1001", "type": "telephony"},
            {"end-point": "agent-1-chat", "type": "chat"},
            {"end-point": "agent-1-email", "type": "email"},
        ]
    }
    assert expected == body(d.msg("channelgroup.query.init", GROUP))


def test_d_ch_1_the_channel_init_shows_the_device() -> None:
    """D-CH-1: channel-state, ready-state and the interactions."""
    d = Driver()
    assert {"channel-state": "ACTIVE", "ready-state": "READY", "interactions": []} == body(
        d.msg("channel.query.init", CH)
    )


def test_d_ch_1_activate_waits_for_the_agent_event() -> None:
    """D-CH-1, D-DONE: activate sends login and is answered once the switch reports loggedin."""
    d = Driver(login=False, scripted=True)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    d.msg("channel.query.init", CH)
    pending = d.message("channel.request.activate", CH)
    assert [{"id": "cmd-1", "op": "login", "device": DEVICE}] == pending.commands()
    assert pending.result is None
    done = pending.later(agent_event(d, "loggedin"))
    assert "SUCCESS" == done.result
    assert ["channel.activated"] == event_names(done.outputs)


def test_d_sess_1_activate_on_an_active_channel_asks_nothing() -> None:
    """D-SESS-1: activate on an ACTIVE channel, ready on a READY one: SUCCESS, no command."""
    d = Driver()
    for name in ("activate", "ready"):
        out = d.msg(f"channel.request.{name}", CH)
        assert ok(out)
        assert [] == commands(out)


def test_d_ch_1_notready_carries_its_reason() -> None:
    """D-CH-1, D-BODY: notready's reason goes to the command and channel.notready."""
    d = Driver()
    out = d.msg("channel.request.notready", CH, None, {"reason": "lunch"})
    assert [{"id": "cmd-3", "op": "notready", "device": DEVICE, "reason": "lunch"}] == commands(out)
    assert [{"reason": "lunch"}] == [
        m["body"] for m in events(out) if m["header"]["name"] == "channel.notready"
    ]
    assert ok(out)


def test_d_ch_1_deactivate_is_refused_while_a_call_is_live() -> None:
    """D-CH-1: deactivate needs no live interaction on the channel."""
    d = Driver()
    d.switch("offered")
    out = d.msg("channel.request.deactivate", CH)
    assert "D-CH-1" == d.rule(out)
    assert "live interaction" in error_message(out)


def test_d_ch_1_ready_needs_an_active_channel() -> None:
    """D-CH-1: ready in INACTIVE is refused by the channel table."""
    d = Driver()
    d.msg("channel.request.deactivate", CH)
    out = d.msg("channel.request.ready", CH)
    assert "D-CH-1" == d.rule(out)
    assert "the channel is INACTIVE" in error_message(out)


def test_f_ch_1_another_agent_takes_the_device() -> None:
    """F-CH-1, F-CH-2: taken -> UNAVAILABLE (channel.unavailable), free -> INACTIVE
    (channel.available); activate is refused while UNAVAILABLE."""
    d = Driver()
    assert ["channel.unavailable"] == event_names(agent_event(d, "taken"))
    out = d.msg("channel.request.activate", CH)
    assert "D-CH-1" == d.rule(out)
    assert ["channel.available"] == event_names(agent_event(d, "free"))
    assert "INACTIVE" == body(d.msg("channel.query.init", CH))["channel-state"]


def test_f_ch_2_a_removed_device_is_disposed() -> None:
    """F-CH-2, D-CH-1: removed -> channel.disposed; the channel still answers
    its init (DISPOSED) and dispose; every other request is FAILURE."""
    d = Driver()
    assert ["channel.disposed"] == event_names(agent_event(d, "removed"))
    assert "DISPOSED" == body(d.msg("channel.query.init", CH))["channel-state"]
    assert "FAILURE" == result(d.msg("channel.request.ready", CH))
    assert ok(d.msg("channel.request.dispose", CH))


def test_d_switch_an_agent_event_that_contradicts_the_device_is_refused() -> None:
    """D-SWITCH: ready for an INACTIVE device is an error and changes nothing."""
    d = Driver()
    d.msg("channel.request.deactivate", CH)
    out = agent_event(d, "ready")
    assert errors(out)
    assert "INACTIVE" == d.engine.devices_by_end_point[DEVICE].state


def test_d_life_5_a_channel_request_before_its_init_is_refused() -> None:
    """D-LIFE-5: activate before channel.query.init is FAILURE."""
    d = Driver(login=False)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    out = d.msg("channel.request.activate", CH)
    assert "D-LIFE-5" == d.rule(out)


def test_f_uch_1_an_unsupported_channel_answers_init_and_dispose_only() -> None:
    """F-UCH-1, D-UCH: a chat channel's init has no interactions; its requests fail."""
    d = Driver(login=False)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1", "chat": True})
    assert {"channel-state": "INACTIVE", "ready-state": None} == body(d.msg("channel.query.init", CHAT))
    out = d.msg("channel.request.activate", CHAT)
    assert "F-UCH-1" == d.rule(out)
    assert ok(d.msg("channel.request.dispose", CHAT))


# --------------------------------------------------------------------------
# Dial and new interactions.


def test_d_tch_1_dial_announces_the_interaction_before_its_success() -> None:
    """F-TCH-1, D-TCH-1, D-ORDER: dial -> the dial command; the new leg's
    interaction.created, then SUCCESS with its interactionid; it is DIALING."""
    d = Driver()
    out = d.msg("channel.request.dial", CH, None, {"destination": "ring300"})  # alerts, never answered
    assert [{"id": "cmd-3", "op": "dial", "device": DEVICE, "destination": "ring300"}] == commands(out)
    names = [m["header"]["name"] for m in (o["message"] for o in out if o.get("to") == "bridge")]
    assert names.index("interaction.created") < names.index("channel.request.dial")
    assert {"interactionid": "sim-1"} == responses(out)[0]["body"]
    assert "DIALING" == d.init(f"{CH}.sim-1")["interaction-state"]


def test_d_tch_1_dial_with_a_scripted_switch_waits_for_the_leg() -> None:
    """D-TCH-1, D-DONE: the dial is answered when a result names the leg."""
    d = Driver(scripted=True)
    pending = d.message("channel.request.dial", CH, {"destination": "300"})
    assert pending.result is None
    out = d.switch("result", "x9", command="cmd-3", ok=True)
    done = pending.later(out)
    assert "SUCCESS" == done.result
    assert ["interaction.created"] == event_names(out)


def test_d_tch_1_an_empty_destination_is_refused() -> None:
    """D-TCH-1: dial needs a destination."""
    d = Driver()
    out = d.msg("channel.request.dial", CH, None, {"destination": " "})
    assert "D-TCH-1" == d.rule(out)


def test_d_new_a_call_before_the_channels_init_is_listed_not_announced() -> None:
    """D-NEW, D-LIFE-3: offered before the channel's init: no interaction.created;
    the channel's init lists it; its target is under the channel."""
    d = Driver(login=False)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    assert [] == event_names(d.switch("offered"))
    assert ["c1"] == body(d.msg("channel.query.init", CH))["interactions"]
    assert "ALERTING" == d.init(f"{CH}.c1")["interaction-state"]


def test_d_new_a_call_before_any_session_waits_for_its_channel() -> None:
    """D-NEW: the client follows its agents' end-points from start-up: a call
    offered before the agent logs in is listed in the new channel's init."""
    d = Driver(login=False)
    d.switch("offered")
    d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    assert ["c1"] == body(d.msg("channel.query.init", CH))["interactions"]


def test_d_new_a_call_to_an_unknown_end_point_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """D-NEW: a call offered to an end-point no agent has is logged and ignored, no output."""
    d = Driver()
    with caplog.at_level(logging.INFO, logger="telephony_fsm.engine"):
        assert [] == d.switch("offered", "z1", device="9999")
    assert "which no agent of the directory has" in caplog.text
    assert [] == d.switch("connected", "z1")  # its later events are ignored too


def test_d_leg_calls_of_different_agents_never_meet() -> None:
    """D-LEG: a new outbound leg on one agent's device is never a phone
    consult of another agent's call."""
    directory = AgentDirectory((Agent("agent-1", "1001"), Agent("agent-2", "1002")))
    d = Driver(directory=directory)
    d.login("S2", "agent-2", "1002")
    d.switch("offered", "c1")
    d.switch("connected", "c1")
    out = d.switch("dialing", "p1", device="1002")
    assert [("S2.G1.1002", "p1")] == [
        (m["header"]["target"], m["body"]["interactionid"])
        for m in events(out)
        if m["header"]["name"] == "interaction.created"
    ]
    assert d.engine.interactions["c1"].consult is None


def test_f_ctrl_1_one_control_destination_whatever_the_sessions_and_the_link() -> None:
    """F-CTRL-1, F-TARGET: the control destination is PROCESSOR.CONTROL, there
    from the start (no session yet) and while the link is down."""
    from fsm.outputs import Targets

    d = Driver(login=False, targets=Targets("east"))
    assert ok(d.msg("cti.request.status", "east.CONTROL"))
    link(d, False)
    assert ok(d.msg("cti.query.capabilities", "east.CONTROL"))
    assert "D-TARGET" == d.rule(d.msg("cti.request.status", CONTROL))  # another processor's


def test_f_life_1_every_destination_is_set_up_initialized_and_torn_down() -> None:
    """F-LIFE-1, S-LIFE-1: a session's group and channel are set up with the
    session, initialized by their own init queries, torn down by dispose."""
    d = Driver(login=False)
    d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    tree = d.engine.destinations
    assert ("INITIALIZED", "SETUP", "SETUP") == (
        tree[SESSION].lifecycle,
        tree[GROUP].lifecycle,
        tree[CH].lifecycle,
    )
    d.msg("channelgroup.query.init", GROUP)
    d.msg("channel.query.init", CH)
    assert ("INITIALIZED", "INITIALIZED") == (tree[GROUP].lifecycle, tree[CH].lifecycle)
    channel = tree[CH]
    assert ok(d.msg("channel.request.dispose", CH))
    assert "DISPOSED" == channel.lifecycle


def test_d_new_a_call_that_ended_before_any_channel_is_forgotten() -> None:
    """D-NEW, D-CH-1, D-BOUND: a call offered and ended while no session showed
    its device is never listed (not live, never shown), so the new channel
    does not keep it."""
    d = Driver(login=False)
    d.switch("offered")
    d.switch("ended")
    d.msg("session.query.init", SESSION, None, {"name": "agent-1"})
    assert [] == body(d.msg("channel.query.init", CH))["interactions"]
    assert {} == d.engine.interactions


def test_d_new_calls_while_another_agent_holds_the_device_are_not_this_agents() -> None:
    """D-NEW, D-CH-1: while the device is UNAVAILABLE its calls are not
    announced, and once it is free again they are not listed either."""
    d = Driver()
    agent_event(d, "taken")
    assert [] == d.switch("offered", "u1")
    agent_event(d, "free")
    assert [] == body(d.msg("channel.query.init", CH))["interactions"]
    assert [] == d.switch("connected", "u1")  # its later events are ignored


def test_d_async_a_timed_out_dial_claims_the_devices_next_new_leg() -> None:
    """D-ASYNC, D-LEG: a dial the switch did not complete in time is FAILURE;
    the first new outbound leg of its device within request_timeout after
    that is the dial's: released, never announced; the next one is new."""
    d = Driver(scripted=True)
    pending = d.message("channel.request.dial", CH, {"destination": "300"})
    failed = pending.later(d.feed({"from": "clock", "advance": 31}))
    assert "FAILURE" == failed.result
    assert "D-ASYNC" == failed.refusal_rule()
    late = d.switch("dialing", "x1")
    assert [] == event_names(late)
    assert [{"id": "cmd-4", "op": "release", "call": "x1"}] == commands(late)
    assert ["interaction.created"] == event_names(d.switch("dialing", "x2"))


def test_d_async_a_timed_out_dials_late_result_names_a_leg_to_release() -> None:
    """D-ASYNC: the result of a timed-out dial's command that names a leg has it released."""
    d = Driver(scripted=True)
    d.message("channel.request.dial", CH, {"destination": "300"})
    d.feed({"from": "clock", "advance": 31})
    out = d.switch("result", "x1", command="cmd-3", ok=True)
    assert [{"id": "cmd-4", "op": "release", "call": "x1"}] == commands(out)
    assert ["interaction.created"] == event_names(d.switch("dialing", "x2"))  # the claim is spent
