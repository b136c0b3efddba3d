"""The bundled demo hosts, described as data.

The /proc and /sys files come from :mod:`gpudoctor.demo.render`, the renderers the test suite's fake hosts
(``tests/scenarios/builder.py``) use too; the rest follows ``tests/scenarios/runtime_fragments.py``. All are
in the formats the kernel, the driver and the packages write them: an Ubuntu or Rocky host with two H100s on
driver 550.54.14, the toolkit, Docker, containerd, a CDI spec and cgroup v2. They ship inside the package
because the demo runs without the test suite, without a GPU and without gcc: the driver libraries are
placeholder files (only their names and links matter offline) and ``/etc/ld.so.cache`` is written by
:mod:`gpudoctor.demo.ldcache`.

Every scenario lists the statuses it must produce (``expected``); the demo tests hold it to them, so the
demo cannot drift from what the checks really say.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gpudoctor.demo import render
from gpudoctor.demo.ldcache import build_ld_so_cache
from gpudoctor.demo.render import (
    KERNEL_RELEASE,
    PROC_VERSION,
    UBUNTU_OS_RELEASE,
    WSL2_PROC_VERSION,
    WSL2_RELEASE,
    proc_devices_text,
    proc_modules_text,
)
from gpudoctor.demo.tree import DemoTree, DeviceSpec

DRIVER_VERSION = "550.54.14"
NEWER_DRIVER = "550.90.07"
CAPS_MAJOR = render.MAJORS["nvidia-caps"]
STUB = "#!/bin/sh\nexit 0\n"


@dataclass(frozen=True, kw_only=True)
class DemoGpu:
    index: int
    name: str
    uuid: str
    sysfs_bus_id: str  # 0000:3b:00.0
    minor: int
    pci_device_id: int = 0x2330

    @property
    def nvml_bus_id(self) -> str:
        domain, rest = self.sysfs_bus_id.split(":", 1)
        return f"0000{domain}:{rest}".upper()


GPUS: tuple[DemoGpu, ...] = (
    DemoGpu(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13",
            sysfs_bus_id="0000:3b:00.0", minor=0),
    DemoGpu(index=1, name="NVIDIA H100 80GB HBM3", uuid="GPU-c4e2a9b7-13f5-4d08-a6c2-7b9e1f3d5a28",
            sysfs_bus_id="0000:86:00.0", minor=1),
)


@dataclass(frozen=True, kw_only=True)
class Distro:
    os_release: str
    kernel: str
    proc_version: str
    lib_dir: str
    ldconfig: tuple[str, ...]  # the ldconfig binaries the distro has


UBUNTU = Distro(
    os_release=UBUNTU_OS_RELEASE,
    kernel=KERNEL_RELEASE,
    proc_version=PROC_VERSION,
    lib_dir="/usr/lib/x86_64-linux-gnu",
    ldconfig=("/sbin/ldconfig", "/sbin/ldconfig.real"),
)

ROCKY = Distro(
    os_release='NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
    'VERSION_ID="9.3"\nPLATFORM_ID="platform:el9"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n',
    kernel="5.14.0-362.24.1.el9_3.x86_64",
    proc_version="Linux version 5.14.0-362.24.1.el9_3.x86_64 (mockbuild@iad1-prod-build001.bld.equ.rockylinux.org)"
    " (gcc (GCC) 11.4.1 20230605 (Red Hat 11.4.1-2), GNU ld version 2.35.2-42.el9) #1 SMP PREEMPT_DYNAMIC "
    "Thu Mar 21 19:33:49 UTC 2024\n",
    lib_dir="/usr/lib64",
    ldconfig=("/sbin/ldconfig",),
)

TOOLKIT_BINARIES = ("nvidia-container-runtime-hook", "nvidia-container-cli", "nvidia-ctk",
                    "nvidia-container-runtime", "nvidia-cdi-hook")
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
DAEMON_JSON = "/etc/docker/daemon.json"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CDI_SPEC = "/etc/cdi/nvidia.yaml"

# Checks that need a live probe: under the demo's offline semantics they always skip.
LIVE_SKIPS = {"runtime.docker_daemon": "skip", "parity.nvidia_smi": "skip"}


# -- file formats: gpudoctor.demo.render, shared with the test suite's fake hosts ----------------------------


def _tree(fragment: render.Fragment) -> DemoTree:
    return DemoTree(name="", files=fragment.files, links=fragment.links, dirs=fragment.dirs)


def nvidia_nodes(gpus: Iterable[DemoGpu], *, uvm: bool = True) -> dict[str, DeviceSpec]:
    """The driver's nodes (see :func:`gpudoctor.demo.render.nvidia_nodes`) plus the MIG capability nodes."""
    nodes = {path: DeviceSpec(major=major, minor=minor, mode=mode)
             for path, (major, minor, mode) in render.nvidia_nodes(gpus, uvm=uvm).items()}
    nodes["/dev/nvidia-caps/nvidia-cap1"] = DeviceSpec(major=CAPS_MAJOR, minor=1, mode=0o400)
    nodes["/dev/nvidia-caps/nvidia-cap2"] = DeviceSpec(major=CAPS_MAJOR, minor=2, mode=0o444)
    return nodes


