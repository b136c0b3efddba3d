"""One scenario per failure mode of the driver / kernel-module / device-node layers, plus healthy hosts.

Each scenario states, for every check id of those layers, the status ``gpudoctor --check --offline`` must
give, and for the check that decides it, the evidence line naming the host file and value (and, where the
issue asks for an explicit statement, the summary text). Live expectations (without ``--offline``, through
the kit's fake NVML) are given for the scenarios the live tests run.

The toolkit/runtime checks have their own expectations in their tests; here the healthy hosts include the
runtime fragment so that those checks pass too.
"""

from __future__ import annotations

from dataclasses import replace

from tests.kit import DEFAULT_GPUS, KitSpec
from tests.scenarios.builder import (
    ALL_HW_CHECKS,
    KERNEL_RELEASE,
    NVIDIA_MODULES,
    SECURE_BOOT_EFIVAR,
    UBUNTU_OS_RELEASE,
    WSL1_PROC_VERSION,
    WSL2_PROC_VERSION,
    WSL2_RELEASE,
    Scenario,
    base_system,
    driver_unloaded,
    gpu_information_text,
    healthy_host,
    merge,
    module_sysfs,
    nvidia_nodes,
    params_text,
    pci_device,
    proc_devices_text,
    proc_modules_text,
    secure_boot_efivar,
)

PASS, WARN, FAIL, SKIP, ERROR = "pass", "warn", "fail", "skip", "error"
DRIVER_VERSION = "550.54.14"
NEWER_VERSION = "550.90.07"


def statuses(default: str, **by_id: str) -> dict[str, str]:
    """Every hardware-layer check id with `default`, except those given (``driver__gpus="fail"``)."""
    out = {cid: default for cid in ALL_HW_CHECKS}
    for key, status in by_id.items():
        cid = key.replace("__", ".")
        if cid not in out:
            raise KeyError(f"unknown check id {cid}")
        out[cid] = status
    return out


def _all_skip_but(**by_id: str) -> dict[str, str]:
    return statuses(SKIP, **by_id)


def healthy() -> Scenario:
    return healthy_host(2, name="healthy_2gpu").expecting(
        statuses(PASS),
        evidence={
            "driver.gpus": "/sys/bus/pci/devices/0000:3b:00.0: NVIDIA 0x10de:0x2330 class 0x030200, driver nvidia",
            "driver.loaded": "/proc/driver/nvidia/version: NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14",
            "driver.installed": "/etc/ld.so.cache: libnvidia-ml.so.1 -> /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            "driver.version_match": "/proc/driver/nvidia/version: kernel module 550.54.14",
            "modules.nvidia_uvm": "/proc/modules: nvidia_uvm 1527808 0 - Live (POE)",
            "devices.control": "/dev/nvidiactl: crw-rw-rw- 0:0 c 195:255",
            "devices.gpus": "/proc/driver/nvidia/gpus/0000:86:00.0/information: Device Minor 1",
            "devices.uvm": "/proc/devices: 508 nvidia-uvm",
            "devices.permissions": "/proc/driver/nvidia/params: DeviceFileMode: 438 (0666)",
        },
    ).expecting_live(statuses(PASS), evidence={
        "driver.gpus": "NVML GPU 1: 0000:86:00.0 GPU-c4e2a9b7-13f5-4d08-a6c2-7b9e1f3d5a28",
        "driver.loaded": "initialised, driver 550.54.14, 2 GPU(s)"})


def healthy_open_4gpu() -> Scenario:
    return healthy_host(4, driver_version="560.35.03", open_module=True, name="healthy_4gpu_open").expecting(
        statuses(PASS),
        evidence={"driver.loaded": "NVIDIA UNIX Open Kernel Module for x86_64  560.35.03",
                  "devices.gpus": "/dev/nvidia3: crw-rw-rw-"},
        summary={"driver.loaded": "open kernel module", "driver.gpus": "4 NVIDIA GPUs"},
    )


