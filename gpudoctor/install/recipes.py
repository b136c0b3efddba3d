"""What installing means on each distribution family: driver instructions, Docker, the NVIDIA toolkit.

Repository files are written by gpudoctor itself (so they show as diffs, and are backed up and written
atomically); package managers and key downloads are commands. The toolkit repository follows NVIDIA's
current install guide: a dearmored keyring referenced with ``signed-by`` on apt (never the deprecated
``apt-key``), the ``.repo`` file with ``repo_gpgcheck`` and NVIDIA's ``gpgkey`` on dnf/yum/zypper.
"""

from __future__ import annotations

from gpudoctor.fixes.apply import read_config_text
from gpudoctor.fixes.base import Command, FileEdit, PlanItem
from gpudoctor.host.root import HostRoot
from gpudoctor.install.distro import Distro

NVIDIA_REPO = "https://nvidia.github.io/libnvidia-container"
NVIDIA_GPGKEY = f"{NVIDIA_REPO}/gpgkey"
APT_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
APT_LIST = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
YUM_REPO = "/etc/yum.repos.d/nvidia-container-toolkit.repo"
ZYPP_REPO = "/etc/zypp/repos.d/nvidia-container-toolkit.repo"
DOCKER_CE_REPO = "/etc/yum.repos.d/docker-ce.repo"
TOOLKIT_PACKAGE = "nvidia-container-toolkit"
DRIVER_GUIDE = "https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/"

APT_LIST_TEXT = (
    "# NVIDIA Container Toolkit (stable), written by `gpudoctor install`.\n"
    f"deb [signed-by={APT_KEYRING}] {NVIDIA_REPO}/stable/deb/$(ARCH) /\n"
)
YUM_REPO_TEXT = (
    "# NVIDIA Container Toolkit (stable), written by `gpudoctor install`.\n"
    "[nvidia-container-toolkit]\n"
    "name=nvidia-container-toolkit\n"
    f"baseurl={NVIDIA_REPO}/stable/rpm/$basearch\n"
    "repo_gpgcheck=1\n"
    "gpgcheck=0\n"
    "enabled=1\n"
    f"gpgkey={NVIDIA_GPGKEY}\n"
    "sslverify=1\n"
    "sslcacert=/etc/pki/tls/certs/ca-bundle.crt\n"
)
ZYPP_REPO_TEXT = (
    "# NVIDIA Container Toolkit (stable), written by `gpudoctor install`.\n"
    "[nvidia-container-toolkit]\n"
    "name=nvidia-container-toolkit\n"
    f"baseurl={NVIDIA_REPO}/stable/rpm/$basearch\n"
    "type=rpm-md\n"
    "enabled=1\n"
    "autorefresh=1\n"
    "repo_gpgcheck=1\n"
    "gpgcheck=0\n"
    f"gpgkey={NVIDIA_GPGKEY}\n"
)


def docker_ce_repo_text(distro: Distro) -> str:
    """Docker's own repository for RHEL-likes (they ship no Docker): docker-ce.repo's stable section."""
    flavor = "rhel" if distro.id == "rhel" else "centos"
    return (
        "# Docker CE (stable), written by `gpudoctor install`.\n"
        "[docker-ce-stable]\n"
        "name=Docker CE Stable - $basearch\n"
        f"baseurl=https://download.docker.com/linux/{flavor}/$releasever/$basearch/stable\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        f"gpgkey=https://download.docker.com/linux/{flavor}/gpg\n"
    )


def _edit(root: HostRoot, path: str, text: str, mode: int = 0o644) -> FileEdit | None:
    before = read_config_text(root, path)
    return None if before == text else FileEdit(path=path, before=before, after=text, mode=mode)


def _cmd(description: str, *argv: str) -> Command:
    return Command(argv=argv, description=description)


def _add_repo(pm: str) -> str:
    return "yum-config-manager --add-repo" if pm == "yum" else "dnf config-manager --add-repo"


# -- 1. the driver (instructions only) -----------------------------------------------------------------------


def driver_instructions(distro: Distro) -> tuple[str, ...]:
    """What a person runs to install the driver here. gpudoctor never installs a driver itself."""
    major = distro.major
    ids = distro.ids
    if distro.id == "ubuntu" or "ubuntu" in distro.like:
        lines = [
            "sudo ubuntu-drivers install        # Ubuntu's recommended driver, with signed kernel modules",
        ]
    elif distro.family == "apt":
        lines = [
            "enable the contrib, non-free and non-free-firmware components in /etc/apt/sources.list",
            "sudo apt-get update && sudo apt-get install -y nvidia-driver firmware-misc-nonfree",
        ]
    elif distro.id == "fedora":
        lines = [
            "enable RPM Fusion nonfree (https://rpmfusion.org/Configuration)",
            "sudo dnf install -y akmod-nvidia xorg-x11-drv-nvidia-cuda",
        ]
    elif distro.id == "amzn":
        pm = distro.family
        rel = "2023" if pm == "dnf" else "2"
        lines = [
            f"sudo {pm} install -y kernel-devel-$(uname -r) kernel-headers-$(uname -r) kernel-modules-extra",
            f"sudo {_add_repo(pm)} https://developer.download.nvidia.com/compute/cuda/repos/"
            f"amzn{rel}/$(uname -m)/cuda-amzn{rel}.repo",
            f"sudo {pm} module install -y nvidia-driver:latest-dkms" if pm == "dnf"
            else "sudo yum install -y nvidia-driver-latest-dkms",
        ]
    elif distro.family in ("dnf", "yum"):
        rhel = str(major or 9)
        pm = distro.family
        lines = [
            f"sudo {_add_repo(pm)} https://developer.download.nvidia.com/compute/cuda/repos/"
            f"rhel{rhel}/$(uname -m)/cuda-rhel{rhel}.repo",
            f"sudo {pm} module install -y nvidia-driver:latest-dkms" if pm == "dnf"
            else "sudo yum install -y nvidia-driver-latest-dkms",
        ]
    elif ids & {"opensuse-tumbleweed"}:
        lines = ["sudo zypper install -y nvidia-open-driver-G06-signed-kmp-default nvidia-compute-utils-G06"]
    else:
        lines = [
            "sudo zypper install -y nvidia-open-driver-G06-signed-kmp-default   # signed open kernel modules",
            "add NVIDIA's SUSE repository for nvidia-compute-utils-G06 (see the guide below)",
        ]
    lines += ["sudo reboot", f"NVIDIA's driver installation guide: {DRIVER_GUIDE}"]
    return tuple(lines)


