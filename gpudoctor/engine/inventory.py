"""Discovery: what the host's NVIDIA driver consists of, read from a driver root and a dev root.

``discover(driver_root, dev_root)`` returns an Inventory:

- device nodes from ``<dev_root>/dev``: ``nvidia<N>`` per GPU, ``nvidiactl``, ``nvidia-modeset``,
  ``nvidia-uvm``, ``nvidia-uvm-tools`` (and ``nvidia-caps/*``, listed but never attached: they are for
  MIG). A node must be a real character device (a symlink is refused, never followed) whose major is the
  one ``/proc/devices`` gives for its driver. WSL2's ``/dev/dxg`` replaces them all.
- GPUs from ``<dev_root>/proc/driver/nvidia/gpus/*/information`` (UUID, minor, bus id), numbered in PCI
  bus order as NVML does; without those files, from the ``nvidia<N>`` nodes alone (no UUIDs then).
- driver libraries from ``<driver_root>/etc/ld.so.cache`` (parsed directly, never ``ldconfig -p``), with the
  usual lib dirs as fallback, grouped by capability as libnvidia-container does. Only files whose name
  ends in the driver version are taken, so a stale library of another driver is never mounted.
- binaries, GSP firmware, IPC sockets and the vendor JSON/ICD files, all under the driver root.

``/proc`` and ``/dev`` are read under the dev root (the host's own view), everything else under the driver
root (which may be a driver container's root). Symlinks inside either root are resolved inside it.
Problems that do not stop discovery (a node with the wrong major, an excluded GPU) become `warnings`.

Inventory round-trips through plain JSON (`to_dict`/`from_dict`) for the runtime shim's cache.
"""

from __future__ import annotations

import os
import stat

from gpudoctor.engine.edits import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gpudoctor.host.root import HostRoot

SCHEMA = "gpudoctor.inventory/1"

NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
MODESET_MINOR = 254

# Libraries by capability (libnvidia-container src/nvc_info.c). A name matches a cache key equal to it or
# starting with it plus "." (libcuda.so matches libcuda.so.1).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "utility": ("libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"),
    "compute": (
        "libcuda.so", "libcudadebugger.so", "libnvidia-opencl.so", "libnvidia-gpucomp.so",
        "libnvidia-ptxjitcompiler.so", "libnvidia-fatbinaryloader.so", "libnvidia-allocator.so",
        "libnvidia-compiler.so", "libnvidia-pkcs11.so", "libnvidia-pkcs11-openssl3.so", "libnvidia-nvvm.so",
        "libnvidia-tileiras.so",
    ),
    "video": ("libvdpau_nvidia.so", "libnvidia-encode.so", "libnvidia-opticalflow.so", "libnvcuvid.so"),
    "graphics": (
        "libnvidia-eglcore.so", "libnvidia-glcore.so", "libnvidia-tls.so", "libnvidia-glsi.so",
        "libnvidia-fbc.so", "libnvidia-ifr.so", "libnvidia-rtcore.so", "libnvoptix.so", "libGLX_nvidia.so",
        "libEGL_nvidia.so", "libGLESv2_nvidia.so", "libGLESv1_CM_nvidia.so", "libnvidia-glvkspirv.so",
        "libnvidia-cbl.so",
    ),
    "ngx": ("libnvidia-ngx.so",),
}  # fmt: skip

BINARIES: dict[str, str] = {
    "nvidia-smi": "utility",
    "nvidia-debugdump": "utility",
    "nvidia-persistenced": "utility",
    "nvidia-cuda-mps-control": "compute",
    "nvidia-cuda-mps-server": "compute",
}
BIN_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin")
LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu/nvidia/current", "/lib/x86_64-linux-gnu",
    "/usr/lib64", "/lib64", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib",
)  # fmt: skip
LIB32_DIRS = ("/usr/lib/i386-linux-gnu", "/lib/i386-linux-gnu", "/usr/lib32", "/lib32")

