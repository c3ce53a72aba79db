"""Creating and disposing an interaction costs the same beside 100 or 20,000 live ones.

The shared `transitions` machines hold no models (no ``add_model``), the
live models are reachable only through the engine's keyed dicts, and the
Python work of creating and disposing one more interaction with two
conversations (lines executed, functions called) and its peak allocation do
not depend on how many others are live. A scan over live interactions on
that path, or a model list, makes one of these fail. Nothing here is timed.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from adapters.simulated import SimulatedSwitch
from adapters.switch import dispatch
from fsm.engine import Output, ToBridge, ToSwitch
from fsm.machines import MACHINES
from fsm.messages import QUERY, REQUEST, SUCCESS
from fsm.switch_events import SwitchEvent
from tests.driver import logged_in, with_device

CHANNEL = "S1.G1.1001"
CROWD = 20_000
FEW = 100
#: create + dispose repeated; the smallest peak allocation is compared, so
#: that a dict that happens to resize once is not taken for a scan
REPEATS = 5


class Calls:
    """Calls placed through a real engine and the simulated switch, each
    command's events fed back as ``telephony-fsm run`` feeds them."""

    def __init__(self) -> None:
        self.engine = logged_in()
        self.switch = SimulatedSwitch()
        self.requests = 0
        #: interactions created beside the crowd, for fresh call ids
        self.extra = 0

    def outside(self, kind: str, call: str, **fields: Any) -> None:
        event = SwitchEvent(kind=kind, call=call, **with_device(kind, fields))
        self.switch.observe(event)
        self._drain(self.engine.receive_switch(event))

    def send(self, name: str, target: str, **properties: str) -> ToBridge:
        """Send a message; return its SUCCESS response (the switch done)."""
        self.requests += 1
        request_id = f"r{self.requests}"
        headers = {
            "type": QUERY if ".query." in name else REQUEST,
            "name": name,
            "target": target,
            "requestId": request_id,
        }
        outputs = self._drain(self.engine.receive_bridge({"header": headers, "body": properties}))
        [response] = [
            o for o in outputs if isinstance(o, ToBridge) and o.message.header.request_id == request_id
        ]
        expected = SUCCESS
        assert expected == response.message.header.result, response
        return response

    def _drain(self, outputs: list[Output]) -> list[Output]:
        seen = list(outputs)
        for output in outputs:
            if isinstance(output, ToSwitch):
                for event in dispatch(self.switch, output.command):
                    seen += self._drain(self.engine.receive_switch(event))
        return seen

    def open(self, call: str) -> None:
        """Offered, accepted, consulted: two legs, each with its conversation
        created by createconversation and initialized."""
        it = f"{CHANNEL}.{call}"
        self.outside("offered", call, ani="5551000")
        self.send("interaction.query.init", it)
        self.send("interaction.request.createconversation", it, id="conv-1", nativeid=call)
        self.send("conversation.query.init", f"{it}.conv-1")
        self.send("interaction.request.accept", it)
        consult = self.send("interaction.request.consult", it, destination="200")
        leg = consult.message.body["nativeid"]
        self.send("interaction.request.createconversation", it, id="conv-2", nativeid=leg)
        self.send("conversation.query.init", f"{it}.conv-2")

    def open_by_phone(self, call: str) -> None:
        """As :meth:`open`, but the agent dials the consult on the phone
        (S-EVT-1): the engine finds the interaction the new leg belongs to."""
        it = f"{CHANNEL}.{call}"
        self.outside("offered", call, ani="5551000")
        self.send("interaction.query.init", it)
        self.send("interaction.request.createconversation", it, id="conv-1", nativeid=call)
        self.send("conversation.query.init", f"{it}.conv-1")
        self.send("interaction.request.accept", it)
        leg = f"{call}-phone"
        self.outside("held", call)
        self.outside("dialing", leg, destination="200")
        self.outside("alerting", leg)
        self.outside("connected", leg)
        self.send("interaction.request.createconversation", it, id="conv-2", nativeid=leg)
        self.send("conversation.query.init", f"{it}.conv-2")

    def close(self, call: str) -> None:
        self.send("interaction.request.dispose", f"{CHANNEL}.{call}")


