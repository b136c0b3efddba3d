"""Which distribution the host runs, and which package manager family installs things on it.

Detection goes through ``distro`` confined to the root (``gpudoctor.host.parsers.osinfo.read_os_release``),
so ``--root /host`` describes the host, not the container gpudoctor runs in.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.osinfo import read_os_release
from gpudoctor.host.root import HostRoot

APT_IDS = frozenset({"debian", "ubuntu"})
# `distro` normalises some IDs: ol -> oracle, opensuse-leap -> opensuse.
RPM_IDS = frozenset({"fedora", "rhel", "centos", "rocky", "almalinux", "ol", "oracle", "amzn"})
SUSE_IDS = frozenset({"suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles", "sled", "sle-micro"})


class UnsupportedDistro(Exception):
    """The host's distribution has no install recipe; the message says what was found."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Distro:
    """A distribution as the installer sees it."""

    id: str
    """os-release ID (``ubuntu``, ``rocky``, ``amzn``, ``opensuse-leap``)."""
    like: tuple[str, ...]
    version_id: str
    pretty_name: str
    family: str
    """``apt``, ``dnf``, ``yum`` or ``zypper``."""

    @property
    def major(self) -> int | None:
        head = self.version_id.split(".", 1)[0]
        return int(head) if head.isdigit() else None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset({self.id, *self.like})

    def describe(self) -> str:
        return f"{self.pretty_name} ({self.family})"


def family_of(distro_id: str, like: tuple[str, ...], version_id: str) -> str | None:
    """The package manager family for an os-release ID/ID_LIKE/VERSION_ID, or None when unknown."""
    ids = {distro_id, *like}
    major = version_id.split(".", 1)[0]
    if ids & APT_IDS:
        return "apt"
    if ids & SUSE_IDS or distro_id.startswith(("opensuse", "sle")):
        return "zypper"
    if ids & RPM_IDS:
        # yum only where dnf does not exist: Amazon Linux 2, and RHEL/CentOS/Oracle 7.
        if distro_id == "amzn" and major == "2":
            return "yum"
        if distro_id in ("rhel", "centos", "ol", "oracle") and major == "7":
            return "yum"
        return "dnf"
    return None


def detect_distro(root: HostRoot) -> Distro:
    """The host's distribution; UnsupportedDistro when it has no install recipe (the message says why)."""
    try:
        info = read_os_release(root)
    except ParseError as exc:
        raise UnsupportedDistro(f"cannot read the distribution: {exc}") from None
    if not info.id:
        raise UnsupportedDistro(
            f"no /etc/os-release under {root.root}: gpudoctor cannot tell the distribution, so it cannot pick the "
            "install commands"
        )
    version = info.version_id or ""
    family = family_of(info.id, info.id_like, version)
    pretty = info.pretty_name or f"{info.name or info.id} {version}".strip()
    if family is None:
        raise UnsupportedDistro(
            f"{pretty} (ID={info.id}) has no install recipe: gpudoctor installs on Ubuntu/Debian (apt), "
            "RHEL/Rocky/Alma/Fedora/Amazon Linux (dnf, yum) and SUSE (zypper). Follow NVIDIA's install guide, "
            "then run `gpudoctor --check`."
        )
    return Distro(id=info.id, like=tuple(info.id_like), version_id=version, pretty_name=pretty, family=family)
