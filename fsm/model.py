"""The light model objects that the shared machines drive.

An :class:`Interaction` and each of its :class:`Conversation` legs carry a
``state`` (driven by the interaction or conversation machine) and a
``lifecycle`` (driven by the destination lifecycle machine). Models compare
by identity (``eq=False``) and are slotted; they are never registered with a
machine (see ``fsm.machines``). Everything here is plain data that cattrs
turns into JSON and back (``fsm.snapshot``).

Most live interactions have no legs waiting to be created and no request
waiting its turn: those share :data:`NO_CALLS` and :data:`NO_REQUESTS`, an
empty dict and an empty list that refuse to be written to, rather than
holding empty containers of their own (memory per call). That rule lives
here alone: the engine changes a queue or a set of calls only through the
methods of :class:`Interaction` below, which give the model a container of
its own before adding and go back to the shared one when it empties.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn, Protocol

import attrs

from fsm.machines import ABSENT, ENDED, SETUP, TOP_OF, top


def _read_only(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError("a shared empty container is never written to; give the model its own")


class _SharedEmptyDict(dict[str, None]):
    __slots__ = ()
    __setitem__ = __delitem__ = update = setdefault = popitem = __ior__ = _read_only


class _SharedEmptyList(list["Request"]):
    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = remove = sort = reverse = _read_only


#: The empty set of calls that live models share (see the module's docstring).
NO_CALLS: Final[dict[str, None]] = _SharedEmptyDict()
#: The empty request queue that live models share.
NO_REQUESTS: Final[list[Request]] = _SharedEmptyList()


class _Registered(Protocol):
    @property
    def legs(self) -> Mapping[str, Conversation | ConversationView]: ...

    init_pending: dict[str, None]
    creatable: dict[str, None]


class _Registry:
    """The conversation registry of one interaction destination (D-CC-2,
    D-CC-3, S-CC-1): which legs its bridge may create a conversation for.
    Shared by an :class:`Interaction` (its first destination) and an
    :class:`InteractionView` (one in a further session, D-SESS-1)."""

    __slots__ = ()

    def may_create(self: _Registered, call: str) -> None:
        """``call``'s conversation may be created (S-CC-1, D-CC-4)."""
        self.creatable = {**self.creatable, call: None}

    def open_init(self: _Registered, listed: list[str]) -> None:
        """An init response listed ``listed``: the init phase (D-CC-3) is open
        for those of them and of an earlier init's that are not yet created."""
        pending = {**self.init_pending, **dict.fromkeys(listed)}
        self.init_pending = {c: None for c in pending if self.legs[c].bridge_id is None} or NO_CALLS

    def created(self: _Registered, call: str) -> None:
        """``call``'s conversation was created: neither set holds it any more."""
        if call in self.init_pending:
            self.init_pending = _without(self.init_pending, call)
        if call in self.creatable:
            self.creatable = _without(self.creatable, call)


@attrs.define(eq=False, slots=True, kw_only=True)
class Conversation:
    """One call leg, and the conversation destination the bridge made for it."""

    call: str
    interaction_id: str
    role: str
    state: str
    lifecycle: str = ABSENT
    bridge_id: str | None = None
    target: str | None = None
    request_ids: dict[str, None] = attrs.field(factory=dict)

    @property
    def live(self) -> bool:
        return self.state != ENDED


@attrs.define(kw_only=True)
class Request:
    """A request accepted for execution, waiting its turn (D-SERIAL)."""

    name: str
    target: str
    request_id: str
    properties: dict[str, str] = attrs.field(factory=dict)

    def under(self, target: str) -> bool:
        """Whether it was sent to ``target`` or a destination below it (D-LIFE-4)."""
        return self.target == target or self.target.startswith(f"{target}.")


