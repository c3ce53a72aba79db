"""The processor's destinations above the interactions, on the bridge side.

:class:`Processor` answers what the bridge sends to the control destination
(status, capabilities, login validation, agent information: F-CTRL-*,
D-CTRL-*), to sessions (their creation by ``session.query.init``, logout,
D-SESS-*), channel groups (F-CG-1) and channels (F-CH-*, D-CH-1, F-TCH-1,
F-UCH-1), once the engine above has read and addressed it (D-DUP,
D-TARGET). Requests on an agent's device go down to
:class:`fsm.devices.Devices`; tearing a channel down drops the interactions
below it through :class:`fsm.execution.Execution` (D-LIFE-4). It makes the
channel destinations of a new session and binds the device's interactions
under them (D-NEW, D-LIFE-3).
"""

from __future__ import annotations

from typing import Any, Final

from fsm.catalog import (
    CATALOG,
    CREATION_GUARDS_OF,
    GROUP_ID,
    GUARDS_OF,
    MEDIA_CHANNELS,
    TREE_ANSWERS,
    RequestSpec,
    TreeContext,
    first_refusal,
    headers_of,
)
from fsm.devices import Devices
from fsm.errors import Refusal
from fsm.execution import Execution
from fsm.machines import ABSENT, COMPLETED, ENDED, INITIALIZED, LIFECYCLE
from fsm.messages import Headers, event
from fsm.outbox import Outbox
from fsm.state import EngineState
from fsm.tree import Channel, ChannelGroup, Control, Device, Session

Tree = Control | Session | ChannelGroup | Channel


