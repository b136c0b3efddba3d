"""device-nodes (mknod under the root), load-modules (live only), nouveau-blacklist (guided)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpudoctor.fixes.base import FixError
from gpudoctor.fixes.device_nodes import DeviceNodesFix
from gpudoctor.fixes.load_modules import LoadModulesFix
from gpudoctor.fixes.nouveau_blacklist import BLACKLIST_FILE, NouveauBlacklistFix
from gpudoctor.fixes.render import render_plan
from tests.fixes.helpers import STUB, assert_golden, ctx_for, normalize, write_files

PROC_DEVICES = (
    "Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n195 nvidia-frontend\n234 nvidia-uvm\n235 nvidia-caps\n\n"
    "Block devices:\n  8 sd\n"
)
MODULES = (
    "nvidia_uvm 1540096 0 - Live 0x0000000000000000 (POE)\n"
    "nvidia_modeset 1568768 0 - Live 0x0000000000000000 (POE)\n"
    "nvidia 56799232 2 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (POE)\n"
)


def _gpu(minor: int, bus: str) -> dict[str, str]:
    return {
        f"/proc/driver/nvidia/gpus/{bus}/information": (
            "Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t 0\nGPU UUID: \t GPU-0000\nVideo BIOS: \t ??.??.??.??.??\n"
            f"Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\n"
            f"Device Minor: \t {minor}\nGPU Excluded:\t No\n"
        )
    }


def _driver_root(tmp_path: Path, *, params: str = "") -> Path:
    return write_files(tmp_path / "root", {
        "/proc/devices": PROC_DEVICES,
        "/proc/modules": MODULES,
        "/proc/driver/nvidia/params": params,
        **_gpu(0, "0000:3b:00.0"),
        **_gpu(1, "0000:86:00.0"),
    })


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


@needs_root
def test_device_nodes_golden_then_idempotent(tmp_path: Path) -> None:
    root = _driver_root(tmp_path, params="DeviceFileUID: 0\nDeviceFileGID: 44\nDeviceFileMode: 432\n")
    (root / "dev").mkdir()
    os.mknod(root / "dev/nvidia0", stat.S_IFCHR | 0o660, os.makedev(195, 0))  # one is there already
    os.chown(root / "dev/nvidia0", 0, 44)
    os.chmod(root / "dev/nvidia0", 0o660)  # mknod's mode went through the umask
    fix = DeviceNodesFix()
    plan = fix.plan(ctx_for(root))
    assert_golden("device-nodes/two-gpus.txt", normalize(render_plan(plan, fix, live=False), root))
    result = fix.apply(ctx_for(root), plan)
    assert result.ok, result.error
    for name, dev in (("nvidiactl", (195, 255)), ("nvidia1", (195, 1)), ("nvidia-modeset", (195, 254)),
                      ("nvidia-uvm", (234, 0)), ("nvidia-uvm-tools", (234, 1))):
        st = os.lstat(root / "dev" / name)
        assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == dev
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 44
        assert os.readlink(root / f"dev/char/{dev[0]}:{dev[1]}") == f"../{name}"
    assert fix.plan(ctx_for(root)).empty


@needs_root
def test_device_nodes_fixes_a_wrong_mode(tmp_path: Path) -> None:
    root = _driver_root(tmp_path)
    (root / "dev").mkdir()
    os.mknod(root / "dev/nvidiactl", stat.S_IFCHR | 0o600, os.makedev(195, 255))
    fix = DeviceNodesFix()
    assert fix.apply(ctx_for(root), fix.plan(ctx_for(root))).ok
    assert stat.S_IMODE(os.lstat(root / "dev/nvidiactl").st_mode) == 0o666


def test_device_nodes_refuses_a_node_with_the_wrong_number(tmp_path: Path) -> None:
    root = _driver_root(tmp_path)
    (root / "dev").mkdir()
    (root / "dev/nvidiactl").write_text("not a device")
    with pytest.raises(FixError, match="/dev/nvidiactl exists but is not a character device"):
        DeviceNodesFix().plan(ctx_for(root))


def test_device_nodes_needs_the_driver_loaded(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"/proc/devices": "Character devices:\n  1 mem\n"})
    with pytest.raises(FixError, match="nvidia kernel module is not loaded"):
        DeviceNodesFix().plan(ctx_for(root))


def test_load_modules_plans_modprobe_and_skips_it_under_root(tmp_path: Path) -> None:
    release = "6.1.0-18-amd64"
    root = write_files(tmp_path / "root", {
        "/proc/modules": "nvidia_modeset 1568768 0 - Live 0x0 (POE)\n",
        "/proc/sys/kernel/osrelease": release + "\n",
        f"/lib/modules/{release}/modules.dep": (
            "updates/dkms/nvidia.ko.xz:\nupdates/dkms/nvidia-uvm.ko.xz: updates/dkms/nvidia.ko.xz\n"
            "updates/dkms/nvidia-modeset.ko.xz: updates/dkms/nvidia.ko.xz\n"
        ),
    })
    fix = LoadModulesFix()
    plan = fix.plan(ctx_for(root))
    assert [c.argv for c in plan.commands] == [("modprobe", "nvidia"), ("modprobe", "nvidia_uvm")]
    assert all(c.live for c in plan.commands)
    result = fix.apply(ctx_for(root), plan)
    assert result.ok and result.commands_run == []
    assert len(result.skipped) == 2 and "live action" in result.skipped[0]


def test_load_modules_refuses_while_nouveau_holds_the_gpu(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"/proc/modules": "nouveau 2355200 0 - Live 0x0\n"})
    with pytest.raises(FixError, match="nouveau-blacklist"):
        LoadModulesFix().plan(ctx_for(root))


def test_load_modules_nothing_to_do_when_loaded(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {"/proc/modules": MODULES + "nvidia_drm 0 0 - Live 0x0\n"})
    assert LoadModulesFix().plan(ctx_for(root)).empty


NOUVEAU_ROOT = {"/proc/modules": "nouveau 2355200 0 - Live 0x0\n", "/usr/sbin/update-initramfs": STUB}


def test_nouveau_blacklist_is_guided_and_never_runs_silently(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", NOUVEAU_ROOT)
    fix = NouveauBlacklistFix()
    plan = fix.plan(ctx_for(root))
    assert plan.guided and plan.reboot_required
    assert_golden("nouveau-blacklist/debian.txt", normalize(render_plan(plan, fix, live=False), root))
    # --yes alone (no one to confirm) changes nothing.
    result = fix.apply(ctx_for(root, assume_yes=True), plan)
    assert not result.ok and "guided fix" in (result.error or "")
    assert not (root / BLACKLIST_FILE.lstrip("/")).exists()


def test_nouveau_blacklist_asks_for_every_step(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", NOUVEAU_ROOT)
    questions: list[str] = []

    def confirm(question: str) -> bool:
        questions.append(question)
        return True

    fix = NouveauBlacklistFix()
    result = fix.apply(ctx_for(root, confirm=confirm), fix.plan(ctx_for(root)))
    assert result.ok and result.reboot_required
    assert questions == [f"Write {BLACKLIST_FILE}?"]  # the initramfs command is live: skipped under --root
    assert "blacklist nouveau\noptions nouveau modeset=0\n" in (root / BLACKLIST_FILE.lstrip("/")).read_text()
    # Rerun: the blacklist is there, nouveau is still loaded (no reboot yet): only the initramfs step remains.
    again = fix.plan(ctx_for(root))
    assert not again.edits and [c.argv for c in again.commands] == [("update-initramfs", "-u")]
    # After the reboot nouveau is gone: nothing left to do.
    (root / "proc/modules").write_text("nvidia 56799232 0 - Live 0x0 (POE)\n")
    assert fix.plan(ctx_for(root)).empty


def test_nouveau_blacklist_a_no_leaves_the_file_alone(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", NOUVEAU_ROOT)
    fix = NouveauBlacklistFix()
    result = fix.apply(ctx_for(root, confirm=lambda q: False), fix.plan(ctx_for(root)))
    assert result.ok and result.changed == [] and result.skipped
    assert not (root / BLACKLIST_FILE.lstrip("/")).exists()


@pytest.mark.parametrize(("tool", "argv"), [("dracut", ("dracut", "--force")), ("mkinitcpio", ("mkinitcpio", "-P"))])
def test_nouveau_blacklist_uses_this_distros_initramfs_tool(tmp_path: Path, tool: str, argv: tuple[str, ...]) -> None:
    root = write_files(tmp_path / "root", {"/proc/modules": "nouveau 1 0 - Live 0x0\n", f"/usr/bin/{tool}": STUB})
    assert [c.argv for c in NouveauBlacklistFix().plan(ctx_for(root)).commands] == [argv]