def nvml_probe(*, status: str = "ok", driver_version: str = DRIVER_VERSION, library_path: str,
               gpus: Iterable[DemoGpu] = GPUS, error: str | None = None) -> dict[str, Any]:
    """An NVML probe as a snapshot records it (:meth:`gpudoctor.host.nvml.NvmlProbe.to_dict`)."""
    ok = status == "ok"
    return {
        "status": status,
        "error": error,
        "library_path": library_path,
        "driver_version": driver_version if ok else None,
        "nvml_version": f"12.{driver_version}" if ok else None,
        "cuda_driver_version": 12040 if ok else None,
        "gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name, "minor": g.minor, "pci_bus_id": g.nvml_bus_id,
                  "memory_total_mib": 81559, "persistence_mode": True, "mig_mode": False} for g in gpus] if ok else [],
        "device_errors": [],
    }


# -- layers of a host --------------------------------------------------------------------------------------


def base_system(distro: Distro) -> DemoTree:
    """No NVIDIA anything: the distro, a host bridge and a BMC's ASPEED VGA on the PCI bus."""
    tree = DemoTree(
        name="base",
        files={
            **render.base_system_files(os_release=distro.os_release, proc_version=distro.proc_version,
                                       kernel=distro.kernel),
            "/etc/ld.so.conf": f"include /etc/ld.so.conf.d/*.conf\n{distro.lib_dir}\n",
        },
        dirs=frozenset({"/tmp", f"/lib/modules/{distro.kernel}/kernel", "/run/lock", "/var/lib"}),
    ).with_files({path: STUB for path in distro.ldconfig}, mode=0o755)
    for fragment in render.base_pci_devices():
        tree = tree.merged(_tree(fragment))
    return tree


def driver_libraries(lib_dir: str, version: str, *, cuda_version: str | None = None) -> DemoTree:
    """libnvidia-ml and libcuda as the driver packages lay them out (placeholder content), plus nvidia-smi."""
    files: dict[str, str | bytes] = {}
    links: dict[str, str] = {}
    for lib, ver in (("libnvidia-ml.so", version), ("libcuda.so", cuda_version or version)):
        files[f"{lib_dir}/{lib}.{ver}"] = b"\x7fELF demo stand-in for " + lib.encode() + b"\n"
        links[f"{lib_dir}/{lib}.1"] = f"{lib}.{ver}"
    links[f"{lib_dir}/libcuda.so"] = "libcuda.so.1"
    tree = DemoTree(name="", files=files, links=links).with_files({"/usr/bin/nvidia-smi": STUB}, mode=0o755)
    return tree