def no_gpu() -> Scenario:
    sc = merge(base_system("no_nvidia_gpu"),
               pci_device("0000:00:02.0", vendor=0x8086, device=0x46A6, class_code=0x030000, driver="i915"))
    return replace(sc, description="a laptop/VM with only an Intel iGPU and a BMC VGA: no NVIDIA GPU").expecting(
        _all_skip_but(driver__gpus=FAIL),
        evidence={"driver.gpus": "/sys/bus/pci/devices: 3 devices, none with vendor 0x10de"},
        summary={"driver.gpus": "no NVIDIA GPU on the PCI bus", "driver.loaded": "driver.gpus is fail"},
    )


def gpus_bound_to_vfio() -> Scenario:
    sc = driver_unloaded(healthy_host(2)).bind_gpus("vfio-pci").with_files({
        "/etc/modprobe.d/vfio.conf": "options vfio-pci ids=10de:2330\nsoftdep nvidia pre: vfio-pci\n",
        "/proc/modules": proc_modules_text(["vfio_pci"]),
    })
    return sc.named("gpus_bound_to_vfio", "every GPU reserved for VM passthrough (vfio-pci)").expecting(
        _all_skip_but(driver__gpus=FAIL),
        evidence={"driver.gpus": "/etc/modprobe.d/vfio.conf:1: options vfio-pci ids=10de:2330"},
        summary={"driver.gpus": "bound to vfio-pci"},
    )


def userspace_driver_missing() -> Scenario:
    sc = healthy_host(2).with_driver(None).named(
        "userspace_driver_missing", "kernel module loaded, but no libnvidia-ml.so.1 (only the kernel part installed)")
    return sc.expecting(
        statuses(PASS, driver__installed=FAIL, driver__version_match=SKIP),
        evidence={"driver.installed": "/etc/ld.so.cache: no entry for libnvidia-ml.so.1"},
        summary={"driver.installed": "userspace driver is not installed"},
    )


