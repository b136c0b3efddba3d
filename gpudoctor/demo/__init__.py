"""Bundled demo hosts for ``gpudoctor --demo [SCENARIO]``: see the TUI work without a GPU.

A scenario is laid out in a fresh temporary directory each run and removed afterwards, so fixes applied in
the demo change only that copy. Demo runs are offline: no NVML, no Docker daemon; where a real host would
be probed live, the scenario's recorded probe answers, the way a snapshot's does.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gpudoctor.host.facts import HostFacts

DEFAULT_SCENARIO = "broken"


class DemoError(Exception):
    """An unknown scenario, or one that could not be laid out; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class DemoHost:
    """A laid-out demo scenario: its name, where it lives, and the facts to run the doctor on."""

    name: str
    title: str
    description: str
    root: Path
    facts: HostFacts
    expected: dict[str, str]


def scenario_names() -> list[str]:
    from gpudoctor.demo.hosts import CATALOG

    return list(CATALOG)


def describe_scenarios() -> str:
    """One line per scenario, for `--demo help` and error messages."""
    from gpudoctor.demo.hosts import CATALOG

    lines = []
    for name, build in CATALOG.items():
        tree = build()
        lines.append(f"  {name:<18} {tree.description}")
    return "\n".join(lines)


def materialise(name: str, dest: str | Path) -> DemoHost:
    """Lay scenario `name` out under `dest` (an empty or missing directory) and return the DemoHost."""
    from gpudoctor.demo.devroot import DemoRoot
    from gpudoctor.demo.hosts import CATALOG

    build = CATALOG.get(name)
    if build is None:
        raise DemoError(f"unknown demo scenario {name!r}; the scenarios are:\n{describe_scenarios()}")
    tree = build()
    try:
        root = tree.write(dest)
    except OSError as exc:
        raise DemoError(f"cannot lay out the demo host in {dest}: {exc}") from None
    _install_gpudoctor_stand_ins(Path(root))
    facts = HostFacts(root=DemoRoot(root, devices=tree.devices), recorded_probes=dict(tree.recorded_probes))
    return DemoHost(name=tree.name, title=tree.title, description=tree.description, root=root, facts=facts,
                    expected=dict(tree.expected))


def _install_gpudoctor_stand_ins(root: Path) -> None:
    """The demo host is one where gpudoctor is installed: what its generated CDI hooks and runtime launcher
    name (this interpreter and the engine's entry script) must exist under the root, or the demo's own
    `runtime.cdi` check would rightly call a spec the wizard just wrote stale."""
    from gpudoctor.engine.launcher import entry_path, python_path

    for host_path in (python_path(), entry_path()):
        target = root / host_path.lstrip("/")
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")
        target.chmod(0o755)


@contextmanager
def open_demo(name: str = DEFAULT_SCENARIO) -> Iterator[DemoHost]:
    """A demo host in a temporary directory, removed when the block ends."""
    tmp = tempfile.mkdtemp(prefix=f"gpudoctor-demo-{name[:20].replace('/', '_')}-")
    try:
        yield materialise(name, Path(tmp) / "host")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