def ld_so_cache(lib_dir: str) -> dict[str, bytes]:
    return {"/etc/ld.so.cache": build_ld_so_cache([
        ("libnvidia-ml.so.1", f"{lib_dir}/libnvidia-ml.so.1"),
        ("libcuda.so.1", f"{lib_dir}/libcuda.so.1"),
        ("libcuda.so", f"{lib_dir}/libcuda.so"),
        ("libc.so.6", f"{lib_dir}/libc.so.6"),
    ])}


def kernel_driver(distro: Distro, version: str, gpus: Iterable[DemoGpu]) -> DemoTree:
    """The loaded kernel driver: procfs, sysfs modules, GPUs bound to nvidia, device nodes."""
    gpu_list = list(gpus)
    files = render.kernel_driver_files(kernel=distro.kernel, driver_version=version, gpus=gpu_list,
                                       ko_content=b"\x7fELF demo stand-in for nvidia.ko\n")
    tree = DemoTree(name="", files=files).with_devices(nvidia_nodes(gpu_list))
    for g in gpu_list:
        tree = tree.merged(_tree(render.gpu_pci_device(g)))
    return tree


def toolkit_config_text(*, ldconfig: str) -> str:
    """config.toml shaped like `nvidia-ctk config default` writes it."""
    return (
        "#accept-nvidia-visible-devices-as-volume-mounts = false\n"
        "#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n"
        "disable-require = false\n"
        'supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"\n\n'
        "[nvidia-container-cli]\n"
        f'ldconfig = "{ldconfig}"\n'
        "load-kmods = true\nenvironment = []\n#no-cgroups = false\n"
        '#debug = "/var/log/nvidia-container-toolkit.log"\n\n'
        "[nvidia-container-runtime]\n"
        'log-level = "info"\nmode = "auto"\nruntimes = ["runc", "crun"]\n\n'
        "[nvidia-container-runtime.modes.cdi]\n"
        'annotation-prefixes = ["cdi.k8s.io/"]\ndefault-kind = "nvidia.com/gpu"\n'
        'spec-dirs = ["/etc/cdi", "/var/run/cdi"]\n\n'
        "[nvidia-container-runtime-hook]\n"
        'path = "nvidia-container-runtime-hook"\nskip-mode-detection = false\n\n'
        "[nvidia-ctk]\n"
        'path = "nvidia-ctk"\n'
    )


def toolkit(*, ldconfig: str) -> DemoTree:
    tree = DemoTree(name="", files={TOOLKIT_CONFIG: toolkit_config_text(ldconfig=ldconfig)})
    return tree.with_files({f"/usr/bin/{n}": STUB for n in TOOLKIT_BINARIES}, mode=0o755)


def docker(*, nvidia_runtime: bool, default_runtime: str | None = None) -> DemoTree:
    """dockerd/containerd/runc stubs and daemon.json (with the nvidia runtime and CDI, or a plain one)."""
    cfg: dict[str, Any] = {"log-driver": "json-file", "log-opts": {"max-size": "10m"}}
    if nvidia_runtime:
        cfg = {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, "features": {"cdi": True}}
    if default_runtime is not None:
        cfg["default-runtime"] = default_runtime
    tree = DemoTree(name="", files={DAEMON_JSON: json.dumps(cfg, indent=4) + "\n"})
    return tree.with_files({f"/usr/bin/{n}": STUB for n in ("dockerd", "docker", "containerd", "runc")}, mode=0o755)


def containerd_config_text() -> str:
    prefix = 'plugins."io.containerd.grpc.v1.cri"'
    runtime = (
        f"[{prefix}.containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n"
        f"[{prefix}.containerd.runtimes.nvidia.options]\n  BinaryName = \"/usr/bin/nvidia-container-runtime\"\n"
        "  SystemdCgroup = true\n"
    )
    return (
        f"version = 2\n\n[{prefix}]\n[{prefix}.containerd]\n"
        f"[{prefix}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
        f"[{prefix}.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n" + runtime
    )


