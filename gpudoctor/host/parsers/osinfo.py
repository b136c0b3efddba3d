"""The host's distribution (os-release) and firmware state (Secure Boot, kernel lockdown)."""

from __future__ import annotations

import re

from gpudoctor.host.parsers._util import fail, lines, reject_nul, snippet
from gpudoctor.host.root import HostRoot
from gpudoctor.record import Record

__all__ = [
    "OsInfo",
    "SECURE_BOOT_EFIVAR",
    "parse_lockdown",
    "parse_os_release",
    "parse_secureboot_efivar",
    "read_lockdown",
    "read_os_release",
    "read_secure_boot",
]

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
SECURE_BOOT_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
# The old sysfs-efivars interface (removed in Linux 6.0): the value alone, without the attributes word.
SECURE_BOOT_LEGACY = "/sys/firmware/efi/vars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c/data"
LOCKDOWN = "/sys/kernel/security/lockdown"


class OsInfo(Record):
    """The distribution, from os-release (see os-release(5))."""

    id: str
    """Lowercase distribution id (``ubuntu``, ``debian``, ``rhel``, ``fedora``); ``""`` when unknown."""
    id_like: tuple[str, ...]
    version_id: str | None
    name: str | None
    pretty_name: str | None
    codename: str | None
    source: str | None = None
    """Host path the information came from, or None when no file was found."""


_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _os_release_value(raw: str, *, path: str, lineno: int) -> str:
    value = raw.strip()
    if value[:1] == "'":
        if len(value) < 2 or value[-1] != "'":
            fail(path, f"unterminated single quote in {snippet(raw)}", line=lineno)
        return value[1:-1]
    if value[:1] != '"':
        return value
    out: list[str] = []
    i = 1
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            # Inside double quotes only these four are escapes (shell rules); others keep the backslash.
            out.append(nxt if nxt in '\\"$`' else ch + nxt)
            i += 2
            continue
        if ch == '"':
            if i != len(value) - 1:
                fail(path, f"text after the closing quote in {snippet(raw)}", line=lineno)
            return "".join(out)
        out.append(ch)
        i += 1
    fail(path, f"unterminated double quote in {snippet(raw)}", line=lineno)


def _codename(props: dict[str, str]) -> str | None:
    for key in ("VERSION_CODENAME", "UBUNTU_CODENAME"):
        if props.get(key):
            return props[key]
    # Older files only have it in VERSION: "20.04.6 LTS (Focal Fossa)", "7 (Core)".
    m = re.search(r"\(([^)\d][^)]*)\)", props.get("VERSION", ""))
    return m.group(1).strip() if m else None


def _os_info(props: dict[str, str], *, source: str | None) -> OsInfo:
    return OsInfo(
        id=props.get("ID", "").lower(),
        id_like=tuple(props.get("ID_LIKE", "").lower().split()),
        version_id=props.get("VERSION_ID") or None,
        name=props.get("NAME") or None,
        pretty_name=props.get("PRETTY_NAME") or None,
        codename=_codename(props),
        source=source,
    )


