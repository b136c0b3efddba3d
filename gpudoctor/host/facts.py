"""HostFacts: the host model that checks read. Facts are computed lazily, once, and are thread-safe.

Checks run concurrently, so two checks asking for the same fact must not parse the same file twice or race.
:meth:`HostFacts.memo` computes a fact once per key; the accessors in :mod:`gpudoctor.host.model` are built
on it.

Live probe results (NVML, the Docker daemon) go through :meth:`HostFacts.probe`: when the facts were built
from a snapshot, the recorded result stands in for the live probe, so a replay gives the same findings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gpudoctor.host.root import HostRoot

T = TypeVar("T")

_MISSING = object()


class ProbeNotRecorded(Exception):
    """A snapshot replay asked for a live probe that the snapshot did not record (it is never run live)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the snapshot has no recorded {name!r} probe, and a replay never probes live")
        self.name = name


class HostFacts:
    """Lazily computed facts about one host, rooted at `root`.

    With `replay` (a snapshot being replayed), recorded probes stand in for every live probe, and a probe
    that was not recorded raises ProbeNotRecorded instead of touching this machine.
    """

    def __init__(
        self,
        *,
        root: HostRoot,
        recorded_probes: dict[str, Any] | None = None,
        docker_host: str | None = None,
        replay: bool = False,
    ) -> None:
        self.root = root
        self.docker_host = docker_host
        self.replay = replay
        self.recorded_probes: dict[str, Any] = dict(recorded_probes or {})
        self.probe_log: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def fresh(self) -> HostFacts:
        """A new HostFacts on the same root with nothing cached (re-check after a fix)."""
        return HostFacts(root=self.root, recorded_probes=self.recorded_probes, docker_host=self.docker_host,
                         replay=self.replay)

    @property
    def offline(self) -> bool:
        return self.root.offline

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Return the cached value for `key`, computing it once (other threads wait for the first)."""
        value = self._values.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            value = self._values.get(key, _MISSING)
            if value is _MISSING:
                value = compute()
                self._values[key] = value
        return value  # type: ignore[no-any-return]

    def probe(self, name: str, live: Callable[[], T], *, encode: Callable[[T], Any], decode: Callable[[Any], T]) -> T:
        """Run a live probe once (or replay its recorded result) and log its encoded form for snapshots."""

        def compute() -> T:
            if name in self.recorded_probes:
                value = decode(self.recorded_probes[name])
            elif self.replay:
                raise ProbeNotRecorded(name)
            else:
                value = live()
            self.probe_log[name] = encode(value)
            return value

        return self.memo(f"probe:{name}", compute)