def cdi_spec_text(*, driver_version: str, gpus: Iterable[DemoGpu], lib_dir: str) -> str:
    """A CDI spec shaped like `nvidia-ctk cdi generate` output for these GPUs and this driver."""
    import yaml

    gpu_list = list(gpus)
    devices: list[dict[str, Any]] = []
    for g in gpu_list:
        for name in (str(g.minor), g.uuid):
            devices.append({"name": name, "containerEdits": {"deviceNodes": [{"path": f"/dev/nvidia{g.minor}"}]}})
    devices.append({"name": "all",
                    "containerEdits": {"deviceNodes": [{"path": f"/dev/nvidia{g.minor}"} for g in gpu_list]}})
    libs = ("libnvidia-ml.so", "libcuda.so")
    mounts = [{"hostPath": f"{lib_dir}/{lib}.{driver_version}", "containerPath": f"{lib_dir}/{lib}.{driver_version}",
               "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"]} for lib in libs]
    links = [a for lib in libs for a in ("--link", f"{lib}.{driver_version}::{lib_dir}/{lib}.1")]
    hook = "/usr/bin/nvidia-cdi-hook"
    data = {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": devices,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl"}, {"path": "/dev/nvidia-uvm"}, {"path": "/dev/nvidia-uvm-tools"}],
            "hooks": [
                {"hookName": "createContainer", "path": hook, "args": ["nvidia-cdi-hook", "create-symlinks", *links]},
                {"hookName": "createContainer", "path": hook,
                 "args": ["nvidia-cdi-hook", "enable-cuda-compat", f"--host-driver-version={driver_version}"]},
                {"hookName": "createContainer", "path": hook,
                 "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", lib_dir]},
            ],
            "mounts": mounts,
        },
    }
    return "---\n" + yaml.safe_dump(data, sort_keys=False)


