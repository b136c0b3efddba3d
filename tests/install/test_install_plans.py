"""Install plans per distribution family, as golden `gpudoctor install --dry-run` output from os-release fixtures."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.commands.install import main as install_main
from gpudoctor.host.root import HostRoot
from gpudoctor.install.distro import UnsupportedDistro, detect_distro

OS_RELEASE = Path(__file__).parent / "os-release"
GOLDEN = Path(__file__).parent / "golden"
DISTROS = {
    # fixture: (family, os-release ID)
    "ubuntu-22.04": ("apt", "ubuntu"),
    "debian-12": ("apt", "debian"),
    "rhel-9": ("dnf", "rhel"),
    "rocky-9": ("dnf", "rocky"),
    "fedora-40": ("dnf", "fedora"),
    "amzn-2023": ("dnf", "amzn"),
    "amzn-2": ("yum", "amzn"),
    "opensuse-leap-15.5": ("zypper", "opensuse"),  # distro normalises opensuse-leap
    "sles-15": ("zypper", "sles"),
}


def _root(tmp_path: Path, fixture: str, extra: dict[str, str] | None = None) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(OS_RELEASE / fixture, root / "etc/os-release")
    for host_path, text in (extra or {}).items():
        target = root / host_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def _dry_run(root: Path, *args: str) -> str:
    """`gpudoctor install --dry-run --root ROOT ARGS` in this process (the CLI's own main), its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = install_main(["--dry-run", "--root", str(root), *args])
    assert code == 0, out.getvalue()
    return out.getvalue()


def _golden(name: str, text: str, root: Path) -> None:
    from tests.fixes.helpers import UPDATE, normalize

    text = normalize(text, root)
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; run with GPUDOCTOR_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"output differs from {path} (GPUDOCTOR_UPDATE_GOLDEN=1)"


@pytest.mark.parametrize("fixture", sorted(DISTROS))
def test_distro_detection(tmp_path: Path, fixture: str) -> None:
    distro = detect_distro(HostRoot(str(_root(tmp_path, fixture))))
    assert (distro.family, distro.id) == DISTROS[fixture]


@pytest.mark.parametrize("fixture", sorted(DISTROS))
def test_golden_dry_run_nvidia_route(tmp_path: Path, fixture: str) -> None:
    root = _root(tmp_path, fixture)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = _dry_run(root)
    _golden(f"{fixture}.txt", out, root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # a dry run writes nothing
    commands = [ln for ln in out.splitlines() if ln.lstrip().startswith("$ ")]
    assert not [c for c in commands if "apt-key" in c]  # today's keyring set-up, never the deprecated apt-key


def test_golden_dry_run_gpudoctor_route(tmp_path: Path) -> None:
    root = _root(tmp_path, "ubuntu-22.04")
    _golden("ubuntu-22.04-route-gpudoctor.txt", _dry_run(root, "--route", "gpudoctor"), root)


def test_apt_removes_stale_nvidia_lists_first(tmp_path: Path) -> None:
    stale = "deb https://nvidia.github.io/libnvidia-container/stable/ubuntu18.04/$(ARCH) /\n"
    root = _root(tmp_path, "ubuntu-22.04", {"/etc/apt/sources.list.d/nvidia-docker.list": stale})
    out = _dry_run(root)
    toolkit = out[out.index("[3/6] toolkit"):out.index("[4/6]")]
    assert toolkit.index("$ rm -f /etc/apt/sources.list.d/nvidia-docker.list") < toolkit.index("$ apt-get update")


def test_keyring_comes_before_the_list_that_uses_it(tmp_path: Path) -> None:
    out = _dry_run(_root(tmp_path, "debian-12"))
    toolkit = out[out.index("[3/6] toolkit"):out.index("[4/6]")]
    assert toolkit.index("gpg --dearmor") < toolkit.index("signed-by=/usr/share/keyrings/nvidia-container-toolkit")
    assert toolkit.index("signed-by=") < toolkit.index("$ apt-get install -y nvidia-container-toolkit")


def test_unsupported_distro_is_a_clear_error(tmp_path: Path) -> None:
    root = _root(tmp_path, "arch")
    with pytest.raises(UnsupportedDistro, match="Arch Linux .ID=arch. has no install recipe"):
        detect_distro(HostRoot(str(root)))
    res = subprocess.run([sys.executable, "-m", "gpudoctor", "install", "--dry-run", "--root", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3
    assert "has no install recipe" in res.stderr and "Traceback" not in res.stderr


def test_no_os_release_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(UnsupportedDistro, match="no /etc/os-release"):
        detect_distro(HostRoot(str(tmp_path)))