# -- 2. Docker -----------------------------------------------------------------------------------------------


def docker_items(root: HostRoot, distro: Distro) -> list[PlanItem]:
    """Install Docker >= 19.03 the distro's way, and start it."""
    items: list[PlanItem] = []
    pm = distro.family
    if pm == "apt":
        items += [
            _cmd("refresh the package lists", "apt-get", "update"),
            _cmd("Docker from the distribution (docker.io is 20.10 or newer on every supported release)",
                 "apt-get", "install", "-y", "docker.io"),
        ]
    elif pm == "zypper":
        items.append(_cmd("Docker from the distribution", "zypper", "--non-interactive", "install", "docker"))
    elif distro.id == "fedora":
        items.append(_cmd("Docker (moby-engine) from Fedora", "dnf", "install", "-y", "moby-engine"))
    elif distro.id == "amzn":
        items.append(_cmd("Docker from Amazon Linux", pm, "install", "-y", "docker"))
    else:
        edit = _edit(root, DOCKER_CE_REPO, docker_ce_repo_text(distro))
        if edit is not None:
            items.append(edit)
        items.append(_cmd("Docker CE from Docker's repository", pm, "install", "-y",
                          "docker-ce", "docker-ce-cli", "containerd.io"))
    items.append(_cmd("start Docker now and at every boot", "systemctl", "enable", "--now", "docker"))
    return items


# -- 3. the NVIDIA Container Toolkit -------------------------------------------------------------------------


def stale_apt_lists(root: HostRoot) -> list[str]:
    """NVIDIA list files without ``signed-by``: next to ours they make ``apt-get update`` fail with
    ``Conflicting values set for option Signed-By``."""
    out: list[str] = []
    d = "/etc/apt/sources.list.d"
    for name in root.listdir(d):
        path = f"{d}/{name}"
        if path == APT_LIST or not name.endswith((".list", ".sources")):
            continue
        text = root.try_read_text(path) or ""
        if "nvidia.github.io" in text and "signed-by" not in text.lower():
            out.append(path)
    return out


def toolkit_items(root: HostRoot, distro: Distro) -> list[PlanItem]:
    """NVIDIA's repository (keyring-based) and the toolkit package, in the order they must happen."""
    items: list[PlanItem] = []
    pm = distro.family
    if pm == "apt":
        stale = stale_apt_lists(root)
        if stale:
            items.append(_cmd("remove old NVIDIA repository lists without signed-by (they break apt-get update)",
                              "rm", "-f", *stale))
        items += [
            _cmd("refresh the package lists", "apt-get", "update"),
            _cmd("what the key download needs", "apt-get", "install", "-y", "--no-install-recommends",
                 "ca-certificates", "curl", "gnupg"),
            _cmd("NVIDIA's repository key, dearmored into a keyring that only this repository trusts (no apt-key)",
                 "sh", "-c", f"curl -fsSL {NVIDIA_GPGKEY} | gpg --dearmor --yes -o {APT_KEYRING}"),
        ]
        edit = _edit(root, APT_LIST, APT_LIST_TEXT)
        if edit is not None:
            items.append(edit)
        items += [
            _cmd("read NVIDIA's repository", "apt-get", "update"),
            _cmd("the toolkit", "apt-get", "install", "-y", TOOLKIT_PACKAGE),
        ]
    elif pm == "zypper":
        edit = _edit(root, ZYPP_REPO, ZYPP_REPO_TEXT)
        if edit is not None:
            items.append(edit)
        items += [
            _cmd("read NVIDIA's repository and trust its key", "zypper", "--non-interactive",
                 "--gpg-auto-import-keys", "refresh", "nvidia-container-toolkit"),
            _cmd("the toolkit", "zypper", "--non-interactive", "--gpg-auto-import-keys", "install", TOOLKIT_PACKAGE),
        ]
    else:
        edit = _edit(root, YUM_REPO, YUM_REPO_TEXT)
        if edit is not None:
            items.append(edit)
        items.append(_cmd("the toolkit (the repository key is imported on first use)", pm, "install", "-y",
                          TOOLKIT_PACKAGE))
    return items
