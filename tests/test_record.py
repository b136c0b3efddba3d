"""Record keeps the contract the host model's classes had as ``@dataclass(frozen=True, slots=True,
kw_only=True)``: the same objects compare, hash, print, copy and refuse changes the same way."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError as DataclassFrozen
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, ClassVar, Generic, TypeVar

import pytest

from gpudoctor.record import FrozenInstanceError, Record, field, replace

T = TypeVar("T")


class Entry(Record):
    """A value with a required field, plain defaults and a per-instance default."""

    name: str
    """A field docstring, as the host model writes them."""
    size: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    LIMIT: ClassVar[int] = 8

    @property
    def big(self) -> bool:
        return self.size > self.LIMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class DcEntry:
    name: str
    size: int = 0
    tags: dict[str, str] = dc_field(default_factory=dict)
    note: str | None = None
    LIMIT: ClassVar[int] = 8


class Fact(Record, Generic[T]):
    path: str
    value: T | None = None


class Child(Fact[int]):
    extra: str = "x"


class Draft(Record, frozen=False):
    """A mutable one, like ``@dataclass(slots=True, kw_only=True)``."""

    status: str
    evidence: list[str] = field(default_factory=list)


def test_fields_defaults_and_factories() -> None:
    e = Entry(name="a")
    assert (e.name, e.size, e.tags, e.note) == ("a", 0, {}, None)
    assert Entry(name="a").tags is not Entry(name="a").tags
    assert Entry(name="b", size=9).big and not e.big
    assert Entry.LIMIT == 8
    assert Entry._record_fields == ("name", "size", "tags", "note")
    assert Entry.__slots__ == ("name", "size", "tags", "note")
    assert not hasattr(e, "__dict__")


def test_equality_hash_and_repr_match_dataclasses() -> None:
    args: dict[str, Any] = {"name": "a", "size": 2, "note": "n"}
    assert Entry(**args) == Entry(**args)
    assert Entry(**args) != Entry(**{**args, "size": 3})
    assert Entry(**args) != DcEntry(**args)  # another class never compares equal, as with dataclasses
    assert repr(Entry(**args)).replace("Entry", "DcEntry", 1) == repr(DcEntry(**args))
    assert hash(Fact(path="p", value=1)) == hash(Fact(path="p", value=1))
    with pytest.raises(TypeError, match="unhashable"):
        hash(Entry(name="a"))  # a dict field makes it unhashable, as with a frozen dataclass
    assert {Fact(path="p"), Fact(path="p")} == {Fact(path="p")}


def test_frozen_like_a_dataclass() -> None:
    e = Entry(name="a")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'size'"):
        e.size = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del e.name  # type: ignore[misc]
    with pytest.raises(DataclassFrozen):
        DcEntry(name="a").size = 3  # type: ignore[misc]
    assert issubclass(FrozenInstanceError, AttributeError)


def test_keyword_only_constructor() -> None:
    with pytest.raises(TypeError, match="missing required keyword-only argument: 'name'"):
        Entry()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Entry(name="a", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Entry("a")  # type: ignore[misc]


def test_generic_and_inherited_fields() -> None:
    c = Child(path="/x", value=3)
    assert Child._record_fields == ("path", "value", "extra")
    assert (c.path, c.value, c.extra) == ("/x", 3, "x")
    assert repr(c) == "Child(path='/x', value=3, extra='x')"
    assert Fact[int](path="p").value is None


def test_copy_and_pickle() -> None:
    e = Entry(name="a", tags={"k": "v"})
    assert copy.copy(e) == e
    deep = copy.deepcopy(e)
    assert deep == e and deep.tags is not e.tags
    assert pickle.loads(pickle.dumps(e)) == e
    assert pickle.loads(pickle.dumps(Child(path="p"))) == Child(path="p")


def test_recursive_repr_does_not_loop() -> None:
    tags: dict[str, object] = {}
    e = Entry(name="a", tags=tags)  # type: ignore[arg-type]
    tags["self"] = e
    assert repr(e) == "Entry(name='a', size=0, tags={'self': ...}, note=None)"


def test_mutable_records() -> None:
    d = Draft(status="pass")
    d.status = "fail"
    d.evidence.append("x")
    assert d == Draft(status="fail", evidence=["x"])
    assert repr(d) == "Draft(status='fail', evidence=['x'])"
    with pytest.raises(TypeError, match="unhashable"):
        hash(d)
    with pytest.raises(AttributeError):
        d.colour = "red"  # type: ignore[attr-defined]  # slots: no new attributes


def test_replace_like_dataclasses() -> None:
    e = Entry(name="a", size=1)
    r = replace(e, size=2)
    assert r == Entry(name="a", size=2) and e.size == 1
    assert replace(Draft(status="pass"), status="warn").status == "warn"
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        replace(e, colour="red")
    with pytest.raises(TypeError, match="needs a Record"):
        replace(DcEntry(name="a"), size=2)
