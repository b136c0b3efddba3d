"""A demo host as frozen data, and how to lay it out in a directory.

Device nodes are real character devices when the demo runs as root (mknod), so that everything that
looks at them (the checks, and the engine, which stats real paths) sees the real thing. Without root, a
node is an empty placeholder file and :class:`~gpudoctor.demo.devroot.DemoRoot` reports it to the checks as
the device it stands for. Everything else is a real file or symlink.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

Content = str | bytes


def _mknod(real: Path, spec: DeviceSpec) -> bool:
    """Make a real character device; False when the kernel refuses (no CAP_MKNOD)."""
    try:
        os.mknod(real, stat.S_IFCHR | 0o600, os.makedev(spec.major, spec.minor))
    except PermissionError:
        return False
    os.chmod(real, spec.mode)  # mknod's mode passes through the umask
    with contextlib.suppress(PermissionError):
        os.chown(real, spec.uid, spec.gid)
    return True


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True, kw_only=True)
class DeviceSpec:
    """A character device: numbers, permission bits, owner."""

    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, kw_only=True)
class DemoTree:
    """What a demo host holds. Paths are host paths (``/etc/...``).

    `expected` maps check ids to the status the demo must give (the demo tests hold it to that);
    `recorded_probes` stand in for live probes, the way a snapshot's do (``{"nvml": {...}}``).
    """

    name: str
    title: str = ""
    description: str = ""
    files: Mapping[str, Content] = field(default_factory=dict)
    modes: Mapping[str, int] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    devices: Mapping[str, DeviceSpec] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()
    expected: Mapping[str, str] = field(default_factory=dict)
    recorded_probes: Mapping[str, Any] = field(default_factory=dict)

    def named(self, name: str, *, title: str, description: str) -> DemoTree:
        return replace(self, name=name, title=title, description=description)

    def with_files(self, files: Mapping[str, Content], *, mode: int | None = None) -> DemoTree:
        modes = dict(self.modes)
        for path in files:
            if mode is None:
                modes.pop(path, None)
            else:
                modes[path] = mode
        return replace(
            self,
            files={**self.files, **files},
            modes=modes,
            links={k: v for k, v in self.links.items() if k not in files},
            devices={k: v for k, v in self.devices.items() if k not in files},
        )

    def with_links(self, links: Mapping[str, str]) -> DemoTree:
        return replace(
            self,
            links={**self.links, **links},
            files={k: v for k, v in self.files.items() if k not in links},
            devices={k: v for k, v in self.devices.items() if k not in links},
        )

    def with_devices(self, devices: Mapping[str, DeviceSpec]) -> DemoTree:
        return replace(
            self,
            devices={**self.devices, **devices},
            files={k: v for k, v in self.files.items() if k not in devices},
            links={k: v for k, v in self.links.items() if k not in devices},
        )

    def with_dirs(self, *paths: str) -> DemoTree:
        return replace(self, dirs=self.dirs | frozenset(paths))

    def merged(self, other: DemoTree) -> DemoTree:
        out = self.with_files(other.files).with_links(other.links).with_devices(other.devices)
        return replace(out, modes={**out.modes, **other.modes}, dirs=out.dirs | other.dirs)

    def without(self, *paths: str) -> DemoTree:
        """These paths, and everything below them, removed."""

        def keep(p: str) -> bool:
            return not any(_under(p, prefix) for prefix in paths)

        return replace(
            self,
            files={k: v for k, v in self.files.items() if keep(k)},
            modes={k: v for k, v in self.modes.items() if keep(k)},
            links={k: v for k, v in self.links.items() if keep(k)},
            devices={k: v for k, v in self.devices.items() if keep(k)},
            dirs=frozenset(d for d in self.dirs if keep(d)),
        )

    def expecting(self, statuses: Mapping[str, str]) -> DemoTree:
        return replace(self, expected={**self.expected, **statuses})

    def recording(self, probes: Mapping[str, Any]) -> DemoTree:
        return replace(self, recorded_probes={**self.recorded_probes, **probes})

    def write(self, dest: str | os.PathLike[str], *, real_devices: bool | None = None) -> Path:
        """Lay the tree out under `dest` (which must be empty or missing); returns the root.

        `real_devices` (default: when running as root) makes the device nodes with mknod; where mknod is
        refused (an unprivileged container) they fall back to placeholders.
        """
        make_nodes = os.geteuid() == 0 if real_devices is None else real_devices
        root = Path(os.path.abspath(dest))
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            raise FileExistsError(f"{root} is not empty; a demo host goes into a fresh directory")
        for d in sorted(self.dirs):
            (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for path, content in sorted(self.files.items()):
            real = root / path.lstrip("/")
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_bytes(content.encode() if isinstance(content, str) else content)
            real.chmod(self.modes.get(path, 0o644))
        for path, spec in sorted(self.devices.items()):
            real = root / path.lstrip("/")
            real.parent.mkdir(parents=True, exist_ok=True)
            if make_nodes and _mknod(real, spec):
                continue
            real.write_bytes(b"")
        for path, target in sorted(self.links.items()):
            real = root / path.lstrip("/")
            real.parent.mkdir(parents=True, exist_ok=True)
            real.symlink_to(target)
        return root
