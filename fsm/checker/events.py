"""The trace checker's view of what the client reports: events (S-EVT-0,
S-LIFE-2, D-EVT-2, ...), init snapshots (S-INIT-*, D-INIT-7) and the other
SUCCESS answers, and what each tells about the interaction and its legs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fsm.catalog import CONVERSATION_EVENTS, INTERACTION_EVENTS, RequestSpec
from fsm.checker.model import (
    ANY_LEG,
    CONVERSATION_MOVES,
    ENDED_LEG,
    INTERACTION_MOVES,
    LIVE_LEG,
    TOP_STATES,
    WITH_PRIMARY,
    WITHOUT_CONVERSATIONS,
    Asked,
    Destination,
    InteractionFacts,
    dispose,
    register,
)
from fsm.checker.rules import (
    Finding,
    InitSnapshot,
    check_conversation_body,
    check_data_body,
    check_init_body,
    is_text,
    message_body,
)
from fsm.checker.state import TraceState
from fsm.checker.tree import TREE_KINDS, TreeJudge
from fsm.errors import Refusal
from fsm.machines import DIALING, ENDED, INTERACTION, STARTED, join_words

INIT: Final = "interaction.query.init"
CONVERSATION_INIT: Final = "conversation.query.init"
DATA: Final = "interaction.query.data"
CREATED: Final = "interaction.created"

#: The D-EVT-2 events: one per top-level state change, named after the new state.
STATE_EVENTS: Final = {f"interaction.{s.lower()}": s for s in TOP_STATES}
#: Switch events that leave a live call leg live (harness.md, "Switch events");
#: ``ended`` and ``failed`` end the leg they name, and a kind not listed here
#: may end any.
LEG_KEPT_BY: Final = frozenset({"offered", "dialing", "alerting", "connected", "held", "retrieved", "result"})
LEG_ENDED_BY: Final = frozenset({"ended", "failed"})


class EventJudge:
    """Judges the client's events and SUCCESS answers, and applies what they
    tell to the facts of a :class:`TraceState`."""

    def __init__(self, state: TraceState, reevaluate: Callable[[str], None], tree: TreeJudge) -> None:
        self.state = state
        self.tree = tree
        #: called with an interaction's target when what is known of it
        #: changed: the requests waiting there are judged again
        self.reevaluate = reevaluate

    # ------------------------------------------------------------------
    # Events.

    def event(self, headers: dict[str, Any], message: dict[str, Any]) -> list[Finding]:
        found: list[Finding] = []
        if "requestId" in headers:
            found.append(Refusal("S-EVT-0", f"event {headers.get('name')!r} carries a requestId"))
        name, target = headers.get("name"), headers.get("target")
        if not isinstance(name, str) or not name or not isinstance(target, str) or not target:
            return [*found, Refusal("S-EVT-0", "an event carries a name and a target")]
        props = message_body(message)
        if name == CREATED:
            return found + self._created(target, props)
        return found + self._destination_event(name, target, props)

    def _created(self, channel: str, props: dict[str, str]) -> list[Finding]:
        """D-NEW: a new interaction, addressed ``CHANNEL.INTERACTIONID`` (D-TARGET),
        announced on an initialized telephony channel (S-LIFE-2, F-UCH-1)."""
        dest = self.state.destinations.get(channel)
        if dest is None or dest.kind != "channel":
            return [Refusal("D-NEW", f"interaction.created on {channel}, which is no channel destination")]
        if dest.disposed:
            return [Refusal("D-LIFE-4", f"interaction.created on {channel}, which was disposed")]
        if not dest.initialized:
            return [
                Refusal("S-LIFE-2", f"interaction.created on {channel} before its init query was answered")
            ]
        if dest.channel_type not in ("", "telephony"):
            return [Refusal("F-UCH-1", f"interaction.created on an unsupported {dest.channel_type} channel")]
        found: list[Finding] = []
        if props.get("type") != "telephony":
            found.append(
                Refusal("D-NEW", f"interaction.created has type {props.get('type')!r}, not telephony")
            )
        interaction_id = props.get("interactionid")
        if not interaction_id:
            return [*found, Refusal("D-NEW", "interaction.created names no interactionid")]
        if not self.tree.add_interaction(channel, interaction_id):
            return [*found, Refusal("D-NEW", f"interaction {interaction_id} was already created")]
        return found

    def _destination_event(self, name: str, target: str, props: dict[str, str]) -> list[Finding]:
        dest = self.state.destinations.get(target)
        if dest is not None and dest.disposed:
            return [Refusal("D-LIFE-4", f"{name} on {target}, which was disposed")]
        if dest is None or not dest.initialized:
            return [Refusal("S-LIFE-2", f"{name} on {target} before its init query was answered")]
        if dest.kind in TREE_KINDS:
            return self.tree.event(dest, name)
        facts = self.state.interactions[dest.group]
        if dest.kind == "interaction":
            found = self._interaction_event(facts, name, props)
        else:
            found = self._conversation_event(facts, dest, name)
        self.reevaluate(dest.group)
        return found

    def _interaction_event(self, facts: InteractionFacts, name: str, props: dict[str, str]) -> list[Finding]:
        if name not in INTERACTION_EVENTS:
            return [Refusal("D-EVT-2", f"{name} is not an event of the interaction destination")]
        if name == "interaction.consult":
            return self._phone_consult(facts, props)
        if name == "interaction.datachanged":
            changed = props.get("interaction-data")
            if isinstance(changed, dict) and changed:
                return []
            return [
                Refusal("D-EVT-3", "interaction.datachanged names no changed key in body.interaction-data")
            ]
        new, old = STATE_EVENTS[name], facts.top
        if old == new:
            return [
                Refusal("D-EVT-2", f"{name}: the interaction is already {new}; an event reports a change")
            ]
        if old is not None and (old, new) not in INTERACTION_MOVES:
            facts.top = None  # unknown until the next event or init says
            allowed = join_words(sorted(b for a, b in INTERACTION_MOVES if a == old))
            return [
                Refusal(
                    "D-EVT-2",
                    f"{name}: the interaction cannot go from {old} to {new} (from {old}: {allowed})",
                )
            ]
        facts.top = new
        if old == STARTED and new == DIALING:
            facts.promote_consult()  # D-PRIMARY-LOSS: the ringing consult leg
        if new in WITHOUT_CONVERSATIONS:
            facts.all_legs_ended(self.state.tracked(facts))
        return []

    def _phone_consult(self, facts: InteractionFacts, props: dict[str, str]) -> list[Finding]:
        """S-EVT-1: a consult made on the phone; D-CC-4: it may be created."""
        nativeid = props.get("nativeid")
        if not nativeid:
            return [Refusal("S-EVT-1", "interaction.consult names no nativeid")]
        found: list[Finding] = []
        states = facts.states()
        sources = INTERACTION.sources("phone_consult")
        if not states & set(sources):
            found.append(
                Refusal(
                    "S-EVT-1",
                    f"interaction.consult while the interaction is {join_words(sorted(states))}; "
                    f"a consult made on the phone starts from {join_words(sources)}",
                )
            )
        facts.leg(nativeid)
        facts.consult = nativeid
        facts.creatable.add(nativeid)
        self._live_now(facts, nativeid)
        return found

    def _live_now(self, facts: InteractionFacts, nativeid: str) -> None:
        """D-CONS-2, D-INIT-7: the consult leg exists and is not ENDED now.
        Kept only where the trace shows every switch event (harness.md,
        "Traces"), so that an end the messages do not report (a consult leg
        failing before its conversation exists) is still seen."""
        if self.state.shows_switch and nativeid not in self.state.tracked(facts):
            facts.live_now(nativeid)

    def switch_event(self, event: dict[str, Any]) -> None:
        """A switch event of the trace: a leg known live only from a consult
        response or an init snapshot may have ended with it."""
        kind, call = event.get("kind"), event.get("call")
        if not isinstance(kind, str):  # a line the engine refused (H-SW-1): it may be anything
            kind = None
        if kind in LEG_KEPT_BY:
            return
        named = call if kind in LEG_ENDED_BY and isinstance(call, str) else None
        for facts in self.state.interactions.values():
            if facts.may_have_ended(named, self.state.tracked(facts)):
                self.reevaluate(facts.target)

    def _conversation_event(self, facts: InteractionFacts, dest: Destination, name: str) -> list[Finding]:
        if name not in CONVERSATION_EVENTS:
            return [Refusal("D-CONV", f"{name} is not an event of the conversation destination")]
        assert dest.nativeid is not None
        new = name.removeprefix("conversation.").upper()
        leg = facts.leg(dest.nativeid)
        old = leg.states
        if old == frozenset({new}):
            return [
                Refusal("D-CONV", f"{name}: the conversation is already {new}; an event reports a change")
            ]
        if not any((state, new) in CONVERSATION_MOVES for state in old):
            leg.states = ANY_LEG
            return [
                Refusal("D-CONV", f"{name}: a conversation cannot go from {join_words(sorted(old))} to {new}")
            ]
        leg.states = frozenset({new})
        consult = facts.consult
        if new == ENDED and leg.nativeid == facts.primary and facts.leg_states(consult) <= LIVE_LEG:
            facts.promote_consult()  # D-PRIMARY-LOSS: the live consult leg
        return []

    # ------------------------------------------------------------------
    # Answers: what a SUCCESS response says.

    def judge_answer(
        self,
        spec: RequestSpec,
        facts: InteractionFacts,
        dest: Destination,
        message: dict[str, Any],
        what: str,
    ) -> list[Finding]:
        """The body or properties of a SUCCESS response."""
        body = message.get("body")
        if spec.name == INIT:
            return self.judge_init(facts, body)
        if spec.name == CONVERSATION_INIT:
            return self.judge_conversation_init(facts, dest, body)
        if spec.name == DATA:
            return check_data_body(body, self.state.policy.max_data_keys)
        if spec.trigger == "consult" and not is_text(message_body(message).get("nativeid")):
            return [Refusal("S-CONS-1", f"{what} without the nativeid of the consult call")]
        return []

    def apply_answer(
        self, asked: Asked, facts: InteractionFacts, dest: Destination, message: dict[str, Any]
    ) -> None:
        """What a SUCCESS response tells about its destination."""
        spec = asked.spec
        assert spec is not None
        if spec.name == INIT:
            dest.initialized = True
            self.apply_init(facts, check_init_body(message.get("body"), self.state.policy.max_data_keys)[1])
        elif spec.name == CONVERSATION_INIT:
            dest.initialized = True
            assert dest.nativeid is not None
            leg = facts.leg(dest.nativeid)
            parsed = check_conversation_body(message.get("body"))[1]
            leg.states = ANY_LEG if parsed is None else frozenset({parsed[0]})
            if parsed is not None and parsed[2] == "primary" and facts.consult == leg.nativeid:
                facts.promote_consult()  # D-PRIMARY-LOSS
        elif spec.trigger == "createconversation":
            bridge_id = asked.properties["id"]
            target = self.state.targets.conversation(facts.target, bridge_id)
            register(self.state.destinations, facts, bridge_id, asked.properties["nativeid"], target)
        elif spec.trigger == "consult":
            nativeid = message_body(message).get("nativeid")
            if isinstance(nativeid, str) and nativeid:
                facts.leg(nativeid)
                facts.consult = nativeid
                facts.creatable.add(nativeid)
                self._live_now(facts, nativeid)  # D-ASYNC: the switch has just named it
        elif spec.trigger == "dispose":
            dispose(self.state.destinations, facts, dest)

    # ------------------------------------------------------------------
    # Init snapshots.

    def judge_init(self, facts: InteractionFacts, body: object) -> list[Finding]:
        """S-INIT-1..5, D-INIT-7, and D-LIFE-5: a re-init reports the state
        the events established."""
        found, snapshot = check_init_body(body, self.state.policy.max_data_keys)
        if snapshot.state is not None and facts.top is not None and snapshot.state != facts.top:
            found.append(
                Refusal("D-LIFE-5", f"init reports {snapshot.state}, but the events said {facts.top}")
            )
        if snapshot.listed is not None and snapshot.state == STARTED:
            found += self._consult_listing(facts, snapshot.listed)
        return found

    def _consult_listing(self, facts: InteractionFacts, listed: dict[str, str]) -> list[Finding]:
        """D-INIT-7: consult is listed exactly while the consult leg is not ENDED."""
        consult = listed.get("consult")
        if consult is not None and consult in facts.legs and facts.leg_states(consult) == ENDED_LEG:
            return [Refusal("D-INIT-7", f"consult {consult} is listed, but that call leg ENDED")]
        known = facts.consult
        if known is None or consult is not None or known in listed.values():
            return []
        if known in self.state.tracked(facts) and facts.leg_states(known) <= LIVE_LEG:
            state = join_words(facts.leg_states(known))
            return [
                Refusal(
                    "D-INIT-7", f"the consult conversation ({known}) is {state}, yet no consult is listed"
                )
            ]
        return []

    def apply_init(self, facts: InteractionFacts, snapshot: InitSnapshot) -> None:
        """What an init snapshot tells: the state, the legs (D-CONV-ID: by
        CTI id), and the legs the init phase may create (D-CC-3: those it
        lists, and those an earlier init listed, until created)."""
        state, listed = snapshot.state, snapshot.listed
        if state is not None:
            facts.top = state
        if state is None or listed is None:
            return
        tracked = self.state.tracked(facts)
        if state in WITHOUT_CONVERSATIONS:
            facts.all_legs_ended(tracked)
            return
        kept = {role: ident for role, ident in listed.items() if role == "primary" or state == STARTED}
        primary, consult = kept.get("primary"), kept.get("consult")
        if primary is not None and state in WITH_PRIMARY:
            facts.leg(primary)
            if facts.consult == primary:
                facts.promote_consult()
            facts.primary = primary
        if consult is not None:
            facts.leg(consult)
            facts.consult = consult
            self._live_now(facts, consult)  # D-INIT-7: listed while not ENDED
        elif facts.consult is not None and facts.consult != primary:
            # Not listed: the consult leg is over (D-INIT-7).
            if facts.consult not in tracked:
                facts.legs[facts.consult].states = ENDED_LEG
            facts.consult = None
        listed_now = facts.init_pending | set(kept.values())
        facts.init_pending = {i for i in listed_now if facts.legs[i].bridge_id is None}

    def judge_conversation_init(
        self, facts: InteractionFacts, dest: Destination, body: object
    ) -> list[Finding]:
        """The conversation init body (D-CONV), its nativeid (D-CONV-ID), and
        D-LIFE-5: a re-init reports the state the events established."""
        found, parsed = check_conversation_body(body)
        if parsed is None:
            return found
        state, nativeid, _ = parsed
        if nativeid != dest.nativeid:
            found.append(
                Refusal(
                    "D-CONV-ID",
                    f"nativeid {nativeid} is not the one createconversation registered ({dest.nativeid})",
                )
            )
        assert dest.nativeid is not None
        known = facts.leg_states(dest.nativeid)
        if dest.nativeid in self.state.tracked(facts) and len(known) == 1 and state not in known:
            found.append(
                Refusal(
                    "D-LIFE-5", f"conversation init reports {state}, but the events said {next(iter(known))}"
                )
            )
        return found
