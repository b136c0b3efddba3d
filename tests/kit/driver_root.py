"""Laying a simulated driver out in a root directory, the way the real driver packages install it.

Every write goes through gpudoctor's HostRoot resolution, so a symlink already in the root (``lib ->
usr/lib``, or a hostile absolute link) is followed inside the root and never out of it.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gpudoctor.host.root import HostRoot
from tests.kit.build import build_kit
from tests.kit.spec import (
    GSP_FIRMWARE,
    KIT_BINARIES,
    KIT_LIBRARIES,
    NVIDIA_MAJOR,
    NVIDIA_MODESET_MINOR,
    NVIDIACTL_MINOR,
    KitSpec,
    kit_majors,
)

FAKE_DEV_ROOT_ENV = "GPUDOCTOR_FAKE_DEV_ROOT"


class KitInstallError(RuntimeError):
    """The driver root could not be assembled (mknod without root, ldconfig failed, ...)."""


@dataclass(frozen=True, kw_only=True)
class DriverRootInfo:
    """What install_driver_root() put where. Paths are host paths as seen inside the root (``/usr/bin/...``).

    `libraries` maps every soname (NVML included) to the real file it names; `device_nodes` maps node paths
    to (major, minor); `ld_so_cache` is None when ldconfig was not run.
    """

    root: Path
    spec: KitSpec
    libdir: str
    libraries: dict[str, str]
    binaries: dict[str, str]
    firmware: tuple[str, ...]
    device_nodes: dict[str, tuple[int, int]]
    sockets: tuple[str, ...]
    ld_so_cache: str | None

    def path(self, host_path: str) -> Path:
        """The real path of a host path inside this root."""
        return HostRoot(self.root).path(host_path)

    @property
    def dev_root(self) -> Path:
        return self.path("/dev")

    @property
    def env(self) -> dict[str, str]:
        """The environment that points the fake NVML at this root's /dev (merge it into os.environ)."""
        return {FAKE_DEV_ROOT_ENV: str(self.dev_root)}


def _target(hr: HostRoot, host_path: str) -> Path:
    """Where to create `host_path`: parents resolved inside the root and created, the leaf not followed."""
    parent = host_path.rsplit("/", 1)[0] or "/"
    hr.path(parent).mkdir(parents=True, exist_ok=True)
    target = hr.path(host_path, follow=False)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    return target


def _copy(hr: HostRoot, source: Path, host_path: str, mode: int) -> None:
    target = _target(hr, host_path)
    shutil.copyfile(source, target)
    os.chmod(target, mode)


def _symlink(hr: HostRoot, link_host_path: str, target_name: str) -> None:
    os.symlink(target_name, _target(hr, link_host_path))


def _mknod(hr: HostRoot, host_path: str, major: int, minor: int, mode: int) -> None:
    target = _target(hr, host_path)
    try:
        os.mknod(target, stat.S_IFCHR | mode, os.makedev(major, minor))
    except PermissionError as exc:
        raise KitInstallError(f"mknod {target} needs root (CAP_MKNOD): {exc}") from exc
    os.chmod(target, mode)  # mknod's mode is filtered by the umask


def _bind_socket(hr: HostRoot, host_path: str) -> None:
    """Leave a real AF_UNIX socket file at host_path, as a running daemon would."""
    target = _target(hr, host_path)
    # sun_path holds 108 bytes; reaching the directory through /proc/self/fd keeps deep roots working.
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(f"/proc/self/fd/{dir_fd}/{target.name}")
    finally:
        os.close(dir_fd)