MOUNTINFO_V2 = (
    "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    "28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
    "26 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)


def runtime_layer(*, driver_version: str, gpus: Iterable[DemoGpu], lib_dir: str, nvidia_runtime: bool = True,
                  cdi: bool = True, default_runtime: str | None = None) -> DemoTree:
    """containerd with nvidia, a CDI spec for this driver, cgroup v2 with systemd; Docker from docker()."""
    files: dict[str, str | bytes] = {
        CONTAINERD_CONFIG: containerd_config_text(),
        "/proc/self/mountinfo": MOUNTINFO_V2,
        "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        "/run/systemd/system/.keep": "",
    }
    if cdi:
        files[CDI_SPEC] = cdi_spec_text(driver_version=driver_version, gpus=gpus, lib_dir=lib_dir)
    return DemoTree(name="", files=files).merged(docker(nvidia_runtime=nvidia_runtime, default_runtime=default_runtime))


# -- the scenarios -------------------------------------------------------------------------------------------

HW_CHECKS = (
    "driver.gpus", "driver.nouveau", "driver.loaded", "driver.installed", "driver.version_match",
    "modules.nvidia", "modules.nvidia_uvm", "modules.nvidia_modeset", "modules.nvidia_drm",
    "devices.control", "devices.gpus", "devices.uvm", "devices.permissions",
)
RUNTIME_CHECKS = ("toolkit.installed", "toolkit.config", "runtime.docker_config", "runtime.containerd",
                  "runtime.cdi", "runtime.cgroups")
ALL_PASS = {cid: "pass" for cid in (*HW_CHECKS, *RUNTIME_CHECKS)} | LIVE_SKIPS


def gpu_host(distro: Distro, *, ldconfig: str, nvidia_runtime: bool = True, default_runtime: str | None = None,
             version: str = DRIVER_VERSION) -> DemoTree:
    """A GPU host on `distro` with the driver, the toolkit and the container runtimes."""
    lib_dir = distro.lib_dir
    tree = (
        base_system(distro)
        .merged(kernel_driver(distro, version, GPUS))
        .merged(driver_libraries(lib_dir, version))
        .with_files(ld_so_cache(lib_dir))
        .merged(toolkit(ldconfig=ldconfig))
        .merged(runtime_layer(driver_version=version, gpus=GPUS, lib_dir=lib_dir, nvidia_runtime=nvidia_runtime,
                              default_runtime=default_runtime))
    )
    return tree.recording({"nvml": nvml_probe(library_path=f"{lib_dir}/libnvidia-ml.so.{version}")})


def healthy() -> DemoTree:
    return gpu_host(UBUNTU, ldconfig="@/sbin/ldconfig.real").named(
        "healthy", title="A healthy GPU host",
        description="Ubuntu 22.04, 2× H100, driver 550.54.14, toolkit, Docker and containerd all set up",
    ).expecting(ALL_PASS)


def broken() -> DemoTree:
    """Two classics: a Debian toolkit config copied to Rocky, and a hand-edited daemon.json that makes
    `nvidia` the default runtime without registering it (dockerd then refuses to start)."""
    return gpu_host(ROCKY, ldconfig="@/sbin/ldconfig.real", nvidia_runtime=False, default_runtime="nvidia").named(
        "broken", title="A host to fix",
        description="Rocky 9: the toolkit config names /sbin/ldconfig.real (a Debian path) and daemon.json makes "
        "an unregistered nvidia runtime the default; both can be fixed from the keyboard",
    ).expecting(ALL_PASS | {"toolkit.config": "fail", "runtime.docker_config": "fail"})


def missing_toolkit() -> DemoTree:
    tree = gpu_host(UBUNTU, ldconfig="@/sbin/ldconfig.real", nvidia_runtime=False)
    tree = tree.without(TOOLKIT_CONFIG, CDI_SPEC, *[f"/usr/bin/{n}" for n in TOOLKIT_BINARIES])
    tree = tree.with_files({CONTAINERD_CONFIG: containerd_config_text().split('[plugins."io.containerd.grpc.v1.cri"'
                                                                              '.containerd.runtimes.nvidia]')[0]})
    return tree.named(
        "missing-toolkit", title="No NVIDIA Container Toolkit",
        description="the driver works, but the container toolkit was never installed: the install wizard's case",
    ).expecting(ALL_PASS | {"toolkit.installed": "fail", "toolkit.config": "skip", "runtime.docker_config": "skip",
                            "runtime.containerd": "skip", "runtime.cdi": "skip", "runtime.cgroups": "skip",
                            "runtime.docker_daemon": "skip"})


def version_mismatch() -> DemoTree:
    """Unattended upgrades replaced the libraries (550.90.07) under the running module (550.54.14)."""
    lib_dir = UBUNTU.lib_dir
    tree = gpu_host(UBUNTU, ldconfig="@/sbin/ldconfig.real")
    tree = tree.without(f"{lib_dir}/libnvidia-ml.so.{DRIVER_VERSION}", f"{lib_dir}/libcuda.so.{DRIVER_VERSION}")
    tree = tree.merged(driver_libraries(lib_dir, NEWER_DRIVER))
    tree = tree.recording({"nvml": nvml_probe(status="lib_rm_version_mismatch",
                                              library_path=f"{lib_dir}/libnvidia-ml.so.{NEWER_DRIVER}",
                                              error="Driver/library version mismatch")})
    hw_ok = {cid: "pass" for cid in HW_CHECKS if cid != "driver.version_match"}
    return tree.named(
        "version-mismatch", title="Driver/library version mismatch",
        description="the driver packages were upgraded to 550.90.07 but the loaded module is still 550.54.14",
    ).expecting(hw_ok | {"driver.version_match": "fail", "runtime.cdi": "fail"})


def module_not_loaded() -> DemoTree:
    """nvidia_uvm is not loaded, so /dev/nvidia-uvm is missing: CUDA says 'no CUDA-capable device'."""
    tree = gpu_host(UBUNTU, ldconfig="@/sbin/ldconfig.real")
    tree = tree.without("/sys/module/nvidia_uvm", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
    tree = tree.with_files({
        "/proc/modules": proc_modules_text(("nvidia", "nvidia_modeset", "nvidia_drm")),
        "/proc/devices": proc_devices_text(uvm=False),
    })
    hw_ok = {cid: "pass" for cid in HW_CHECKS}
    return tree.named(
        "module-not-loaded", title="nvidia_uvm not loaded",
        description="the nvidia_uvm module is not loaded, so /dev/nvidia-uvm is missing and CUDA finds no device",
    ).expecting(hw_ok | {"modules.nvidia_uvm": "fail", "devices.uvm": "skip"})


def wsl2() -> DemoTree:
    """Ubuntu on WSL2: the GPU comes through /dev/dxg and /usr/lib/wsl/lib, no PCI, modules or nodes."""
    wsl_lib = "/usr/lib/wsl/lib"
    tree = DemoTree(
        name="",
        files={
            "/etc/os-release": UBUNTU.os_release,
            "/proc/version": WSL2_PROC_VERSION,
            "/proc/sys/kernel/osrelease": WSL2_RELEASE + "\n",
            "/proc/cmdline": "initrd=\\initrd.img WSL_ROOT_INIT=1 panic=-1 nr_cpus=16 swiotlb=force\n",
            "/proc/modules": proc_modules_text(()),
            "/proc/devices": proc_devices_text(nvidia=False, uvm=False),
            "/etc/ld.so.conf": f"include /etc/ld.so.conf.d/*.conf\n{UBUNTU.lib_dir}\n",
            "/etc/ld.so.conf.d/ld.wsl.conf": f"{wsl_lib}\n",
            f"{wsl_lib}/libnvidia-ml.so.1": b"\x7fELF demo stand-in for the Windows driver's NVML\n",
            f"{wsl_lib}/libcuda.so.1.1": b"\x7fELF demo stand-in for libcuda\n",
            f"{wsl_lib}/libdxcore.so": b"\x7fELF demo stand-in for libdxcore\n",
            "/etc/ld.so.cache": build_ld_so_cache([
                ("libnvidia-ml.so.1", f"{wsl_lib}/libnvidia-ml.so.1"),
                ("libcuda.so.1", f"{wsl_lib}/libcuda.so.1"),
                ("libdxcore.so", f"{wsl_lib}/libdxcore.so"),
            ]),
        },
        links={f"{wsl_lib}/libcuda.so.1": "libcuda.so.1.1"},
        dirs=frozenset({"/tmp", "/run/lock", "/var/lib"}),
    ).with_files({f"{wsl_lib}/nvidia-smi": STUB, "/sbin/ldconfig": STUB, "/sbin/ldconfig.real": STUB}, mode=0o755)
    tree = tree.with_devices({"/dev/dxg": DeviceSpec(major=10, minor=63)})
    tree = tree.merged(toolkit(ldconfig="@/sbin/ldconfig.real"))
    tree = tree.merged(runtime_layer(driver_version=DRIVER_VERSION, gpus=GPUS[:1], lib_dir=wsl_lib, cdi=False))
    tree = tree.recording({"nvml": nvml_probe(library_path=f"{wsl_lib}/libnvidia-ml.so.1", gpus=GPUS[:1])})
    not_here = {cid: "skip" for cid in HW_CHECKS if cid.startswith(("modules.", "devices."))}
    return tree.named(
        "wsl2", title="Ubuntu on WSL2",
        description="a GPU paravirtualised by Windows: the kernel, module and device-node layers do not apply",
    ).expecting(not_here | {"driver.gpus": "skip", "driver.loaded": "pass", "driver.installed": "pass",
                            "toolkit.installed": "pass", "toolkit.config": "pass", "runtime.docker_config": "pass"})


CATALOG: dict[str, Callable[[], DemoTree]] = {
    "broken": broken,
    "healthy": healthy,
    "missing-toolkit": missing_toolkit,
    "version-mismatch": version_mismatch,
    "module-not-loaded": module_not_loaded,
    "wsl2": wsl2,
}
"""Every demo scenario by name; `broken` is what ``gpudoctor --demo`` shows."""
