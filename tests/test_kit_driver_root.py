"""install_driver_root lays the driver out as the real packages do, with a real ld.so.cache."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.kit import (
    GSP_FIRMWARE,
    KIT_BINARIES,
    KIT_LIBRARIES,
    DriverRootInfo,
    KitInstallError,
    KitSpec,
    install_driver_root,
    kit_majors,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need mknod (root)")


def _ld_cache(info: DriverRootInfo) -> dict[str, str]:
    """`ldconfig -p` of the root's cache: soname -> path (64-bit entries)."""
    out = subprocess.run(
        ["ldconfig", "-p", "-C", str(info.path("/etc/ld.so.cache"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries = re.findall(r"^\s+(\S+) \(libc6,x86-64\) => (\S+)$", out, re.M)
    return dict(entries)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> DriverRootInfo:
    return install_driver_root(tmp_path_factory.mktemp("full") / "root", KitSpec(), ipc_sockets=True)


def test_libraries_have_soname_links_to_versioned_files(full: DriverRootInfo) -> None:
    libdir = full.path("/usr/lib/x86_64-linux-gnu")
    assert os.readlink(libdir / "libnvidia-ml.so.1") == "libnvidia-ml.so.550.54.14"
    assert (libdir / "libnvidia-ml.so.550.54.14").is_file()
    assert os.readlink(libdir / "libcuda.so.1") == "libcuda.so.550.54.14"
    assert os.readlink(libdir / "vdpau/libvdpau_nvidia.so.1") == "libvdpau_nvidia.so.550.54.14"
    assert not (libdir / "libnvidia-glcore.so.550.54.14").is_symlink()
    assert set(full.libraries) == {"libnvidia-ml.so.1"} | {
        lib.soname_for("550.54.14") for lib in KIT_LIBRARIES
    }
    for soname, host_path in full.libraries.items():
        assert full.path(host_path).is_file(), soname
        assert host_path.endswith(".so.550.54.14")


def test_ld_so_cache_is_real_and_names_the_driver_libraries(full: DriverRootInfo) -> None:
    assert full.ld_so_cache == "/etc/ld.so.cache"
    cache = _ld_cache(full)
    assert cache["libnvidia-ml.so.1"] == "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert cache["libcuda.so.1"] == "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
    assert cache["libnvidia-tls.so.550.54.14"] == "/usr/lib/x86_64-linux-gnu/libnvidia-tls.so.550.54.14"
    assert "libvdpau_nvidia.so.1" not in cache  # vdpau/ is not a loader directory, as on real hosts
    assert "/usr/lib/x86_64-linux-gnu" in full.path("/etc/ld.so.conf").read_text().splitlines()


def test_device_nodes_use_the_kits_majors(full: DriverRootInfo) -> None:
    majors = kit_majors()
    expected = {
        "/dev/nvidiactl": (195, 255, 0o666),
        "/dev/nvidia-modeset": (195, 254, 0o666),
        "/dev/nvidia0": (195, 0, 0o666),
        "/dev/nvidia1": (195, 1, 0o666),
        "/dev/nvidia-uvm": (majors["nvidia-uvm"], 0, 0o666),
        "/dev/nvidia-uvm-tools": (majors["nvidia-uvm"], 1, 0o666),
        "/dev/nvidia-caps/nvidia-cap1": (majors["nvidia-caps"], 1, 0o400),
        "/dev/nvidia-caps/nvidia-cap2": (majors["nvidia-caps"], 2, 0o444),
    }
    assert full.device_nodes == {path: (major, minor) for path, (major, minor, _) in expected.items()}
    for host_path, (major, minor, mode) in expected.items():
        st = os.lstat(full.path(host_path))
        assert stat.S_ISCHR(st.st_mode), host_path
        assert (os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode)) == (major, minor, mode)
    assert majors["nvidia-frontend"] == 195 and majors["nvidia-uvm"] != majors["nvidia-caps"]


def test_binaries_firmware_and_persistenced_socket(full: DriverRootInfo) -> None:
    assert set(full.binaries) == set(KIT_BINARIES)
    for name, host_path in full.binaries.items():
        assert os.access(full.path(host_path), os.X_OK), name
    out = subprocess.run(
        [str(full.path("/usr/bin/nvidia-persistenced"))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == "nvidia-persistenced: gpudoctor test kit stand-in (driver 550.54.14)\n"
    assert full.firmware == tuple(f"/lib/firmware/nvidia/550.54.14/{name}" for name in GSP_FIRMWARE)
    assert all(full.path(p).is_file() for p in full.firmware)
    assert full.sockets == ("/run/nvidia-persistenced/socket",)
    assert stat.S_ISSOCK(os.lstat(full.path("/run/nvidia-persistenced/socket")).st_mode)
    assert full.env == {"GPUDOCTOR_FAKE_DEV_ROOT": str(full.root / "dev")}


def test_options_leave_parts_out(tmp_path: Path) -> None:
    spec = KitSpec()
    info = install_driver_root(
        tmp_path / "r",
        spec,
        binaries=False,
        firmware=False,
        uvm_nodes=False,
        caps_nodes=False,
        gpu_nodes=[1],
        ldconfig=False,
        node_mode=0o660,
    )
    assert info.binaries == {} and info.firmware == () and info.ld_so_cache is None
    assert sorted(info.device_nodes) == ["/dev/nvidia-modeset", "/dev/nvidia1", "/dev/nvidiactl"]
    assert stat.S_IMODE(os.stat(info.path("/dev/nvidiactl")).st_mode) == 0o660
    assert not info.path("/etc/ld.so.cache").exists() and not info.path("/usr/bin").exists()
    none = install_driver_root(tmp_path / "n", spec, device_nodes=False, ldconfig=False)
    assert none.device_nodes == {} and not none.path("/dev").exists()


def test_custom_libdir_is_added_to_an_existing_ld_so_conf(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc/ld.so.conf").write_text("# keep me\n/usr/local/lib\n")
    info = install_driver_root(root, KitSpec(), libdir="opt/nvidia/lib64", device_nodes=False)
    assert (root / "etc/ld.so.conf").read_text() == "# keep me\n/usr/local/lib\n/opt/nvidia/lib64\n"
    assert info.libdir == "/opt/nvidia/lib64"
    assert _ld_cache(info)["libnvidia-ml.so.1"] == "/opt/nvidia/lib64/libnvidia-ml.so.1"


def test_symlinks_in_the_root_are_followed_inside_it(tmp_path: Path) -> None:
    """A merged-/usr root whose lib link is absolute must not make the kit write to the real /usr/lib."""
    root = tmp_path / "r"
    (root / "usr/lib").mkdir(parents=True)
    os.symlink("/usr/lib", root / "lib")
    spec = KitSpec(driver_version="999.88.77")
    info = install_driver_root(root, spec, device_nodes=False, ldconfig=False)
    assert (root / "usr/lib/firmware/nvidia/999.88.77/gsp_ga10x.bin").is_file()
    assert (
        info.path("/lib/firmware/nvidia/999.88.77/gsp_ga10x.bin")
        == root / "usr/lib/firmware/nvidia/999.88.77/gsp_ga10x.bin"
    )
    assert not Path("/usr/lib/firmware/nvidia/999.88.77").exists()


def test_reinstalling_replaces_what_was_there(tmp_path: Path) -> None:
    root = tmp_path / "r"
    install_driver_root(root, KitSpec(), ldconfig=False)
    (root / "dev/nvidiactl").chmod(0o000)
    (root / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1").unlink()
    install_driver_root(root, KitSpec(), ldconfig=False)
    assert stat.S_IMODE(os.stat(root / "dev/nvidiactl").st_mode) == 0o666
    assert os.readlink(root / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1") == "libnvidia-ml.so.550.54.14"


def test_refuses_the_real_root() -> None:
    with pytest.raises(KitInstallError, match="real /"):
        install_driver_root(Path("/"), KitSpec())