# (host path under the driver root, capability, kind); kind "ipc" is a socket or the MPS pipe directory.
IPC_PATHS = (
    ("/run/nvidia-persistenced/socket", "utility"),
    ("/var/run/nvidia-persistenced/socket", "utility"),
    ("/run/nvidia-fabricmanager/socket", "utility"),
    ("/var/run/nvidia-fabricmanager/socket", "utility"),
    ("/tmp/nvidia-mps", "compute"),
)
CONFIG_FILES = (
    ("/etc/OpenCL/vendors/nvidia.icd", "compute"),
    ("/etc/vulkan/icd.d/nvidia_icd.json", "graphics"),
    ("/usr/share/vulkan/icd.d/nvidia_icd.json", "graphics"),
    ("/etc/vulkan/implicit_layer.d/nvidia_layers.json", "graphics"),
    ("/usr/share/vulkan/implicit_layer.d/nvidia_layers.json", "graphics"),
    ("/usr/share/glvnd/egl_vendor.d/10_nvidia.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/20_nvidia_xcb.json", "graphics"),
    ("/usr/share/egl/egl_external_platform.d/20_nvidia_xlib.json", "graphics"),
    ("/usr/share/nvidia/nvoptix.bin", "graphics"),
)
FIRMWARE_DIRS = ("/lib/firmware/nvidia", "/usr/lib/firmware/nvidia")
WSL_LIB_DIR = "/usr/lib/wsl/lib"

# ld.so.cache ABI names (gpudoctor.host.parsers.ldcache) of the native 64-bit and the compat32 libraries.
_NATIVE_ARCH = {"x86_64": "x86-64", "aarch64": "aarch64", "ppc64le": "ppc64"}
COMPAT32_ARCH = "i386"


class DiscoveryError(Exception):
    """The driver cannot be inventoried at all (e.g. the driver root does not exist)."""


class Node(_Record):
    """A device node on the host. `path` is where the container sees it, `host_path` the real file."""

    __slots__ = ("name", "path", "host_path", "major", "minor", "mode", "uid", "gid", "capability")

    def __init__(
        self,
        *,
        name: str,
        path: str,
        host_path: str,
        major: int,
        minor: int,
        mode: int,
        uid: int = 0,
        gid: int = 0,
        capability: str = "",
    ) -> None:
        self.name = name
        self.path = path
        self.host_path = host_path
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid
        # "" = attached with any capability; else only when that capability is requested.
        self.capability = capability


class Gpu(_Record):
    """One GPU: `index` as NVML numbers it on the host, `node` its /dev/nvidia<minor>."""

    __slots__ = ("index", "minor", "uuid", "name", "pci_bus_id", "node")

    def __init__(
        self,
        *,
        index: int,
        minor: int,
        uuid: str | None,
        name: str | None,
        pci_bus_id: str | None,
        node: Node,
    ) -> None:
        self.index = index
        self.minor = minor
        self.uuid = uuid
        self.name = name
        self.pci_bus_id = pci_bus_id
        self.node = node


class DriverFile(_Record):
    """A host file (or socket, or directory) that is bind-mounted into containers.

    `kind` is library | binary | firmware | ipc | config. `capability` "" means always. For libraries,
    `soname` is the name the dynamic linker looks up and `arch` the ld.so.cache ABI (``i386`` for compat32).
    """

    __slots__ = ("kind", "host_path", "container_path", "capability", "soname", "arch")

    def __init__(
        self,
        *,
        kind: str,
        host_path: str,
        container_path: str,
        capability: str = "",
        soname: str | None = None,
        arch: str = "",
    ) -> None:
        self.kind = kind
        self.host_path = host_path
        self.container_path = container_path
        self.capability = capability
        self.soname = soname
        self.arch = arch