class Processor:
    """Control, session, channel group and channel messages; calls only the layers below."""

    __slots__ = ("devices", "execution", "outbox", "state")

    def __init__(self, state: EngineState, outbox: Outbox, execution: Execution, devices: Devices) -> None:
        self.state = state
        self.outbox = outbox
        self.execution = execution
        self.devices = devices

    def device_of(self, dest: Tree) -> Device | None:
        """The device a channel shows, or a session's telephony channel's."""
        if type(dest) is Channel:
            return self.state.devices.get(dest.end_point) if dest.supported else None
        if type(dest) is Session:
            agent = self.state.directory.get(dest.agent)
            return self.state.devices.get(agent.end_point) if agent is not None else None
        return None

    # ------------------------------------------------------------------
    # Queries and requests.

    def query(self, headers: Headers, spec: RequestSpec, props: Any, dest: Tree) -> None:
        """Answered at once with the destination as it is (D-SERIAL, D-LIFE-5)."""
        ctx = TreeContext(self.state, dest, self.device_of(dest), props)
        guards = GUARDS_OF[spec.name]
        if guards:
            refusal = first_refusal(guards, ctx)
            if refusal is not None:
                self.outbox.refuse_with(headers, refusal)
                return
        assert spec.answer is not None
        self.outbox.respond(headers, TREE_ANSWERS[spec.answer](ctx))
        if spec.then is not None:
            LIFECYCLE.fire(dest, spec.then)

    def request(self, headers: Headers, spec: RequestSpec, props: Any, dest: Tree) -> None:
        if spec.machine == "lifecycle":
            self.dispose(headers, dest)
            return
        if dest.lifecycle != INITIALIZED:
            self.outbox.refuse(headers, "D-LIFE-5", f"{dest.target} is not initialized; send its init query")
            return
        device = self.device_of(dest)
        if type(dest) is Control or device is None:
            guards = GUARDS_OF[spec.name]
            refusal = first_refusal(guards, TreeContext(self.state, dest, device, props)) if guards else None
            if refusal is not None:
                self.outbox.refuse_with(headers, refusal)
                return
            self.outbox.respond(headers)
            if spec.then_event == "status" and type(dest) is Control:
                dest.reporting = True  # D-CTRL-1: from now on status changes are reported
                self.outbox.emit(
                    event("cti.status", dest.target, {"status": dest.state, "reason": dest.reason})
                )
            return
        self.devices.submit(headers, spec, props, device)

    # ------------------------------------------------------------------
    # A new session (F-SESS-1, D-SESS-1, D-SESS-2, D-CG-1).

    def create_session(self, headers: Headers, props: Any) -> None:
        state = self.state
        target = headers.target
        if not target or "." in target:
            self.outbox.refuse(
                headers, "D-TARGET", f"session target {target!r} must be a non-empty id without '.'"
            )
            return
        refusal = first_refusal(CREATION_GUARDS_OF["session"], TreeContext(state, None, None, props))
        if refusal is not None:
            self.outbox.refuse_with(headers, refusal)
            return
        agent = state.directory.get(props.name)
        assert agent is not None and headers.request_id is not None
        session = Session(
            target=target,
            agent=agent.agent,
            chat=props.chat,
            email=props.email,
            callback=props.callback,
            lifecycle=ABSENT,
        )
        session.request_ids[headers.request_id] = None  # D-DUP: its init counts as seen
        group = ChannelGroup(target=state.targets.group(target, GROUP_ID), session=target, lifecycle=ABSENT)
        session.group = group.target
        channels = [
            Channel(
                target=state.targets.channel(group.target, agent.end_point),
                session=target,
                end_point=agent.end_point,
                lifecycle=ABSENT,
            )
        ]
        for kind, suffix in MEDIA_CHANNELS:
            if getattr(props, kind):
                end_point = f"{agent.agent}{suffix}"
                channels.append(
                    Channel(
                        target=state.targets.channel(group.target, end_point),
                        session=target,
                        end_point=end_point,
                        type=kind,
                        lifecycle=ABSENT,
                    )
                )
        made: list[Tree] = [session, group, *channels]
        for dest in made:
            LIFECYCLE.fire(dest, "create")
            state.destinations[dest.target] = dest
        group.channels = [c.target for c in channels]
        state.sessions[target] = session
        device = state.devices[agent.end_point]
        device.channels.append(channels[0].target)
        self._bind(channels[0], device)
        self.query(headers, _SESSION_INIT, props, session)

    def _bind(self, channel: Channel, device: Device) -> None:
        """The device's interactions that no channel destination shows get
        their destination under ``channel`` (D-NEW: listed in its init); a
        live one that another session's channel shows gets a further
        destination there (D-SESS-1)."""
        for interaction_id in list(device.interactions):
            interaction = self.state.interactions[interaction_id]
            if interaction.target:
                if interaction.top not in (ENDED, COMPLETED):
                    self.state.add_view(interaction, channel.target)
                continue
            if interaction.top in (ENDED, COMPLETED):
                # it ended while no channel showed it: nobody will ever be told
                # of it (D-CH-1 lists live ones), so it is forgotten
                self.execution.drop(interaction, "ended before any channel showed it")
                continue
            interaction.target = target = self.state.targets.interaction(channel.target, interaction.id)
            LIFECYCLE.fire(interaction, "create")
            self.state.destinations[target] = interaction

    # ------------------------------------------------------------------
    # Tear down (D-LIFE-4): the destination and everything below it.

    def dispose(self, headers: Headers, dest: Tree) -> None:
        state = self.state
        reason = f"destination {dest.target} was disposed"
        gone: list[Tree] = [dest]
        if type(dest) is Session:
            group = state.destinations.get(dest.group)
            if type(group) is ChannelGroup:
                gone.append(group)
        if type(dest) is Channel:  # its group's init no longer lists it (F-CG-1)
            group = state.destinations.get(dest.target.rpartition(".")[0])
            if type(group) is ChannelGroup and dest.target in group.channels:
                group.channels.remove(dest.target)
        for item in list(gone):
            if type(item) is ChannelGroup:
                gone += [c for t in item.channels if type(c := state.destinations.get(t)) is Channel]
        for item in gone:
            if type(item) is Channel:
                self._drop_channel(item, reason)
        # D-SERIAL: device requests of the destination or below are answered
        # first: those on the devices of the channels it takes down (a
        # session's requests run on its agent's device too)
        devices = [self.device_of(item) for item in gone if type(item) is Channel or type(item) is Session]
        touched = list({id(d): d for d in devices if d is not None}.values())
        for device in touched:
            pending = device.executing
            if pending is not None and pending.request.under(dest.target):
                self.devices.finish(device, Refusal("D-LIFE-4", reason))
            kept = []
            for request in device.waiting:
                if request.under(dest.target):
                    self.outbox.refuse(headers_of(request), "D-LIFE-4", reason)
                else:
                    kept.append(request)
            if len(kept) != len(device.waiting):
                device.keep_waiting(kept)
        self.outbox.respond(headers)
        for item in gone:
            LIFECYCLE.fire(item, "dispose")
            state.forget_target(item.target)
            if type(item) is Session:
                state.sessions.pop(item.target, None)
        for device in touched:
            self.devices.pump(device)

    def _drop_channel(self, channel: Channel, reason: str) -> None:
        state = self.state
        device = state.devices.get(channel.end_point) if channel.supported else None
        if device is None:
            return
        if channel.target in device.channels:
            device.channels.remove(channel.target)
        for interaction_id in list(device.interactions):
            interaction = state.interactions.get(interaction_id)
            dest = state.under(interaction, channel.target) if interaction is not None else None
            if dest is None:
                continue
            assert interaction is not None
            if state.views and interaction.id in state.views:
                # another session still shows it: only this one's destination goes (D-SESS-1)
                self.execution.withdraw(interaction, dest, reason)
            elif interaction.top in (ENDED, COMPLETED):
                self.execution.drop(interaction, reason)
            else:  # the call goes on, listed by the device's next channel (D-LIFE-4, D-NEW)
                self.execution.detach(interaction, reason)


#: the catalog row a new session's init is answered by
_SESSION_INIT: Final = CATALOG["session.query.init"]