@attrs.define(kw_only=True)
class Pending:
    """The request an interaction is executing, and what it waits for."""

    request: Request
    #: id of the switch command it sent, when it waits for the switch
    command: str | None = None
    #: engine-clock time at which it fails (D-ASYNC)
    deadline: float | None = None
    #: the leg it acts on (hold, alternate's active leg, transfer's primary)
    call: str | None = None
    #: the second leg (alternate's leg to retrieve, transfer's consult leg)
    other: str | None = None


@attrs.define(eq=False, slots=True, kw_only=True)
class Interaction(_Registry):
    """One interaction: its state, its data, its legs and its request queue."""

    id: str
    #: its destination's target, under its channel (D-TARGET); empty while no
    #: channel destination shows its device (D-NEW)
    target: str
    state: str
    #: the end-point of the agent's device it is on (D-LEG)
    device: str = ""
    lifecycle: str = SETUP
    #: interaction-data: strings or objects of the same kind (S-INIT-1)
    data: dict[str, Any] = attrs.field(factory=dict)
    #: every leg it has known, by call id, in order of appearance
    legs: dict[str, Conversation] = attrs.field(factory=dict)
    primary: str | None = None
    consult: str | None = None
    #: legs listed in the last init response and not yet created (D-CC-3)
    init_pending: dict[str, None] = NO_CALLS
    #: legs a consult response or interaction.consult event named (S-CC-1, D-CC-4)
    creatable: dict[str, None] = NO_CALLS
    request_ids: dict[str, None] = attrs.field(factory=dict)
    waiting: list[Request] = NO_REQUESTS
    executing: Pending | None = None

    @property
    def top(self) -> str:
        return TOP_OF.get(self.state) or top(self.state)

    def leg(self, role: str) -> Conversation | None:
        call = self.primary if role == "primary" else self.consult
        return self.legs[call] if call is not None else None

    # The request queue and the sets of calls, copy-on-write (see the
    # module's docstring).

    def enqueue(self, request: Request) -> None:
        """``request`` waits its turn, after those already waiting (D-SERIAL)."""
        if self.waiting:
            self.waiting.append(request)
        else:
            self.waiting = [request]

    def next_request(self) -> Request:
        """The first request waiting, taken off the queue."""
        request = self.waiting.pop(0)
        if not self.waiting:
            self.waiting = NO_REQUESTS
        return request

    def keep_waiting(self, kept: list[Request]) -> None:
        """Only ``kept`` waits now (all of them, when it is empty: none)."""
        self.waiting = kept or NO_REQUESTS


@attrs.define(eq=False, slots=True, kw_only=True)
class ConversationView:
    """A call leg's conversation destination in a further session of its
    agent (D-SESS-1): its own id, target, lifecycle and requestIds; the
    leg's state is the one :class:`Conversation`, found by ``call`` in its
    interaction."""

    call: str
    interaction_id: str
    lifecycle: str = ABSENT
    bridge_id: str | None = None
    target: str | None = None
    request_ids: dict[str, None] = attrs.field(factory=dict)


@attrs.define(eq=False, slots=True, kw_only=True)
class InteractionView(_Registry):
    """An interaction's destination in a further session of its agent
    (D-SESS-1): a second desktop sees the same call, judged once, through
    destinations of its own. The interaction's state, data, legs and
    request queue are the one :class:`Interaction`'s (D-SERIAL); its first
    destination is the :class:`Interaction` itself."""

    interaction_id: str
    target: str
    lifecycle: str = SETUP
    #: a conversation destination per leg of the interaction, by call id
    legs: dict[str, ConversationView] = attrs.field(factory=dict)
    init_pending: dict[str, None] = NO_CALLS
    creatable: dict[str, None] = NO_CALLS
    request_ids: dict[str, None] = attrs.field(factory=dict)


#: One destination of an interaction or of a call leg, in whichever session.
InteractionDestination = Interaction | InteractionView
ConversationDestination = Conversation | ConversationView


def _without(calls: dict[str, None], call: str) -> dict[str, None]:
    """``calls`` less ``call``: a smaller dict, or the shared empty one."""
    if len(calls) == 1:
        return NO_CALLS
    rest = dict(calls)
    del rest[call]
    return rest
