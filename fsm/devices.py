"""Requests on an agent's device, one at a time (D-SERIAL), and its agent events.

:class:`Devices` runs what a channel or session asks of the agent's device
(``channel.request.activate`` / ``deactivate`` / ``ready`` / ``notready`` /
``dial``, ``session.request.logout``): the client's status (D-CTRL-3), the
channel machine's table (D-CH-1), the request's guards from the catalog,
the switch command on the end-point, and when it is done (the catalog's
``done`` column over :data:`fsm.catalog.DEVICE_DONE_WHEN`: the ``agent``
event, or for dial the switch naming the new leg, D-TCH-1), with its
deadline (D-ASYNC). It applies the switch's ``agent`` events to the channel
machine and reports them on every initialized channel destination of the
device (D-CH-1). It is given the shared state and the outbox, below it.
"""

from __future__ import annotations

import heapq
from typing import Any

import attrs

from fsm.catalog import (
    CATALOG,
    CHANNEL_EVENT_OF,
    DEVICE_DONE_WHEN,
    GUARDS_OF,
    RESPONSE_BODIES,
    RequestSpec,
    TreeContext,
    first_refusal,
    headers_of,
    read_properties,
    switch_refusal,
)
from fsm.errors import Refusal
from fsm.machines import CHANNEL, INITIALIZED, join_words
from fsm.messages import Headers, event
from fsm.model import Interaction, Pending, Request
from fsm.outbox import Outbox
from fsm.state import EngineState
from fsm.switch_events import SwitchEvent
from fsm.tree import Channel, Device, Session


