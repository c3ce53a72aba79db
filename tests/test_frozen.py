"""``fsm.frozen.builder``: a quicker constructor that makes the same instance.

For each frozen class the engine builds on its hot paths, the builder's
instance equals the class's own, field for field, by keyword and by
position, defaults and factories applied as attrs applies them. Classes
where a plain slot write would skip something attrs does (validators,
converters, init hooks) are refused.

Assertions are written ``expected == actual``.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from fsm.errors import Refusal
from fsm.frozen import builder
from fsm.messages import Headers, Message
from fsm.outputs import ToBridge, ToSwitch
from fsm.switch_events import Command, SwitchEvent


def _fields(instance: Any) -> dict[str, Any]:
    return {f.name: getattr(instance, f.name) for f in attrs.fields(type(instance))}


_HEADERS = {"type": "cti.response", "name": "n", "target": "t", "request_id": "r1", "result": "SUCCESS"}

CASES: list[tuple[type[Any], dict[str, Any]]] = [
    (Headers, {"type": "cti.event", "name": "n", "target": "t"}),
    (Headers, _HEADERS),
    (Message, {"header": Headers(**_HEADERS)}),
    (Message, {"header": Headers(**_HEADERS), "body": {"a": "b", "x": [1]}}),
    (ToBridge, {"message": Message(header=Headers(**_HEADERS)), "refusal": Refusal("D-BAD", "why")}),
    (ToSwitch, {"command": Command(id="cmd-1", op="answer", call="c1")}),
    (Command, {"id": "cmd-2", "op": "consult", "call": "c1", "destination": "200"}),
    (SwitchEvent, {"kind": "offered", "call": "c1", "device": "1001", "data": {"k": "v"}}),
    (SwitchEvent, {"kind": "result", "command": "cmd-1", "ok": True}),
]


@pytest.mark.parametrize(("cls", "given"), CASES)
def test_the_builder_makes_what_the_class_makes(cls: type[Any], given: dict[str, Any]) -> None:
    expected = cls(**given)
    built = builder(cls)(**given)
    assert cls is type(built)
    assert expected == built
    assert _fields(expected) == _fields(built)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.__setattr__(attrs.fields(cls)[0].name, None)


@pytest.mark.parametrize(("cls", "given"), CASES)
def test_fields_may_be_given_by_position_in_field_order(cls: type[Any], given: dict[str, Any]) -> None:
    names = [f.name for f in attrs.fields(cls)]
    last = max(names.index(name) for name in given)
    positional = [given.get(name, _default(cls, name)) for name in names[: last + 1]]
    assert cls(**given) == builder(cls)(*positional)


def _default(cls: type[Any], name: str) -> Any:
    default: Any = attrs.fields_dict(cls)[name].default
    return default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]


def test_a_factory_default_is_fresh_for_each_instance() -> None:
    build = builder(Message)
    first, second = build(header=Headers(**_HEADERS)), build(header=Headers(**_HEADERS))
    assert {} == first.body
    assert first.body is not second.body


def test_a_missing_required_field_is_refused() -> None:
    with pytest.raises(TypeError):
        builder(Headers)(type="cti.event", name="n")


@attrs.frozen
class _Validated:
    x: int = attrs.field(validator=attrs.validators.instance_of(int))


@attrs.frozen
class _Converted:
    x: int = attrs.field(converter=int)


@attrs.frozen
class _PostInit:
    x: int

    def __attrs_post_init__(self) -> None:
        pass


@attrs.define
class _Mutable:
    x: int


@attrs.frozen(slots=False)
class _Unslotted:
    x: int


@attrs.frozen
class _SelfFactory:
    x: int = attrs.field(default=attrs.Factory(lambda self: 1, takes_self=True))


@attrs.frozen
class _NoInit:
    x: int = attrs.field(init=False, default=1)


@pytest.mark.parametrize(
    "cls", [_Validated, _Converted, _PostInit, _Mutable, _Unslotted, _SelfFactory, _NoInit]
)
def test_classes_a_slot_write_would_get_wrong_are_refused(cls: type[Any]) -> None:
    with pytest.raises(TypeError, match=cls.__name__):
        builder(cls)


@attrs.frozen(kw_only=True)
class _DefaultBeforeRequired:
    a: str = "x"
    b: str


def test_a_required_field_after_a_default_makes_every_field_keyword_only() -> None:
    build = builder(_DefaultBeforeRequired)
    assert _DefaultBeforeRequired(b="y") == build(b="y")
    with pytest.raises(TypeError):
        build("x", "y")
