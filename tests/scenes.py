"""Scenes: the test driver (``tests.driver``) brought to a given state.

Every state is reached the way a deployment reaches it: switch events fed
by hand (a switch the test plays, with the simulated switch's semantics,
``switch_acknowledges=False``) and bridge messages (init queries,
``createconversation``, ``consult``, ``alternate``, ``complete``). No model
attribute is ever set directly; the builders only read the engine to check
they arrived where they meant to.
"""

from __future__ import annotations

from typing import Any

import attrs

from fsm import machines as m
from fsm.engine import Engine
from fsm.messages import SUCCESS
from fsm.model import Conversation, Interaction
from fsm.policy import Policy
from tests.driver import CH, Driver, Sent

__all__ = ["Driver", "Sent"]  # with the scenes below, for the tests that use them

#: call ids the switch uses in the scenes
INBOUND_CALL = "c1"
OUTBOUND_CALL = "o1"
CONSULT_CALL = "k1"
#: the bridge's ids of the conversations it creates (createconversation `id`)
PRIMARY_ID = "conv-primary"
CONSULT_ID = "conv-consult"
#: a number the consult dials
CONSULT_NUMBER = "2000"


def played(policy: Policy | None = None, *, acknowledges: bool = False) -> Driver:
    """A driver whose switch the test plays: commands cause nothing, every
    switch event is fed by hand; ``acknowledges``: the engine waits for a
    ``result`` of each command."""
    return Driver(policy, scripted=True, switch_acknowledges=acknowledges)


@attrs.define
class Scene:
    """One interaction of a driven engine, with the targets of its conversations."""

    driver: Driver
    interaction_id: str
    primary_call: str
    primary_target: str = ""
    consult_target: str = ""

    @property
    def engine(self) -> Engine:
        return self.driver.engine

    @property
    def interaction(self) -> Interaction:
        return self.engine.interactions[self.interaction_id]

    @property
    def target(self) -> str:
        return self.engine.targets.interaction(CH, self.interaction_id)

    def leg(self, call: str) -> Conversation:
        return self.interaction.legs[call]


def create_conversation(driver: Driver, interaction_target: str, bridge_id: str, nativeid: str) -> str:
    """createconversation then conversation.query.init (D-CONS-3); returns the conversation target."""
    driver.succeed(
        "interaction.request.createconversation",
        interaction_target,
        {"id": bridge_id, "nativeid": nativeid},
    )
    target = driver.engine.targets.conversation(interaction_target, bridge_id)
    driver.succeed("conversation.query.init", target)
    return target


def start_inbound(driver: Driver, *, answer: bool, create: bool = True) -> Scene:
    """A call offered to the agent (ALERTING), answered on the phone if ``answer``
    (STARTED.none); initialized, with its primary conversation created."""
    driver.switch("offered", INBOUND_CALL, ani="5551000")
    if answer:
        driver.switch("connected", INBOUND_CALL)
    scene = Scene(driver, INBOUND_CALL, INBOUND_CALL)
    driver.succeed("interaction.query.init", scene.target)
    if create:
        scene.primary_target = create_conversation(driver, scene.target, PRIMARY_ID, INBOUND_CALL)
    return scene


def start_outbound(driver: Driver) -> Scene:
    """The agent dials out from the phone (DIALING); initialized, primary created."""
    driver.switch("dialing", OUTBOUND_CALL, destination="5552000")
    scene = Scene(driver, OUTBOUND_CALL, OUTBOUND_CALL)
    driver.succeed("interaction.query.init", scene.target)
    scene.primary_target = create_conversation(driver, scene.target, PRIMARY_ID, OUTBOUND_CALL)
    return scene


def request_consult(scene: Scene) -> Sent:
    """Send a consult that the switch accepts; it stays pending (S-CONS-1, D-ASYNC)."""
    sent = scene.driver.message("interaction.request.consult", scene.target, {"destination": CONSULT_NUMBER})
    expected = (None, ["consult"])
    assert expected == (sent.result, [c["op"] for c in sent.commands()]), sent.outputs
    return sent