def module_not_loaded() -> Scenario:
    sc = driver_unloaded(healthy_host(2)).named("module_not_loaded", "driver installed, nvidia.ko not loaded")
    return sc.expecting(
        _all_skip_but(driver__gpus=WARN, driver__nouveau=PASS, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.loaded": "/proc/modules: no entry for nvidia", "driver.gpus": "driver none"},
        summary={"driver.loaded": "NVIDIA kernel module is not loaded", "driver.gpus": "not bound to any driver"},
    )


def secure_boot_blocks_module() -> Scenario:
    sc = driver_unloaded(healthy_host(2)).with_files({
        SECURE_BOOT_EFIVAR: secure_boot_efivar(True),
        "/sys/kernel/security/lockdown": "none [integrity] confidentiality\n",
    }).named("secure_boot_blocks_module", "Secure Boot on, the DKMS-built module is unsigned and refused")
    return sc.expecting(
        _all_skip_but(driver__gpus=WARN, driver__nouveau=PASS, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.loaded": f"{SECURE_BOOT_EFIVAR}: value 1 (Secure Boot on)"},
        summary={"driver.loaded": "Secure Boot is on"},
    )


def nouveau_owns_gpu() -> Scenario:
    sc = (driver_unloaded(healthy_host(2)).bind_gpus("nouveau")
          .without("/etc/modprobe.d/blacklist-nvidia-nouveau.conf")
          .with_files({"/proc/modules": proc_modules_text(["nouveau", "drm_kms_helper"]),
                       **module_sysfs("nouveau", version=None)}))
    return sc.named("nouveau_owns_gpu", "nouveau claimed the GPUs first; nvidia cannot load").expecting(
        _all_skip_but(driver__gpus=WARN, driver__nouveau=FAIL, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.nouveau": "/proc/modules: nouveau 2818048 0 - Live",
                  "driver.loaded": "/proc/modules: no entry for nvidia"},
        summary={"driver.nouveau": "drives GPU 0000:3b:00.0", "driver.loaded": "nouveau is loaded"},
    )


def module_missing_for_kernel() -> Scenario:
    old = "6.2.0-39-generic"
    sc = (driver_unloaded(healthy_host(2)).without(f"/lib/modules/{KERNEL_RELEASE}/updates")
          .with_files({f"/lib/modules/{old}/updates/dkms/nvidia.ko": b"\x7fELF stand-in\n"}))
    return sc.named("module_missing_for_kernel", "kernel upgraded, DKMS did not rebuild nvidia.ko").expecting(
        _all_skip_but(driver__gpus=WARN, driver__nouveau=PASS, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.loaded": f"/lib/modules/{KERNEL_RELEASE}: no nvidia.ko* for the running kernel"},
        summary={"driver.loaded": f"no nvidia module is built for the running kernel {KERNEL_RELEASE}"},
    )


def nvidia_blacklisted() -> Scenario:
    sc = driver_unloaded(healthy_host(2)).with_files(
        {"/etc/modprobe.d/blacklist-nvidia.conf": "# keep the GPU for the VM\nblacklist nvidia\n"})
    return sc.named("nvidia_blacklisted", "a modprobe.d file blacklists nvidia").expecting(
        _all_skip_but(driver__gpus=WARN, driver__nouveau=PASS, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.loaded": "/etc/modprobe.d/blacklist-nvidia.conf:2: blacklist nvidia"},
        summary={"driver.loaded": "nvidia is blacklisted"},
    )


def driver_failed_init() -> Scenario:
    sc = healthy_host(2).without("/proc/driver/nvidia").named(
        "driver_failed_init", "nvidia.ko is listed in /proc/modules but never created /proc/driver/nvidia")
    return sc.expecting(
        statuses(SKIP, driver__gpus=PASS, driver__nouveau=PASS, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.loaded": "/proc/driver/nvidia/version: not present"},
        summary={"driver.loaded": "failed to initialise"},
    )


def version_mismatch() -> Scenario:
    spec = KitSpec(driver_version=NEWER_VERSION, gpus=DEFAULT_GPUS, rm_mismatch=True)
    sc = healthy_host(2).with_driver(spec).named(
        "version_mismatch", f"libraries upgraded to {NEWER_VERSION}, the {DRIVER_VERSION} module still loaded")
    sc = sc.expecting(
        statuses(PASS, driver__version_match=FAIL),
        evidence={"driver.version_match": f"libnvidia-ml.so.{NEWER_VERSION}"},
        summary={"driver.version_match": f"kernel module {DRIVER_VERSION}, libnvidia-ml.so.1 {NEWER_VERSION}"},
    )
    return sc.expecting_live(statuses(PASS, driver__version_match=FAIL),
                             evidence={"driver.version_match": "lib_rm_version_mismatch",
                                       "driver.loaded": "LibRmVersionMismatch"})


def nvml_mismatch_only() -> Scenario:
    """Files agree, but the library in use refuses the module (only NVML can tell): offline pass, live fail."""
    spec = KitSpec(driver_version=DRIVER_VERSION, gpus=DEFAULT_GPUS, rm_mismatch=True)
    sc = healthy_host(2).with_driver(spec).named("nvml_rm_mismatch", "NVML says LibRmVersionMismatch")
    return sc.expecting(statuses(PASS)).expecting_live(
        statuses(PASS, driver__version_match=FAIL),
        evidence={"driver.version_match": "NVML from /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14: "
                                          "lib_rm_version_mismatch"})


def uvm_not_loaded() -> Scenario:
    sc = (healthy_host(2)
          .with_files({"/proc/modules": proc_modules_text(["nvidia", "nvidia_modeset", "nvidia_drm"]),
                       "/proc/devices": proc_devices_text(uvm=False)})
          .without("/sys/module/nvidia_uvm", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"))
    return sc.named("uvm_not_loaded", "headless server: nothing loaded nvidia_uvm").expecting(
        statuses(PASS, modules__nvidia_uvm=FAIL, devices__uvm=SKIP),
        evidence={"modules.nvidia_uvm": "/proc/modules: no entry for nvidia_uvm"},
        summary={"modules.nvidia_uvm": "CUDA needs it"},
    )


def uvm_node_missing() -> Scenario:
    sc = healthy_host(2).without("/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
    return sc.named("uvm_node_missing", "nvidia_uvm loaded, /dev/nvidia-uvm never created").expecting(
        statuses(PASS, devices__uvm=FAIL),
        evidence={"devices.uvm": "/dev/nvidia-uvm: missing"},
        summary={"devices.uvm": "/dev/nvidia-uvm is missing"},
    )


def nvidiactl_missing() -> Scenario:
    sc = healthy_host(2).without("/dev/nvidiactl").named("nvidiactl_missing", "udev did not create /dev/nvidiactl")
    sc = sc.expecting(
        statuses(PASS, devices__control=FAIL, devices__permissions=SKIP),
        evidence={"devices.control": "/dev/nvidiactl: missing"},
        summary={"devices.control": "/dev/nvidiactl is missing"},
    )
    # Live, NVML fails with DriverNotLoaded (the real library's rule without /dev/nvidiactl).
    return sc.expecting_live(
        statuses(PASS, driver__loaded=WARN, devices__control=FAIL, devices__permissions=SKIP),
        evidence={"driver.loaded": "driver_not_loaded", "devices.control": "/dev/nvidiactl: missing"})


def nvidiactl_not_char_device() -> Scenario:
    sc = healthy_host(2).with_files({"/dev/nvidiactl": ""}).named(
        "nvidiactl_regular_file", "/dev/nvidiactl is a regular file (created by a bind mount of a missing node)")
    return sc.expecting(
        statuses(PASS, devices__control=FAIL, devices__permissions=SKIP),
        evidence={"devices.control": "/dev/nvidiactl: exists but is a regular file"},
    )


def gpu_node_missing() -> Scenario:
    sc = healthy_host(2).without("/dev/nvidia1").named("gpu_node_missing", "/dev/nvidia1 missing for GPU minor 1")
    return sc.expecting(
        statuses(PASS, devices__gpus=FAIL, devices__permissions=SKIP),
        evidence={"devices.gpus": "/dev/nvidia1: missing"},
        summary={"devices.gpus": "/dev/nvidia1 is missing (GPU 0000:86:00.0, Device Minor 1)"},
    )


def device_permissions() -> Scenario:
    sc = healthy_host(2)
    nodes = nvidia_nodes(sc.gpus, mode=0o600)
    sc = sc.with_devices(nodes).with_files({"/proc/driver/nvidia/params": params_text(device_file_mode=0o600)})
    sc = sc.with_files({"/etc/modprobe.d/nvidia-perms.conf": "options nvidia NVreg_DeviceFileMode=0600\n"})
    return sc.named("device_permissions", "device nodes 0600: only root can use the GPU").expecting(
        statuses(PASS, devices__permissions=FAIL),
        evidence={"devices.permissions": "/proc/driver/nvidia/params: DeviceFileMode: 384 (0600)"},
        summary={"devices.permissions": "/dev/nvidiactl is crw------- (0600)"},
    )


def device_group_only() -> Scenario:
    """VirtualGL's setup: nodes 0660 root:vglusers. Root passes the mode bits, other users need the group."""
    sc = healthy_host(2)
    nodes = nvidia_nodes(sc.gpus, mode=0o660)
    sc = (sc.with_devices(nodes)
          .owned_by({path: (0, 1001) for path in nodes})
          .with_files({"/proc/driver/nvidia/params": params_text(device_file_mode=0o660, gid=1001),
                       "/etc/modprobe.d/virtualgl.conf":
                       "options nvidia NVreg_DeviceFileUID=0 NVreg_DeviceFileGID=1001 NVreg_DeviceFileMode=0660\n"}))
    return sc.named("device_group_only", "VirtualGL-style 0660 root:1001 device nodes").expecting(
        statuses(PASS, devices__permissions=WARN),
        evidence={"devices.permissions": "/etc/modprobe.d/virtualgl.conf:1: options nvidia NVreg_DeviceFileUID=0"},
        summary={"devices.permissions": "only root and group 1001"},
    )


def device_nodes_owned_by_user() -> Scenario:
    """A udev ``uaccess``-style rule gave the nodes to one desktop user (0600 1000:1000)."""
    sc = healthy_host(2)
    nodes = nvidia_nodes(sc.gpus, mode=0o600)
    sc = sc.with_devices(nodes).owned_by({path: (1000, 1000) for path in nodes})
    sc = sc.named("device_nodes_owned_by_user", "nodes 0600 owned by uid 1000").expecting(
        statuses(PASS, devices__permissions=FAIL),
        evidence={"devices.permissions": "/dev/nvidiactl: crw------- 1000:1000 c 195:255"},
        summary={"devices.permissions": "only its owner (uid 1000)"},
    )
    # The kit's NVML applies the mode bits to root too (a stand-in for a non-root user): NoPermission.
    return sc.expecting_live(statuses(PASS, devices__permissions=FAIL),
                             evidence={"devices.permissions": "no_permission"})


def modeset_not_loaded() -> Scenario:
    sc = (healthy_host(2).with_files({"/proc/modules": proc_modules_text(["nvidia", "nvidia_uvm"])})
          .without("/sys/module/nvidia_modeset", "/sys/module/nvidia_drm", "/dev/nvidia-modeset"))
    return sc.named("modeset_not_loaded", "compute-only host: no nvidia_modeset / nvidia_drm").expecting(
        statuses(PASS, modules__nvidia_modeset=WARN, modules__nvidia_drm=WARN),
        evidence={"modules.nvidia_modeset": "/proc/modules: no entry for nvidia_modeset",
                  "modules.nvidia_drm": "/sys/module/nvidia_drm: not present"},
    )


def not_in_ld_cache() -> Scenario:
    sc = healthy_host(2).without("/etc/ld.so.cache").named(
        "driver_not_in_ld_cache", "driver libraries installed, ldconfig never run")
    return sc.expecting(
        statuses(PASS, driver__installed=WARN),
        evidence={"driver.installed": "/etc/ld.so.cache: not present"},
        summary={"driver.installed": "exists but /etc/ld.so.cache: not present"},
    )


def gpu_excluded() -> Scenario:
    sc = healthy_host(2)
    g = sc.gpus[1]
    sc = sc.with_files({f"/proc/driver/nvidia/gpus/{g.sysfs_bus_id}/information":
                        gpu_information_text(g, driver_version=DRIVER_VERSION, excluded=True)})
    return sc.named("gpu_excluded", "GPU 1 excluded with NVreg_ExcludedGpus").expecting(
        statuses(PASS, driver__gpus=WARN),
        evidence={"driver.gpus": f"/proc/driver/nvidia/gpus/{g.sysfs_bus_id}/information: GPU Excluded: Yes"},
    )


def gpu_lost() -> Scenario:
    sc = healthy_host(2)
    g = sc.gpus[0]
    sc = sc.with_files({f"/proc/driver/nvidia/gpus/{g.sysfs_bus_id}/information":
                        gpu_information_text(g, driver_version=DRIVER_VERSION, lost=True)})
    return sc.named("gpu_fell_off_bus", "GPU 0's information shows ?? (Xid 79)").expecting(
        statuses(PASS, driver__gpus=WARN),
        evidence={"driver.gpus": f"/proc/driver/nvidia/gpus/{g.sysfs_bus_id}/information: GPU UUID unknown"},
        summary={"driver.gpus": "fallen off the bus"},
    )


def gpu_missing_from_nvml() -> Scenario:
    """Two GPUs on the PCI bus and in /proc, but NVML (the kit compiled with one) sees only GPU 0."""
    sc = healthy_host(2).with_driver(KitSpec(driver_version=DRIVER_VERSION, gpus=DEFAULT_GPUS[:1]))
    sc = sc.named("gpu_missing_from_nvml", "NVML sees 1 of 2 GPUs").expecting(statuses(PASS))
    return sc.expecting_live(statuses(PASS, driver__gpus=WARN),
                             evidence={"driver.gpus": "NVML from /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14: "
                                                      "initialised, driver 550.54.14, 1 GPU(s)"})


def _wsl2_base(name: str) -> Scenario:
    from tests.scenarios import runtime_fragments as rf

    sc = Scenario(
        name=name,
        files={
            "/etc/os-release": UBUNTU_OS_RELEASE,
            "/proc/version": WSL2_PROC_VERSION,
            "/proc/sys/kernel/osrelease": WSL2_RELEASE + "\n",
            "/proc/modules": "",
            "/proc/devices": proc_devices_text(nvidia=False, uvm=False),
            "/etc/ld.so.conf.d/ld.wsl.conf": "# This file was automatically generated by WSL.\n/usr/lib/wsl/lib\n",
        },
        char_devices={"/dev/dxg": (10, 124, 0o666)},
        driver=KitSpec(driver_version="551.61", gpus=DEFAULT_GPUS[:1]),
        driver_libdir="usr/lib/wsl/lib",
        driver_binaries=False,
        gpus=(),
    ).with_files({"/usr/lib/wsl/lib/nvidia-smi": b"\x7fELF stand-in\n"}, mode=0o755)
    return sc.with_tree(rf.merge(rf.healthy_toolkit(), rf.docker_engine(), rf.daemon_json_nvidia(cdi=False),
                                 rf.mountinfo("v2", systemd=True)))


def wsl2() -> Scenario:
    sc = _wsl2_base("wsl2")
    return replace(sc, description="WSL2 with the Windows driver's libraries in /usr/lib/wsl/lib").expecting(
        statuses(SKIP, driver__loaded=PASS, driver__installed=PASS),
        evidence={"driver.loaded": "/dev/dxg: crw-rw-rw- 0:0 c 10:124",
                  "driver.installed": "/usr/lib/wsl/lib/libnvidia-ml.so.1: present"},
        summary={"driver.gpus": "does not apply on WSL2", "modules.nvidia": "does not apply on WSL2",
                 "devices.control": "does not apply on WSL2"},
    )


def wsl2_no_dxg() -> Scenario:
    sc = _wsl2_base("wsl2_no_dxg").without("/dev/dxg")
    return replace(sc, description="WSL2 without /dev/dxg (old Windows driver or WSL)").expecting(
        statuses(SKIP, driver__loaded=FAIL, driver__installed=PASS),
        evidence={"driver.loaded": "/dev/dxg: missing"},
        summary={"driver.loaded": "WSL2 without /dev/dxg"},
    )


def wsl2_linux_driver() -> Scenario:
    sc = _wsl2_base("wsl2_linux_driver").with_files(
        {"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1": b"\x7fELF stand-in for a Linux driver\n"})
    return replace(sc, description="a Linux NVIDIA driver installed inside WSL2").expecting(
        statuses(SKIP, driver__loaded=PASS, driver__installed=WARN),
        evidence={"driver.installed": "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1: present"},
    )


def wsl1() -> Scenario:
    sc = Scenario(name="wsl1", description="WSL1: no GPU support",
                  files={"/etc/os-release": UBUNTU_OS_RELEASE, "/proc/version": WSL1_PROC_VERSION})
    return sc.expecting(_all_skip_but(driver__gpus=FAIL), evidence={"driver.gpus": "/proc/version: kernel "
                                                                                    "4.4.0-19041-Microsoft (WSL1)"})


def catalog() -> list[Scenario]:
    """Every scenario, in a stable order (names are unique)."""
    scenarios = [
        healthy(), healthy_open_4gpu(), no_gpu(), gpus_bound_to_vfio(), userspace_driver_missing(),
        module_not_loaded(), secure_boot_blocks_module(), nouveau_owns_gpu(), module_missing_for_kernel(),
        nvidia_blacklisted(), driver_failed_init(), version_mismatch(), nvml_mismatch_only(), uvm_not_loaded(),
        uvm_node_missing(), nvidiactl_missing(), nvidiactl_not_char_device(), gpu_node_missing(),
        device_permissions(), device_group_only(), device_nodes_owned_by_user(), modeset_not_loaded(), not_in_ld_cache(), gpu_excluded(),
        gpu_lost(), gpu_missing_from_nvml(), wsl2(), wsl2_no_dxg(), wsl2_linux_driver(), wsl1(),
    ]
    names = [s.name for s in scenarios]
    assert len(set(names)) == len(names), "scenario names must be unique"
    return scenarios


def by_name() -> dict[str, Scenario]:
    return {s.name: s for s in catalog()}


LIVE_SCENARIOS = ("healthy_2gpu", "nvidiactl_missing", "version_mismatch", "nvml_rm_mismatch",
                  "gpu_missing_from_nvml", "device_nodes_owned_by_user")

__all__ = ["LIVE_SCENARIOS", "NVIDIA_MODULES", "by_name", "catalog", "statuses"]