def _ensure_ld_so_conf(hr: HostRoot, libdir: str) -> None:
    conf = hr.path("/etc/ld.so.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    lines = conf.read_text().splitlines() if conf.exists() else ["include /etc/ld.so.conf.d/*.conf"]
    if libdir not in (line.strip() for line in lines):
        lines.append(libdir)
    conf.write_text("\n".join(lines) + "\n")


def _run_ldconfig(root: Path) -> None:
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        raise KitInstallError("ldconfig was not found; it builds the driver root's /etc/ld.so.cache")
    proc = subprocess.run([ldconfig, "-r", str(root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KitInstallError(f"ldconfig -r {root} failed ({proc.returncode}): {proc.stderr.strip()}")


def _glibc_files(executable: Path) -> list[str]:
    """The loader and libraries that `executable` needs, as ldd names them (absolute host paths)."""
    proc = subprocess.run(["ldd", str(executable)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KitInstallError(f"ldd {executable} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    paths = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if (
            "=>" in words
            and len(words) > words.index("=>") + 1
            and words[words.index("=>") + 1].startswith("/")
        ):
            paths.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            paths.append(words[0])
    return paths


def install_host_glibc(root: Path) -> list[str]:
    """Copy this machine's dynamic loader and libc into `root`, at the paths the kit's binaries expect.

    With them, ``chroot root /usr/bin/nvidia-smi`` runs the way it runs in a minimal image: the loader in
    the root resolves libnvidia-ml.so.1 through the root's own ld.so.cache. Returns the host paths written.
    Re-runs ldconfig when the root has an /etc/ld.so.conf, so the cache lists libc as a real one would.
    """
    root = Path(os.path.abspath(root))
    if root == Path("/"):
        raise KitInstallError("refusing to install into the real /")
    hr = HostRoot(root)
    written = []
    for host_path in _glibc_files(build_kit(KitSpec()).nvidia_smi):
        _copy(hr, Path(os.path.realpath(host_path)), host_path, 0o755)
        written.append(host_path)
    if hr.path("/etc/ld.so.conf").exists():
        _run_ldconfig(root)
    return written


def install_driver_root(
    root: Path,
    spec: KitSpec,
    *,
    libdir: str = "usr/lib/x86_64-linux-gnu",
    binaries: bool = True,
    firmware: bool = True,
    device_nodes: bool = True,
    uvm_nodes: bool = True,
    caps_nodes: bool = True,
    gpu_nodes: Iterable[int] | None = None,
    node_mode: int = 0o666,
    ldconfig: bool = True,
    ipc_sockets: bool = False,
) -> DriverRootInfo:
    """Install the kit for `spec` under `root` (created if needed); returns what went where.

    - libraries in `libdir` (relative to root) with their soname links, NVML as libnvidia-ml.so.<VER>;
    - with `binaries`, /usr/bin/nvidia-smi and the other driver binaries;
    - with `firmware`, /lib/firmware/nvidia/<VER>/gsp_*.bin;
    - with `device_nodes`, /dev/nvidiactl, /dev/nvidia-modeset and /dev/nvidia<minor> for the GPUs whose
      minors are in `gpu_nodes` (all GPUs when None), mode `node_mode`; with `uvm_nodes` also
      /dev/nvidia-uvm{,-tools}, with `caps_nodes` /dev/nvidia-caps/nvidia-cap{1,2} (0400/0444, as
      nvidia-modprobe makes them). Majors are kit_majors(); mknod needs root;
    - with `ipc_sockets`, a real AF_UNIX socket at /run/nvidia-persistenced/socket;
    - with `ldconfig`, `libdir` is added to /etc/ld.so.conf and ``ldconfig -r root`` writes /etc/ld.so.cache.
    """
    root = Path(os.path.abspath(root))
    if root == Path("/"):
        raise KitInstallError("refusing to install the simulated driver into the real /")
    root.mkdir(parents=True, exist_ok=True)
    hr = HostRoot(root)
    kit = build_kit(spec)
    version = spec.driver_version
    libdir_host = "/" + libdir.strip("/")

    libraries: dict[str, str] = {}
    nvml_file = f"{libdir_host}/libnvidia-ml.so.{version}"
    _copy(hr, kit.libnvml, nvml_file, 0o644)
    _symlink(hr, f"{libdir_host}/libnvidia-ml.so.1", f"libnvidia-ml.so.{version}")
    libraries["libnvidia-ml.so.1"] = nvml_file
    for lib in KIT_LIBRARIES:
        soname, filename = lib.soname_for(version), lib.filename_for(version)
        directory = f"{libdir_host}/{lib.subdir}" if lib.subdir else libdir_host
        _copy(hr, kit.stub_libs[soname], f"{directory}/{filename}", 0o644)
        if soname != filename:
            _symlink(hr, f"{directory}/{soname}", filename)
        libraries[soname] = f"{directory}/{filename}"

    installed_binaries: dict[str, str] = {}
    if binaries:
        for name in KIT_BINARIES:
            _copy(hr, kit.binaries[name], f"/usr/bin/{name}", 0o755)
            installed_binaries[name] = f"/usr/bin/{name}"

    firmware_files: list[str] = []
    if firmware:
        for name in GSP_FIRMWARE:
            host_path = f"/lib/firmware/nvidia/{version}/{name}"
            _target(hr, host_path).write_bytes(
                f"gpudoctor test kit stand-in for {name} (driver {version})\n".encode()
            )
            firmware_files.append(host_path)

    nodes: dict[str, tuple[int, int]] = {}
    if device_nodes:
        majors = kit_majors()
        wanted = {g.minor for g in spec.gpus} if gpu_nodes is None else set(gpu_nodes)
        plan: list[tuple[str, int, int, int]] = [
            ("/dev/nvidiactl", NVIDIA_MAJOR, NVIDIACTL_MINOR, node_mode),
            ("/dev/nvidia-modeset", NVIDIA_MAJOR, NVIDIA_MODESET_MINOR, node_mode),
        ]
        plan += [(f"/dev/nvidia{minor}", NVIDIA_MAJOR, minor, node_mode) for minor in sorted(wanted)]
        if uvm_nodes:
            plan += [
                ("/dev/nvidia-uvm", majors["nvidia-uvm"], 0, node_mode),
                ("/dev/nvidia-uvm-tools", majors["nvidia-uvm"], 1, node_mode),
            ]
        if caps_nodes:
            plan += [
                ("/dev/nvidia-caps/nvidia-cap1", majors["nvidia-caps"], 1, 0o400),
                ("/dev/nvidia-caps/nvidia-cap2", majors["nvidia-caps"], 2, 0o444),
            ]
        for host_path, major, minor, mode in plan:
            _mknod(hr, host_path, major, minor, mode)
            nodes[host_path] = (major, minor)

    sockets: list[str] = []
    if ipc_sockets:
        _bind_socket(hr, "/run/nvidia-persistenced/socket")
        sockets.append("/run/nvidia-persistenced/socket")

    cache: str | None = None
    if ldconfig:
        _ensure_ld_so_conf(hr, libdir_host)
        _run_ldconfig(root)
        cache = "/etc/ld.so.cache"

    return DriverRootInfo(
        root=root,
        spec=spec,
        libdir=libdir_host,
        libraries=libraries,
        binaries=installed_binaries,
        firmware=tuple(firmware_files),
        device_nodes=nodes,
        sockets=tuple(sockets),
        ld_so_cache=cache,
    )