def place_consult(scene: Scene) -> None:
    """Consult as the simulated switch plays it: the primary is held, the consult
    leg is named by its dialing event and rings; the bridge creates its
    conversation (S-CONS-1, D-CONS-3). Ends in STARTED.ringing."""
    driver = scene.driver
    sent = request_consult(scene)
    driver.switch("held", scene.primary_call)
    outputs = driver.switch("dialing", CONSULT_CALL, destination=CONSULT_NUMBER)
    answered = sent.later(outputs).response()
    expected = (SUCCESS, {"nativeid": CONSULT_CALL})
    assert answered is not None, outputs
    assert expected == (answered["header"]["result"], answered["body"])
    driver.switch("alerting", CONSULT_CALL)
    scene.consult_target = create_conversation(driver, scene.target, CONSULT_ID, CONSULT_CALL)


def alternate(scene: Scene) -> None:
    """alternate as the simulated switch plays it: hold the active leg, retrieve the other (S-ALT-1)."""
    driver = scene.driver
    sent = driver.message("interaction.request.alternate", scene.target)
    [command] = sent.commands()
    driver.switch("held", command["call"])
    assert "other" in command, command
    outputs = driver.switch("retrieved", command["other"])
    expected = SUCCESS
    assert expected == sent.later(outputs).result, outputs


def interaction_in(state: str, policy: Policy | None = None) -> Scene:
    """An engine whose one interaction is in ``state`` (any of INTERACTION_STATES),
    with no request executing, except in STARTED.requested, which exists only
    while a consult is pending: that engine's switch acknowledges commands and
    the consult's ``result`` is never sent."""
    driver = played(policy, acknowledges=state == m.S_REQUESTED)
    if state == m.DIALING:
        scene = start_outbound(driver)
    elif state == m.ALERTING:
        scene = start_inbound(driver, answer=False)
    else:
        scene = start_inbound(driver, answer=True)
    if state == m.S_REQUESTED:
        request_consult(scene)
    if state in (m.S_RINGING, *m.S_CONNECTED):
        place_consult(scene)
    if state in m.S_CONNECTED:
        driver.switch("connected", CONSULT_CALL)
    if state == m.S_PRIMARY:
        alternate(scene)
    if state in (m.ENDED, m.COMPLETED):
        driver.switch("ended", scene.primary_call, cause="hangup")
    if state == m.COMPLETED:
        driver.succeed("interaction.request.complete", scene.target)
    assert state == scene.interaction.state
    return scene


def conversation_in(state: str, policy: Policy | None = None) -> Scene:
    """An engine whose primary conversation (created and initialized) is in
    ``state`` (any of CONVERSATION_STATES); no request is executing."""
    if state == m.DIALING:
        scene = interaction_in(m.DIALING, policy)
    elif state == m.ALERTING:
        scene = interaction_in(m.ALERTING, policy)
    elif state == m.ENDED:
        scene = interaction_in(m.ENDED, policy)
    else:
        scene = interaction_in(m.S_NONE, policy)
    if state == m.HELD:
        scene.driver.switch("held", scene.primary_call)
    leg = scene.leg(scene.primary_call)
    assert (state, m.INITIALIZED) == (leg.state, leg.lifecycle)
    assert scene.interaction.executing is None
    return scene


def request_ids_of(snapshot: dict[str, Any], target: str) -> dict[str, None]:
    """The requestIds recorded for ``target`` in a :func:`fsm.snapshot.snapshot`."""
    for interaction in snapshot["interactions"]:
        if interaction["target"] == target:
            ids: dict[str, None] = interaction["request_ids"]
            return ids
        for leg in interaction["legs"].values():
            if leg.get("target") == target:
                leg_ids: dict[str, None] = leg["request_ids"]
                return leg_ids
    raise AssertionError(f"no destination {target} in the snapshot")
