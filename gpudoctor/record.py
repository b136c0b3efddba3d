"""Record: keyword-only value classes that cost nothing to define.

``@dataclass`` writes and compiles about six methods for each class when its module is imported, and
``dataclasses`` itself imports ``inspect``. The headless doctor's host model, parsers and check contract
define some fifty value classes, and every ``gpudoctor --check`` imports all of them: generating those
methods took longer than starting the interpreter (the headless doctor must stay under 4x a bare
``python3 -c pass``). A Record subclass keeps the contract those classes had as
``@dataclass(frozen=True, slots=True, kw_only=True)``, with methods written once, here:

- ``__init__`` takes every field as a keyword argument. A field with a class-level default may be left
  out; ``field(default_factory=f)`` gives each instance its own ``f()``.
- Fields are the class's annotations (``ClassVar`` ones excepted), after those of its Record bases.
- Instances have ``__slots__`` only. They compare equal when they are of the same class and their fields
  are equal, and ``repr`` as ``Name(field=value, ...)``.
- Frozen by default: assigning or deleting an attribute raises FrozenInstanceError (an AttributeError),
  and instances hash by their fields. ``class X(Record, frozen=False)`` is mutable and unhashable, like
  ``@dataclass(slots=True, kw_only=True)``.
- ``replace(obj, **changes)`` is ``dataclasses.replace``; ``copy``, ``deepcopy`` and ``pickle`` work.

Type checkers see all of this through ``dataclass_transform`` (PEP 681).
"""

from __future__ import annotations

import reprlib
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10: only type checkers use it, and they run on 3.11+
    def dataclass_transform(**_kwargs: Any) -> Callable[[type], type]:
        return lambda cls: cls

__all__ = ["FrozenInstanceError", "Record", "field", "replace"]

T = TypeVar("T")

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """Raised on assigning to (or deleting) a field of a Record."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A default made fresh for each instance (``field(default_factory=dict)``), as in dataclasses."""
    return cast(T, _Factory(default_factory))


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


class _RecordMeta(type):
    """Turns the annotations of a Record subclass into its fields and ``__slots__`` at class creation."""

    _record_fields: tuple[str, ...]
    _record_defaults: dict[str, Any]

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], *, frozen: bool | None = None,
        **kwargs: Any,
    ) -> _RecordMeta:
        annotations = namespace.get("__annotations__", {})
        own = tuple(n for n, a in annotations.items() if not _is_classvar(a))
        # A default stays out of the class dict: it would clash with the slot of the same name.
        defaults = {n: namespace.pop(n) for n in own if n in namespace}
        namespace.setdefault("__slots__", own)
        if frozen is False:
            # What @dataclass(eq=True) does for a mutable class: plain attribute access, no hash.
            namespace.update(__setattr__=object.__setattr__, __delattr__=object.__delattr__, __hash__=None)
        cls = super().__new__(mcls, name, bases, namespace, **kwargs)
        inherited: tuple[str, ...] = getattr(cls, "_record_fields", ())
        cls._record_fields = inherited + tuple(n for n in own if n not in inherited)
        cls._record_defaults = {**getattr(cls, "_record_defaults", {}), **defaults}
        return cls


@dataclass_transform(kw_only_default=True, frozen_default=True, eq_default=True, field_specifiers=(field,))
class Record(metaclass=_RecordMeta):
    """Base class of the host model's value classes (see the module docstring for the contract)."""

    __slots__: ClassVar[tuple[str, ...]] = ()
    _record_fields: ClassVar[tuple[str, ...]] = ()
    _record_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        for name in cls._record_fields:
            value = values.pop(name, _MISSING)
            if value is _MISSING:
                value = cls._record_defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{cls.__qualname__}.__init__() missing required keyword-only argument: {name!r}")
                if isinstance(value, _Factory):
                    value = value.make()
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {next(iter(values))!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._record_fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._record_fields)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    # copy and pickle: the fields in order, restored without going through the frozen __setattr__.
    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self._record_fields, state, strict=True):
            object.__setattr__(self, name, value)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the Record `obj` with some fields changed (``dataclasses.replace``)."""
    if not isinstance(obj, Record):
        raise TypeError(f"replace() needs a Record, not {type(obj).__name__}")
    values = {name: getattr(obj, name) for name in obj._record_fields}
    return type(obj)(**{**values, **changes})