def crowd(size: int) -> Calls:
    calls = Calls()
    gc.disable()
    try:
        for i in range(size):
            calls.open(f"b{i}")
    finally:
        gc.enable()
    assert size == len(calls.engine.interactions)
    assert size == sum(len(i.legs) == 2 and i.executing is None for i in calls.engine.interactions.values())
    return calls


@pytest.fixture(scope="module")
def crowded() -> Calls:
    return crowd(CROWD)


def create_and_dispose(calls: Calls, *, by_phone: bool = False) -> Iterator[Callable[[], None]]:
    """Actions that each create and dispose one more interaction (a new call id each)."""
    while True:
        calls.extra += 1
        call = f"new{calls.extra}"

        def action(call: str = call) -> None:
            (calls.open_by_phone if by_phone else calls.open)(call)
            calls.close(call)

        yield action


def trace(action: Callable[[], None]) -> Counter[str]:
    """Python-level events while ``action`` runs: every function called
    (generators resumed included) and every line executed."""
    counts: Counter[str] = Counter()

    def local(frame: FrameType, event: str, arg: object) -> Any:
        counts[event] += 1
        return local

    def calls(frame: FrameType, event: str, arg: object) -> Any:
        counts[event] += 1
        return local

    previous = sys.gettrace()
    gc.disable()
    sys.settrace(calls)
    try:
        action()
    finally:
        sys.settrace(previous)
        gc.enable()
    return Counter({k: v for k, v in counts.items() if k in ("call", "line")})


def peak_allocation(action: Callable[[], None]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        action()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def test_machines_hold_no_models_and_only_keyed_dicts_hold_the_live(crowded: Calls) -> None:
    expected: dict[str, list[object]] = {machine.name: [] for machine in MACHINES}
    assert expected == {machine.name: list(machine.machine.models) for machine in MACHINES}
    engine = crowded.engine
    for interaction_id in ("b0", f"b{CROWD // 2}", f"b{CROWD - 1}"):
        interaction = engine.interactions[interaction_id]
        keyed: dict[str, object] = {"interactions": engine.interactions, "destinations": engine.destinations}
        assert sorted(keyed) == _holders(interaction, keyed)
        for leg in interaction.legs.values():
            keyed = {"calls": engine.calls, "destinations": engine.destinations, "legs": interaction.legs}
            assert sorted(keyed) == _holders(leg, keyed)


def _holders(model: object, keyed: dict[str, object]) -> list[str]:
    """The names of the containers in ``keyed`` that refer to ``model``; any
    other referrer (a model list, a machine) is reported by its type."""
    names = {id(container): name for name, container in keyed.items()}
    found = [
        names.get(id(r), f"unexpected {type(r).__name__}")
        for r in gc.get_referrers(model)
        if not isinstance(r, FrameType)
    ]
    return sorted(found)


def work_beside_few_and_crowd(crowded: Calls, *, by_phone: bool = False) -> dict[int, list[Counter[str]]]:
    few = crowd(FEW)
    cost: dict[int, list[Counter[str]]] = {}
    for calls in (few, crowded):
        actions = create_and_dispose(calls, by_phone=by_phone)
        next(actions)()  # warm: every code path has run once in this engine
        live = len(calls.engine.interactions)
        cost[live] = [trace(next(actions)) for _ in range(2)]
        assert live == len(calls.engine.interactions)
    assert cost[FEW][0]["line"] > 1000  # the tracer did see the engine work
    return cost


def test_create_and_dispose_do_the_same_work_beside_few_or_many(crowded: Calls) -> None:
    cost = work_beside_few_and_crowd(crowded)
    assert cost[FEW] == cost[CROWD]


def test_consult_dialed_on_the_phone_does_the_same_work_beside_few_or_many(crowded: Calls) -> None:
    cost = work_beside_few_and_crowd(crowded, by_phone=True)
    assert cost[FEW] == cost[CROWD]


def test_create_and_dispose_allocate_the_same_beside_few_or_many(crowded: Calls) -> None:
    few = crowd(FEW)
    peaks: dict[int, int] = {}
    for calls in (few, crowded):
        actions = create_and_dispose(calls)
        next(actions)()
        peaks[len(calls.engine.interactions)] = min(peak_allocation(next(actions)) for _ in range(REPEATS))
    # a list of the live interactions alone would be 8 bytes each: 160 KB
    assert peaks[CROWD] <= peaks[FEW] + 16 * 1024, peaks