def parse_os_release(text: str, *, path: str) -> OsInfo:
    """Parse an os-release file without the ``distro`` package.

    Lines are ``KEY=value`` with shell-style quoting; ``#`` comments and blank lines are ignored. Raises
    ParseError for any other line or an unterminated quote.
    """
    reject_nul(text, path)
    props: dict[str, str] = {}
    for lineno, line in enumerate(lines(text), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _ASSIGN.match(stripped)
        if m is None:
            fail(path, f"expected KEY=value, got {snippet(stripped)}", line=lineno)
        props[m.group(1)] = _os_release_value(m.group(2), path=path, lineno=lineno)
    return _os_info(props, source=path)


# distro's own filter for /etc/<name>-release files; copied because distro keeps it private.
_RELEASE_FILE = re.compile(r"(\w+)[-_](release|version)$")
_RELEASE_IGNORE = {
    "debian_version",
    "lsb-release",
    "oem-release",
    "os-release",
    "system-release",
    "plesk-release",
    "iredmail-release",
    "board-release",
    "ec2_version",
}


def read_os_release(root: HostRoot) -> OsInfo:
    """The host's distribution, read through the ``distro`` package confined to `root`.

    distro is given explicit, already-resolved files (os-release and the ``/etc/*-release`` file it would
    pick), with lsb_release/uname/oslevel disabled, so it runs no command and follows no symlink out of the
    root. Every file is also read through `root`, so snapshots record it. A malformed os-release raises
    ParseError; no file at all gives an OsInfo with ``id == ""`` and ``source is None``.
    """
    import distro  # deferred: only this check needs it, and `--check --json` must start fast

    os_release = next((p for p in OS_RELEASE_PATHS if root.is_file(p)), None)
    text = root.try_read_text(os_release) if os_release else None
    if os_release is None:
        root.exists(OS_RELEASE_PATHS[0])  # record the look-up
    release_file = _find_release_file(root, distro)
    try:
        dist = distro.LinuxDistribution(
            include_lsb=False,
            include_uname=False,
            include_oslevel=False,
            root_dir=str(root.root),
            # A path that cannot exist keeps distro from scanning the real /etc when there is nothing to read.
            os_release_file=_real_path(root, os_release or "/etc/.gpudoctor-no-os-release"),
            distro_release_file=_real_path(root, release_file or "/etc/.gpudoctor-no-release-file"),
        )
        info = OsInfo(
            id=dist.id(),
            id_like=tuple(dist.like().split()),
            version_id=dist.os_release_attr("version_id") or dist.distro_release_attr("version_id") or None,
            name=dist.name() or None,
            pretty_name=dist.os_release_attr("pretty_name") or None,
            codename=dist.codename() or None,
            source=os_release or release_file,
        )
        parsed_os_release = bool(dist.os_release_info())
    except (OSError, ValueError, UnicodeError):
        # distro chokes on an unbalanced quote (shlex) or bad UTF-8; the strict parser says where.
        if text is not None and os_release is not None:
            return parse_os_release(text, path=os_release)
        fail(release_file or OS_RELEASE_PATHS[0], "cannot read the distribution release file")
    if text is not None and os_release is not None and text.strip() and not parsed_os_release:
        # distro silently ignores lines it cannot read; a file with nothing usable is an error worth naming.
        return parse_os_release(text, path=os_release)
    return info


def _real_path(root: HostRoot, host_path: str) -> str:
    """The on-disk path of `host_path`, symlinks resolved inside the root; a path that does not exist when
    the link chain is broken (a loop), so distro reads nothing rather than something outside the root."""
    try:
        return str(root.path(host_path))
    except OSError:
        return str(root.root / ".gpudoctor-unresolvable")


def _find_release_file(root: HostRoot, distro_mod: object) -> str | None:
    """The ``/etc/*-release`` file distro would use: the first (sorted) one whose first line names a distro."""
    parse_line = getattr(
        getattr(distro_mod, "LinuxDistribution", None), "_parse_distro_release_content", None
    )
    for name in root.listdir("/etc"):
        if name in _RELEASE_IGNORE or not _RELEASE_FILE.match(name):
            continue
        host_path = f"/etc/{name}"
        if not root.is_file(host_path):
            continue
        text = root.try_read_text(host_path, max_bytes=4096)
        if text is None:
            continue
        first = text.split("\n", 1)[0]
        info = parse_line(first) if callable(parse_line) else {"name": first.strip()}
        if isinstance(info, dict) and info.get("name"):
            return host_path
    return None


# ---------------------------------------------------------------------------------------------- Secure Boot


def parse_secureboot_efivar(data: bytes, *, path: str) -> bool:
    """Parse the efivarfs ``SecureBoot-<guid>`` file: 4 bytes of attributes, then the 1-byte value (1 = on)."""
    if len(data) != 5:
        fail(path, f"expected 5 bytes (4 attribute bytes + 1 value byte), got {len(data)}")
    value = data[4]
    if value not in (0, 1):
        fail(path, f"Secure Boot value must be 0 or 1, got {value}")
    return value == 1


def read_secure_boot(root: HostRoot) -> bool | None:
    """Whether Secure Boot is on; None when the host did not boot via EFI or the variable is not readable."""
    if not root.is_dir("/sys/firmware/efi"):
        root.exists("/sys/firmware/efi")  # record the look-up
        return None
    data = root.try_read_bytes(SECURE_BOOT_EFIVAR, max_bytes=64)
    if data is not None:
        return parse_secureboot_efivar(data, path=SECURE_BOOT_EFIVAR)
    legacy = root.try_read_bytes(SECURE_BOOT_LEGACY, max_bytes=64)
    if legacy is not None:
        if len(legacy) != 1 or legacy[0] not in (0, 1):
            fail(SECURE_BOOT_LEGACY, f"expected a single byte 0 or 1, got {len(legacy)} bytes")
        return legacy[0] == 1
    return None


def parse_lockdown(text: str, *, path: str = LOCKDOWN) -> str:
    """Parse ``/sys/kernel/security/lockdown`` (``none [integrity] confidentiality``): the bracketed mode."""
    reject_nul(text, path)
    m = re.fullmatch(r"\s*(?:\w+\s+)*\[(\w+)\](?:\s+\w+)*\s*", text)
    if m is None:
        fail(path, f"expected modes with the active one in [brackets], got {snippet(text.strip())}")
    return m.group(1)


def read_lockdown(root: HostRoot) -> str | None:
    """The kernel lockdown mode (``none``, ``integrity``, ``confidentiality``); None when not available."""
    text = root.try_read_text(LOCKDOWN, max_bytes=256)
    return None if text is None else parse_lockdown(text, path=LOCKDOWN)