class Devices:
    """Device requests and agent events for the layers above."""

    __slots__ = ("outbox", "state")

    def __init__(self, state: EngineState, outbox: Outbox) -> None:
        self.state = state
        self.outbox = outbox

    # ------------------------------------------------------------------
    # Requests.

    def submit(self, headers: Headers, spec: RequestSpec, props: Any, device: Device) -> None:
        """A device request that passed intake: it runs now, or waits its turn."""
        if device.executing is None and not device.waiting:
            self.execute(headers, spec, props, device)
            return
        held = len(device.waiting) + (device.executing is not None)
        if held >= self.state.policy.max_pending_requests:
            self.outbox.refuse(
                headers,
                "D-BOUND",
                f"{held} requests are already pending on device {device.end_point} "
                "(policy max_pending_requests)",
            )
            return
        assert headers.request_id is not None
        device.enqueue(
            Request(
                name=headers.name,
                target=headers.target,
                request_id=headers.request_id,
                properties={k: v for k, v in _properties_of(props).items() if v is not None},
            )
        )

    def pump(self, device: Device) -> None:
        """Start the requests waiting on ``device`` while none executes."""
        while device.executing is None and device.waiting:
            request = device.next_request()
            spec = CATALOG[request.name]
            headers = headers_of(request)
            if request.target not in self.state.destinations:
                self.outbox.refuse(headers, "D-LIFE-4", f"destination {request.target} was disposed")
                continue
            self.execute(headers, spec, read_properties(spec, request.properties), device)

    def execute(self, headers: Headers, spec: RequestSpec, props: Any, device: Device) -> None:
        """Run one device request whose turn it is."""
        state = self.state
        dest = state.destinations[headers.target]
        assert type(dest) is Channel or type(dest) is Session
        unreachable = switch_refusal(spec, state.control.state)
        if unreachable is not None:
            self.outbox.refuse_with(headers, unreachable)
            return
        assert spec.trigger is not None
        checked = CHANNEL.check(device.state, spec.trigger)  # the table first, as for interactions
        if isinstance(checked, Refusal):
            allowed = join_words(dict.fromkeys(CHANNEL.sources(spec.trigger)))
            self.outbox.refuse(
                headers, checked.rule, f"the channel is {device.state}; {spec.short} needs {allowed}"
            )
            return
        guards = GUARDS_OF[spec.name]
        if guards:
            refusal = first_refusal(guards, TreeContext(state, dest, device, props))
            if refusal is not None:
                self.outbox.refuse_with(headers, refusal)
                return
        if checked.action == "at_once" or spec.op is None:
            self.outbox.respond(headers)
            return
        extra = {name: getattr(props, name) for name in spec.arguments}
        if spec.op == "notready":
            device.reason = props.reason
        command = self.outbox.command(spec.op, None, device=device.end_point, **extra)
        assert headers.request_id is not None
        pending = Pending(
            request=Request(name=headers.name, target=headers.target, request_id=headers.request_id),
            command=command.id,
            deadline=state.clock + state.policy.request_timeout,
        )
        device.executing = pending
        state.awaited_devices[command.id] = device.end_point
        assert pending.deadline is not None
        heapq.heappush(state.device_deadlines, (pending.deadline, device.end_point, headers.request_id))

    def finish(
        self, device: Device, refusal: Refusal | None = None, interaction: Interaction | None = None
    ) -> None:
        """Answer the device's executing request: SUCCESS (with the body its
        catalog row names, made from ``interaction`` for dial) or FAILURE."""
        pending = device.executing
        assert pending is not None
        device.executing = None
        if pending.command is not None:
            self.state.awaited_devices.pop(pending.command, None)
        request = pending.request
        if refusal is not None:
            self.outbox.refuse_with(headers_of(request), refusal)
            return
        builder = CATALOG[request.name].body
        body = (
            RESPONSE_BODIES[builder](interaction) if builder is not None and interaction is not None else None
        )
        self.outbox.respond(request, body)

    def check_done(self, device: Device) -> None:
        """Whether the device's new state completes its executing request."""
        pending = device.executing
        if pending is None:
            return
        done = CATALOG[pending.request.name].done
        if done is None:
            return
        outcome = DEVICE_DONE_WHEN[done](device)
        if outcome is True:
            self.finish(device)
        elif isinstance(outcome, Refusal):
            self.finish(device, outcome)

    def dialing_for(self, device: Device) -> bool:
        """Whether a dial executing on ``device`` waits for its new leg (D-LEG)."""
        pending = device.executing
        return pending is not None and CATALOG[pending.request.name].done == "dial_named"

    def result(self, ev: SwitchEvent, end_point: str) -> bool:
        """A ``result`` for a device command (D-DONE). Returns True when it
        names the new leg of an executing dial, which the caller then makes."""
        device = self.state.devices[end_point]
        pending = device.executing
        assert pending is not None and pending.command == ev.command
        if not ev.ok:
            self.finish(device, Refusal("D-ASYNC", f"the switch refused: {ev.reason or 'no reason given'}"))
            self.pump(device)
            return False
        if CATALOG[pending.request.name].done == "dial_named":
            return bool(ev.call)
        return False  # D-DONE: accepted; the agent event completes it

    def fail_all(self, refusal: Refusal) -> None:
        """Answer every device request waiting on the switch FAILURE (D-CTRL-3)."""
        for end_point in list(self.state.awaited_devices.values()):
            device = self.state.devices[end_point]
            if device.executing is not None:
                self.finish(device, refusal)
                self.pump(device)

    def advance_to(self, end: float) -> None:
        """Let engine time reach ``end`` for device requests (D-ASYNC)."""
        state = self.state
        deadlines = state.device_deadlines
        while deadlines and deadlines[0][0] <= end:
            deadline, end_point, request_id = heapq.heappop(deadlines)
            state.clock = max(state.clock, deadline)
            device = state.devices.get(end_point)
            if (
                device is None
                or device.executing is None
                or device.executing.request.request_id != request_id
            ):
                continue
            pending = device.executing
            name = pending.request.name.rpartition(".")[2]
            timeout = state.policy.request_timeout
            if CATALOG[pending.request.name].done == "dial_named":
                # D-ASYNC: the leg named for it later (its command's result, or
                # the device's first new outbound leg within request_timeout) is released
                state.dial_claims[end_point] = (state.clock + timeout, pending.command or "")
            self.finish(
                device, Refusal("D-ASYNC", f"the switch did not complete {name} within {timeout:g} seconds")
            )
            self.pump(device)
        state.clock = max(state.clock, end)

    # ------------------------------------------------------------------
    # Agent events (harness.md: the device's login state at the switch).

    def agent_event(self, ev: SwitchEvent) -> None:
        device = self.state.devices.get(ev.device)
        if device is None:
            self.outbox.switch_error(
                "D-SWITCH", f"agent {ev.state}: device {ev.device} is no agent's end-point (D-CTRL-2)"
            )
            return
        trigger = f"agent_{ev.state}"
        before = device.state
        checked = CHANNEL.check(before, trigger)
        if isinstance(checked, Refusal):
            self.outbox.switch_error(
                checked.rule, f"agent {ev.state} for device {ev.device}: {checked.reason}"
            )
            return
        CHANNEL.fire(device, trigger)
        if device.state != before:
            if trigger == "agent_ready" or trigger == "agent_loggedin":
                device.reason = ""
            name = CHANNEL_EVENT_OF[trigger]
            body = {"reason": device.reason} if name == "channel.notready" else None
            for target in device.channels:
                channel = self.state.destinations.get(target)
                if type(channel) is Channel and channel.lifecycle == INITIALIZED:
                    self.outbox.emit(event(name, target, body))
        self.check_done(device)
        self.pump(device)


def _properties_of(props: Any) -> dict[str, Any]:
    """The fields of structured properties, to queue a request."""
    if isinstance(props, dict):
        return dict(props)
    fields: dict[str, Any] = attrs.asdict(props)
    return fields