class Inventory(_Record):
    """The driver as discovered. Immutable by convention; serialisable with to_dict/from_dict."""

    __slots__ = ("driver_root", "dev_root", "driver_version", "gpus", "nodes", "files", "warnings", "wsl")

    def __init__(
        self,
        *,
        driver_root: str,
        dev_root: str,
        driver_version: str | None,
        gpus: tuple[Gpu, ...] = (),
        nodes: tuple[Node, ...] = (),
        files: tuple[DriverFile, ...] = (),
        warnings: tuple[str, ...] = (),
        wsl: bool = False,
    ) -> None:
        self.driver_root = driver_root
        self.dev_root = dev_root
        self.driver_version = driver_version
        self.gpus = tuple(gpus)
        self.nodes = tuple(nodes)
        self.files = tuple(files)
        self.warnings = tuple(warnings)
        self.wsl = wsl

    def node(self, name: str) -> Node | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def files_of(self, kind: str) -> tuple[DriverFile, ...]:
        return tuple(f for f in self.files if f.kind == kind)

    # -- JSON -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        def rec(obj: _Record) -> dict[str, Any]:
            return {name: getattr(obj, name) for name in obj.__slots__}

        return {
            "schema": SCHEMA,
            "driver_root": self.driver_root,
            "dev_root": self.dev_root,
            "driver_version": self.driver_version,
            "gpus": [{**rec(g), "node": rec(g.node)} for g in self.gpus],
            "nodes": [rec(n) for n in self.nodes],
            "files": [rec(f) for f in self.files],
            "warnings": list(self.warnings),
            "wsl": self.wsl,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inventory:
        """Rebuild from to_dict() output. Raises ValueError/TypeError/KeyError on anything else."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError("not a gpudoctor inventory")
        return cls(
            driver_root=str(data["driver_root"]),
            dev_root=str(data["dev_root"]),
            driver_version=data["driver_version"],
            gpus=tuple(Gpu(**{**g, "node": Node(**g["node"])}) for g in data["gpus"]),
            nodes=tuple(Node(**n) for n in data["nodes"]),
            files=tuple(DriverFile(**f) for f in data["files"]),
            warnings=tuple(str(w) for w in data["warnings"]),
            wsl=bool(data["wsl"]),
        )


# ------------------------------------------------------------------------------------------------- discover


def native_arch() -> str:
    """The ld.so.cache ABI name of this machine's native libraries (``x86-64`` on x86_64)."""
    machine = os.uname().machine
    return _NATIVE_ARCH.get(machine, machine)


def discover(driver_root: str = "/", dev_root: str | None = None) -> Inventory:
    """Inventory the driver under `driver_root`, its device nodes and /proc under `dev_root` (default: same)."""
    from gpudoctor.host.root import HostRoot

    driver_root = os.path.abspath(driver_root)
    dev_root = os.path.abspath(dev_root if dev_root is not None else driver_root)
    for what, root in (("driver root", driver_root), ("dev root", dev_root)):
        if not os.path.isdir(root):
            raise DiscoveryError(f"the {what} {root} is not a directory")
    drv = HostRoot(driver_root)
    dev = HostRoot(dev_root)
    warnings: list[str] = []
    version = _driver_version(dev, warnings)

    dxg = _char_node(dev, "/dev/dxg", warnings, name="dxg", expected_major=None, capability="gpu")
    if dxg is not None and not dev.exists("/dev/nvidiactl"):
        return Inventory(
            driver_root=driver_root, dev_root=dev_root, driver_version=version, nodes=(dxg,),
            files=tuple(_wsl_files(drv)), warnings=tuple(warnings), wsl=True,
        )  # fmt: skip

    majors = _majors(dev, warnings)
    nodes, caps_nodes = _control_nodes(dev, majors, warnings)
    gpus = _gpus(dev, majors, warnings)
    if version is None:
        version = _infer_version(drv)
        if version is None:
            warnings.append(
                "the driver version is unknown (no /proc/driver/nvidia/version and no libcuda.so.<version> or "
                "libnvidia-ml.so.<version>); no driver libraries were selected"
            )
    files: list[DriverFile] = []
    if version is not None:
        files += _libraries(drv, version, warnings)
        files += _firmware(drv, version)
    files += _binaries(drv)
    files += _ipc(drv)
    files += _configs(drv)
    return Inventory(
        driver_root=driver_root,
        dev_root=dev_root,
        driver_version=version,
        gpus=tuple(gpus),
        nodes=tuple(nodes + caps_nodes),
        files=tuple(files),
        warnings=tuple(warnings),
    )


def _real(hr: HostRoot, host_path: str) -> str:
    """`host_path` with every symlink resolved inside the root, as a host path."""
    if hr.is_live_root:
        return os.path.realpath(host_path)
    return hr.resolve(host_path)


def _abs(hr: HostRoot, resolved: str) -> str:
    """The real filesystem path of an already resolved host path."""
    return resolved if hr.is_live_root else str(hr.root) + resolved


def _driver_version(dev: HostRoot, warnings: list[str]) -> str | None:
    from gpudoctor.host.errors import ParseError
    from gpudoctor.host.parsers.nvproc import parse_driver_version

    text = dev.try_read_text("/proc/driver/nvidia/version")
    if text is None:
        return None
    try:
        return parse_driver_version(text).version
    except ParseError as exc:
        warnings.append(str(exc))
        return None


def _infer_version(drv: HostRoot) -> str | None:
    """The driver version from the name of libcuda.so.<ver> or libnvidia-ml.so.<ver> (as NVIDIA does)."""
    for stem in ("libcuda.so.", "libnvidia-ml.so."):
        for libdir in LIB_DIRS:
            for name in drv.listdir(libdir):
                suffix = name[len(stem) :]
                if name.startswith(stem) and suffix.count(".") >= 1 and suffix.replace(".", "").isdigit():
                    return suffix
    return None


def _majors(dev: HostRoot, warnings: list[str]) -> dict[str, int]:
    from gpudoctor.host.errors import ParseError
    from gpudoctor.host.parsers.procfs import parse_devices

    text = dev.try_read_text("/proc/devices")
    if text is None:
        warnings.append("/proc/devices is missing; device majors are taken from the nodes unchecked")
        return {}
    try:
        parsed = parse_devices(text)
    except ParseError as exc:
        warnings.append(str(exc))
        return {}
    out: dict[str, int] = {}
    for name in ("nvidia", "nvidia-uvm", "nvidia-caps"):
        major = parsed.char_major(name)
        if major is not None:
            out[name] = major
    if "nvidia" not in out:
        warnings.append("/proc/devices lists no nvidia driver: the kernel module is not loaded")
    return out


def _char_node(
    dev: HostRoot,
    path: str,
    warnings: list[str],
    *,
    name: str,
    expected_major: int | None,
    expected_minor: int | None = None,
    capability: str,
) -> Node | None:
    """The node at `path` if it is a real character device with the expected numbers; else None."""
    st = dev.lstat(path)
    if st is None:
        return None
    if not stat.S_ISCHR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a character device"
        warnings.append(
            f"{path} is {kind}; it is not attached (a device node must be a real character device)"
        )
        return None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if expected_major is not None and major != expected_major:
        warnings.append(
            f"{path} has major {major} but /proc/devices gives {expected_major}; the node is stale and is "
            "not attached (recreate it, e.g. with nvidia-modprobe)"
        )
        return None
    if expected_minor is not None and minor != expected_minor:
        warnings.append(f"{path} has minor {minor}, expected {expected_minor}; it is not attached")
        return None
    return Node(
        name=name,
        path=path,
        host_path=str(dev.path(path, follow=False)),
        major=major,
        minor=minor,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        capability=capability,
    )


def _control_nodes(
    dev: HostRoot, majors: dict[str, int], warnings: list[str]
) -> tuple[list[Node], list[Node]]:
    nv = majors.get("nvidia")
    uvm = majors.get("nvidia-uvm")
    nodes: list[Node] = []
    # LNC attaches nvidiactl always, the UVM nodes with compute and nvidia-modeset with display.
    for name, minor, major, cap in (
        ("nvidiactl", NVIDIACTL_MINOR, nv if nv is not None else NVIDIA_MAJOR, ""),
        ("nvidia-uvm", 0, uvm, "compute"),
        ("nvidia-uvm-tools", 1, uvm, "compute"),
        ("nvidia-modeset", MODESET_MINOR, nv if nv is not None else NVIDIA_MAJOR, "display"),
    ):
        node = _char_node(
            dev,
            f"/dev/{name}",
            warnings,
            name=name,
            expected_major=major,
            expected_minor=minor,
            capability=cap,
        )
        if node is not None:
            nodes.append(node)
    caps: list[Node] = []
    for entry in dev.listdir("/dev/nvidia-caps"):
        node = _char_node(
            dev, f"/dev/nvidia-caps/{entry}", warnings, name=f"nvidia-caps/{entry}",
            expected_major=majors.get("nvidia-caps"), capability="mig",
        )  # fmt: skip
        if node is not None:
            caps.append(node)
    return nodes, caps


def _gpus(dev: HostRoot, majors: dict[str, int], warnings: list[str]) -> list[Gpu]:
    from gpudoctor.host.errors import ParseError
    from gpudoctor.host.parsers.nvproc import parse_gpu_information

    major = majors.get("nvidia", NVIDIA_MAJOR)
    found: list[tuple[str | None, int, str | None, str | None]] = []  # (bus, minor, uuid, model)
    for bus in dev.listdir("/proc/driver/nvidia/gpus"):
        path = f"/proc/driver/nvidia/gpus/{bus}/information"
        text = dev.try_read_text(path)
        if text is None:
            continue
        try:
            info = parse_gpu_information(text, path=path)
        except ParseError as exc:
            warnings.append(str(exc))
            continue
        if info.gpu_excluded:
            warnings.append(f"GPU {bus} is excluded by the driver (GPU Excluded: Yes); it is not listed")
            continue
        if info.device_minor is None:
            warnings.append(f"{path} has no Device Minor; GPU {bus} is not listed")
            continue
        found.append((info.bus_location or bus, info.device_minor, info.uuid, info.model))
    if not found:
        # No /proc view (a driver container, a minimal test root): the nodes alone, in minor order.
        minors = sorted(
            int(name[6:]) for name in dev.listdir("/dev")
            if name.startswith("nvidia") and name[6:].isascii() and name[6:].isdigit() and len(name) <= 9
        )  # fmt: skip
        found = [(None, m, None, None) for m in minors]
    # NVML numbers GPUs in PCI bus order; bus ids sort correctly as lower-case text.
    found.sort(key=lambda item: ((item[0] or "").lower(), item[1]))
    gpus: list[Gpu] = []
    for bus_id, minor, uuid, model in found:
        node = _char_node(
            dev, f"/dev/nvidia{minor}", warnings, name=f"nvidia{minor}", expected_major=major,
            expected_minor=minor, capability="",
        )  # fmt: skip
        if node is None:
            warnings.append(f"GPU {uuid or minor} has no usable /dev/nvidia{minor}; it is not listed")
            continue
        gpus.append(Gpu(index=len(gpus), minor=minor, uuid=uuid, name=model, pci_bus_id=bus_id, node=node))
    return gpus


def _capability_of(key: str) -> str | None:
    for cap, names in LIBRARIES.items():
        for name in names:
            if key == name or key.startswith(name + "."):
                return cap
    return None


def _regular(hr: HostRoot, resolved: str) -> bool:
    st = hr.lstat(resolved) if not hr.is_live_root else _lstat(resolved)
    return st is not None and stat.S_ISREG(st.st_mode)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _libraries(drv: HostRoot, version: str, warnings: list[str]) -> list[DriverFile]:
    from gpudoctor.host.errors import ParseError
    from gpudoctor.host.parsers.ldcache import parse_ld_so_cache

    native = native_arch()
    suffix = ".so." + version
    out: dict[str, DriverFile] = {}  # by resolved host path
    data = drv.try_read_bytes("/etc/ld.so.cache", max_bytes=64 * 1024 * 1024)
    entries = []
    if data is None:
        warnings.append(
            "/etc/ld.so.cache is missing under the driver root; searching the library directories"
        )
    else:
        try:
            entries = parse_ld_so_cache(data)
        except ParseError as exc:
            warnings.append(f"{exc}; searching the library directories instead")
    for entry in entries:
        if entry.arch not in (native, COMPAT32_ARCH) or entry.hwcap_subdir is not None:
            continue
        cap = _capability_of(entry.key)
        if cap is None:
            continue
        _add_library(
            drv, out, entry.value, entry.key, cap, "" if entry.arch == native else COMPAT32_ARCH, suffix
        )
    # Fallback and complement: libraries the cache does not list (vdpau/ is not in ld.so.conf), found by
    # name in the directories that hold driver libraries.
    dirs = {f.container_path.rsplit("/", 1)[0]: f.arch for f in out.values()}
    for libdir in LIB_DIRS:
        dirs.setdefault(_real(drv, libdir), "")
    for libdir in LIB32_DIRS:
        dirs.setdefault(_real(drv, libdir), COMPAT32_ARCH)
    for libdir, arch in list(dirs.items()):
        for sub in (libdir, libdir + "/vdpau"):
            for name in drv.listdir(sub):
                if not name.endswith(suffix):
                    continue
                cap = _capability_of(name)
                if cap is not None:
                    _add_library(drv, out, f"{sub}/{name}", None, cap, arch, suffix)
    return sorted(out.values(), key=lambda f: f.container_path)


def _add_library(
    drv: HostRoot, out: dict[str, DriverFile], path: str, soname: str | None, cap: str, arch: str, suffix: str
) -> None:
    resolved = _real(drv, path)
    if not resolved.endswith(suffix) or not _regular(drv, resolved):
        return
    known = out.get(resolved)
    if known is not None:
        # Found by name first, then by soname in the cache: keep the soname (it drives the soname link).
        if known.soname is None and soname is not None and soname != resolved.rsplit("/", 1)[1]:
            known.soname = soname
        return
    name = resolved.rsplit("/", 1)[1]
    out[resolved] = DriverFile(
        kind="library",
        host_path=_abs(drv, resolved),
        container_path=resolved,
        capability=cap,
        soname=soname if soname and soname != name else None,
        arch=arch,
    )


def _binaries(drv: HostRoot) -> list[DriverFile]:
    out: dict[str, DriverFile] = {}
    for name, cap in BINARIES.items():
        for bindir in BIN_DIRS:
            resolved = _real(drv, f"{bindir}/{name}")
            if resolved in out or not _regular(drv, resolved):
                continue
            out[resolved] = DriverFile(
                kind="binary", host_path=_abs(drv, resolved), container_path=resolved, capability=cap
            )
            break
    return list(out.values())


def _firmware(drv: HostRoot, version: str) -> list[DriverFile]:
    out: dict[str, DriverFile] = {}
    for base in FIRMWARE_DIRS:
        directory = f"{base}/{version}"
        for name in drv.listdir(directory):
            if not (name.startswith("gsp") and name.endswith(".bin")):
                continue
            resolved = _real(drv, f"{directory}/{name}")
            if resolved not in out and _regular(drv, resolved):
                out[resolved] = DriverFile(
                    kind="firmware", host_path=_abs(drv, resolved), container_path=resolved
                )
    return list(out.values())


def _ipc(drv: HostRoot) -> list[DriverFile]:
    out: dict[str, DriverFile] = {}
    for path, cap in IPC_PATHS:
        resolved = _real(drv, path)
        st = drv.lstat(resolved) if not drv.is_live_root else _lstat(resolved)
        if st is None or resolved in out:
            continue
        wanted = stat.S_ISDIR(st.st_mode) if path == "/tmp/nvidia-mps" else stat.S_ISSOCK(st.st_mode)
        if wanted:
            # The container sees the socket where clients look for it, not where /var/run points.
            out[resolved] = DriverFile(
                kind="ipc", host_path=_abs(drv, resolved), container_path=path, capability=cap
            )
    return list(out.values())


def _configs(drv: HostRoot) -> list[DriverFile]:
    out: list[DriverFile] = []
    for path, cap in CONFIG_FILES:
        resolved = _real(drv, path)
        if _regular(drv, resolved):
            out.append(
                DriverFile(kind="config", host_path=_abs(drv, resolved), container_path=path, capability=cap)
            )
    return out


def _wsl_files(drv: HostRoot) -> list[DriverFile]:
    out: list[DriverFile] = []
    for name in drv.listdir(WSL_LIB_DIR):
        resolved = _real(drv, f"{WSL_LIB_DIR}/{name}")
        if not _regular(drv, resolved):
            continue
        kind = "binary" if name == "nvidia-smi" else "library"
        out.append(
            DriverFile(kind=kind, host_path=_abs(drv, resolved), container_path=f"{WSL_LIB_DIR}/{name}")
        )
    return out
