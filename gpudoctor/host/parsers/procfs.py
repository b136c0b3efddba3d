"""Parsers for generic kernel procfs files: ``/proc/modules``, ``/proc/devices``, ``/proc/version`` and
``/proc/self/mountinfo`` (plus the cgroup layout derived from it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from gpudoctor.host.parsers._util import fail, lines, reject_nul, snippet
from gpudoctor.record import Record

__all__ = [
    "KernelVersion",
    "ModuleEntry",
    "MountEntry",
    "ProcDevices",
    "cgroup_mounts",
    "cgroup_version",
    "flag_values",
    "parse_cgroup_mounts",
    "parse_devices",
    "parse_modules",
    "parse_mountinfo",
    "parse_proc_version",
]

# ---------------------------------------------------------------------------------------------- /proc/modules


class ModuleEntry(Record):
    """One loaded kernel module, as a ``/proc/modules`` line shows it."""

    name: str
    size: int
    refcount: int
    """Use count; -1 when the kernel prints ``-`` (built without CONFIG_MODULE_UNLOAD)."""
    used_by: tuple[str, ...]
    """Modules that depend on this one (``[permanent]`` marks a module that cannot be unloaded)."""
    state: str
    """``Live``, ``Loading`` or ``Unloading``."""
    address: str = ""
    taints: str = ""
    """Taint flags without the parentheses, e.g. ``POE`` (proprietary, out-of-tree, unsigned)."""


_MODULE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_MODULE_STATES = ("Live", "Loading", "Unloading")


def parse_modules(text: str, *, path: str = "/proc/modules") -> dict[str, ModuleEntry]:
    """Parse ``/proc/modules`` into ``{name: ModuleEntry}``.

    A line is ``name size refcount deps state address [(taints)]`` (kernel/module/procfs.c).
    """
    reject_nul(text, path)
    out: dict[str, ModuleEntry] = {}
    for lineno, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) not in (6, 7):
            fail(path, f"expected 'name size refcount deps state address', got {snippet(line)}", line=lineno)
        name, size, refcount, deps, state, address = fields[:6]
        taints = fields[6] if len(fields) == 7 else ""
        if not _MODULE_NAME.fullmatch(name):
            fail(path, f"bad module name {snippet(name)}", line=lineno)
        if not size.isascii() or not size.isdigit():
            fail(path, f"{name}: size {snippet(size)} is not a number", line=lineno)
        if refcount == "-":
            count = -1
        elif refcount.isascii() and refcount.isdigit():
            count = int(refcount)
        else:
            fail(path, f"{name}: use count {snippet(refcount)} is not a number", line=lineno)
        if state not in _MODULE_STATES:
            fail(path, f"{name}: unknown state {snippet(state)}", line=lineno)
        if not address.startswith("0x"):
            fail(path, f"{name}: bad load address {snippet(address)}", line=lineno)
        if taints and not (taints.startswith("(") and taints.endswith(")")):
            fail(path, f"{name}: bad taint flags {snippet(taints)}", line=lineno)
        used_by = () if deps == "-" else tuple(d for d in deps.split(",") if d)
        out[name] = ModuleEntry(
            name=name,
            size=int(size),
            refcount=count,
            used_by=used_by,
            state=state,
            address=address,
            taints=taints[1:-1],
        )
    return out


# ---------------------------------------------------------------------------------------------- /proc/devices


class ProcDevices(Record):
    """Device majors registered with the kernel (``/proc/devices``)."""

    char: dict[int, str]
    """Major -> name (the first name when a major is shared, e.g. 4 is ``/dev/vc/0`` and ``tty``)."""
    block: dict[int, str]
    char_entries: tuple[tuple[int, str], ...] = ()
    """Every ``(major, name)`` character line, in file order."""
    block_entries: tuple[tuple[int, str], ...] = ()

    def char_major(self, name: str) -> int | None:
        """The major of a character device name, or None.

        ``nvidia`` and ``nvidia-frontend`` are the same device: the driver renamed it in 550.40, so asking
        for either finds whichever the loaded driver registered (as nvidia-container-toolkit does).
        """
        names = [name]
        if name in ("nvidia", "nvidia-frontend"):
            names = [name, "nvidia-frontend" if name == "nvidia" else "nvidia"]
        for wanted in names:
            for major, registered in self.char_entries:
                if registered == wanted:
                    return major
        return None

    def block_major(self, name: str) -> int | None:
        for major, registered in self.block_entries:
            if registered == name:
                return major
        return None


_DEVICE_LINE = re.compile(r"^\s*(\d{1,7})\s+(\S(?:.*\S)?)\s*$")


def parse_devices(text: str, *, path: str = "/proc/devices") -> ProcDevices:
    """Parse ``/proc/devices`` (``Character devices:`` and ``Block devices:`` sections of ``major name``)."""
    reject_nul(text, path)
    char: list[tuple[int, str]] = []
    block: list[tuple[int, str]] = []
    section: list[tuple[int, str]] | None = None
    for lineno, line in enumerate(lines(text), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped == "Character devices:":
            section = char
            continue
        if stripped == "Block devices:":
            section = block
            continue
        m = _DEVICE_LINE.match(line)
        if m is None:
            fail(path, f"expected 'major name', got {snippet(line)}", line=lineno)
        if section is None:
            fail(path, "device line before the 'Character devices:' header", line=lineno)
        section.append((int(m.group(1)), m.group(2)))
    if not char and not block and text.strip():
        fail(path, "no 'Character devices:' or 'Block devices:' section")
    return ProcDevices(
        char=_first_names(char),
        block=_first_names(block),
        char_entries=tuple(char),
        block_entries=tuple(block),
    )


def _first_names(entries: Iterable[tuple[int, str]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for major, name in entries:
        out.setdefault(major, name)
    return out


# ---------------------------------------------------------------------------------------------- /proc/version


class KernelVersion(Record):
    """The running kernel, from ``/proc/version``."""

    release: str
    """``uname -r``, e.g. ``6.1.0-18-amd64`` or ``5.15.146.1-microsoft-standard-WSL2``."""
    is_wsl2: bool
    is_wsl1: bool
    raw: str


def parse_proc_version(text: str, *, path: str = "/proc/version") -> KernelVersion:
    """Parse ``/proc/version`` (``Linux version <release> (<builder>) ...``).

    WSL2 kernels carry a lowercase ``microsoft`` in the release (``-microsoft-standard-WSL2``, or
    ``-microsoft-standard`` on older ones); WSL1 reports a fake release ending in ``-Microsoft``.
    """
    reject_nul(text, path)
    raw = text.strip()
    m = re.match(r"^Linux version (\S+)", raw)
    if m is None:
        fail(path, f"expected 'Linux version <release> ...', got {snippet(raw)}")
    release = m.group(1)
    is_wsl2 = "microsoft" in release or "WSL2" in release
    is_wsl1 = not is_wsl2 and "Microsoft" in release
    return KernelVersion(release=release, is_wsl2=is_wsl2, is_wsl1=is_wsl1, raw=raw)


# ---------------------------------------------------------------------------------------------- mountinfo


class MountEntry(Record):
    """One line of ``/proc/<pid>/mountinfo`` (see proc(5))."""

    mount_point: str
    fstype: str
    source: str
    options: tuple[str, ...]
    """Per-mount options (``rw``, ``nosuid``, ...)."""
    super_options: tuple[str, ...] = ()
    """Per-superblock options (for cgroup v1 they name the controllers, e.g. ``devices``)."""
    root: str = "/"
    """The path inside the filesystem that is mounted (``/`` for whole filesystems)."""
    mount_id: int = 0
    parent_id: int = 0
    device: str = ""
    """``major:minor``."""


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash in paths as \040, \011, \012, \134.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str, *, path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """Parse mountinfo: ``id parent maj:min root mountpoint options [optional...] - fstype source superopts``."""
    reject_nul(text, path)
    out: list[MountEntry] = []
    for lineno, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            fail(path, f"no ' - ' separator after the mount options in {snippet(line)}", line=lineno)
        pre, post = fields[:sep], fields[sep + 1 :]
        if len(post) < 2:
            fail(path, f"expected 'fstype source options' after ' - ' in {snippet(line)}", line=lineno)
        mount_id, parent_id, device = pre[0], pre[1], pre[2]
        if not (mount_id.isascii() and mount_id.isdigit() and parent_id.isascii() and parent_id.isdigit()):
            fail(path, f"mount ids must be numbers in {snippet(line)}", line=lineno)
        if not re.fullmatch(r"\d+:\d+", device):
            fail(path, f"bad device number {snippet(device)}", line=lineno)
        out.append(
            MountEntry(
                mount_point=_unescape(pre[4]),
                fstype=post[0],
                source=_unescape(post[1]),
                options=tuple(pre[5].split(",")),
                super_options=tuple(post[2].split(",")) if len(post) > 2 else (),
                root=_unescape(pre[3]),
                mount_id=int(mount_id),
                parent_id=int(parent_id),
                device=device,
            )
        )
    return out


def cgroup_mounts(entries: Iterable[MountEntry]) -> list[MountEntry]:
    """The cgroup (v1) and cgroup2 mounts among `entries`."""
    return [e for e in entries if e.fstype in ("cgroup", "cgroup2")]


def parse_cgroup_mounts(text: str, *, path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """The cgroup and cgroup2 mounts of a mountinfo file (`parse_mountinfo` + `cgroup_mounts`)."""
    return cgroup_mounts(parse_mountinfo(text, path=path))


def cgroup_version(entries: Iterable[MountEntry]) -> Literal["v1", "v2", "hybrid", "none"]:
    """Which cgroup layout the mounts show.

    - ``v2``: ``/sys/fs/cgroup`` itself is cgroup2 (the unified hierarchy).
    - ``hybrid``: v1 controller hierarchies plus cgroup2 at ``/sys/fs/cgroup/unified`` (systemd's hybrid mode).
    - ``v1``: only v1 controller hierarchies.
    - ``none``: no cgroup filesystem is mounted.

    When several mounts stack on one mount point, the last one (the visible one) counts.
    """
    top: dict[str, MountEntry] = {}
    for e in entries:
        top[e.mount_point] = e
    root = top.get("/sys/fs/cgroup")
    if root is not None and root.fstype == "cgroup2":
        return "v2"
    visible = top.values()
    has_v1 = any(e.fstype == "cgroup" for e in visible)
    unified = top.get("/sys/fs/cgroup/unified")
    if has_v1 and unified is not None and unified.fstype == "cgroup2":
        return "hybrid"
    if has_v1:
        return "v1"
    if any(e.fstype == "cgroup2" for e in visible):
        # cgroup2 mounted somewhere other than /sys/fs/cgroup (e.g. a container's private view).
        return "v2"
    return "none"


def flag_values(args: Sequence[str], *flags: str) -> list[str]:
    """Values of a repeatable command-line flag, in order: ``--flag=v``, ``--flag v`` or ``-f v``.

    For a daemon's arguments as ``/proc/<pid>/cmdline`` or a systemd ``ExecStart=`` gives them.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                out.append(args[i + 1])
            elif arg.startswith(flag + "="):
                out.append(arg[len(flag) + 1 :])
    return out
