"""Declarative fake hosts: a :class:`Scenario` says what a host's /proc, /sys, /dev, /etc and driver look like;
:func:`build_host` lays it out under a temporary directory for ``gpudoctor --root``.

A scenario is frozen data. Variants are made by composition, never by editing a tree on disk::

    base = healthy_host(gpus=2)                          # every check passes, toolkit/runtime included
    broken = base.without("/dev/nvidia-uvm").named("uvm_node_missing").expecting({"devices.uvm": "fail"})

- ``files`` maps host paths to content (str or bytes); ``modes`` overrides a file's mode (default 0644).
- ``symlinks`` maps host paths to link targets, written as given (absolute targets resolve inside the root,
  as gpudoctor's HostRoot resolves them).
- ``char_devices`` maps host paths to ``(major, minor, mode)``; they are made with mknod (root needed);
  ``owners`` gives (uid, gid) for any path.
- ``driver`` is a :class:`tests.kit.KitSpec`: the simulated driver (fake libnvidia-ml, stub libraries,
  nvidia-smi, firmware) is installed with the kit and the root gets a real ``ld.so.cache`` (``ldconfig -r``).
  Without a driver the root still gets a real cache (without NVIDIA libraries) unless ``ldconfig`` is False.
- ``gpus`` are the physical GPUs on the PCI bus. The driver kit may know fewer (a lost GPU).
- ``removed`` are paths deleted after the kit is installed (e.g. its ``/etc/ld.so.cache``).
- ``expected`` maps check ids to the status the scenario must produce offline; ``evidence`` maps check ids
  to a text that must appear in that check's evidence (naming the file and value that decided it), and
  ``summary`` to a text its one-line summary must contain;
  ``live_expected`` / ``live_evidence`` are the same for a run without ``--offline``.

Fragments from :mod:`tests.scenarios.runtime_fragments` (``Tree`` of File/Link) compose with
:meth:`Scenario.with_tree`.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gpudoctor.demo import render

# The file formats live in the package (the demo hosts use them too); the catalog and tests import them from here.
from gpudoctor.demo.render import (  # noqa: F401
    KERNEL_RELEASE,
    NVIDIA_MODULES,
    PCI_ROOT,
    PROC_VERSION,
    SECURE_BOOT_EFIVAR,
    UBUNTU_OS_RELEASE,
    WSL2_PROC_VERSION,
    WSL2_RELEASE,
    gpu_information_text,
    module_sysfs,
    nvidia_version_text,
    params_text,
    pci_device_dir,
    proc_modules_text,
    secure_boot_efivar,
)
from gpudoctor.host.root import HostRoot
from tests.kit import DEFAULT_GPUS, FakeGpu, KitSpec, fake_gpus, install_driver_root, kit_majors

Content = str | bytes


class ScenarioBuildError(RuntimeError):
    """The scenario could not be laid out (mknod without root, a path clash); the message says which."""


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A fake host. See the module docstring for the fields; build it with :func:`build_host`."""

    name: str
    description: str = ""
    files: Mapping[str, Content] = field(default_factory=dict)
    modes: Mapping[str, int] = field(default_factory=dict)
    symlinks: Mapping[str, str] = field(default_factory=dict)
    char_devices: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()
    removed: tuple[str, ...] = ()
    driver: KitSpec | None = None
    driver_libdir: str = "usr/lib/x86_64-linux-gnu"
    driver_binaries: bool = True
    ldconfig: bool = True
    gpus: tuple[FakeGpu, ...] = ()
    expected: Mapping[str, str] = field(default_factory=dict)
    evidence: Mapping[str, str] = field(default_factory=dict)
    summary: Mapping[str, str] = field(default_factory=dict)
    live_expected: Mapping[str, str] = field(default_factory=dict)
    live_evidence: Mapping[str, str] = field(default_factory=dict)

    # -- composition -------------------------------------------------------------------------------------

    def named(self, name: str, description: str | None = None) -> Scenario:
        return replace(self, name=name, description=self.description if description is None else description)

    def with_files(self, files: Mapping[str, Content], *, mode: int | None = None) -> Scenario:
        """Add or replace files (a file replaces a symlink or device at the same path)."""
        new_files = {**self.files, **files}
        new_modes = dict(self.modes)
        for path in files:
            if mode is None:
                new_modes.pop(path, None)
            else:
                new_modes[path] = mode
        return replace(self, files=new_files, modes=new_modes,
                       symlinks={k: v for k, v in self.symlinks.items() if k not in files},
                       char_devices={k: v for k, v in self.char_devices.items() if k not in files})

    def with_symlinks(self, links: Mapping[str, str]) -> Scenario:
        return replace(self, symlinks={**self.symlinks, **links},
                       files={k: v for k, v in self.files.items() if k not in links},
                       char_devices={k: v for k, v in self.char_devices.items() if k not in links})

    def with_devices(self, devices: Mapping[str, tuple[int, int, int]]) -> Scenario:
        return replace(self, char_devices={**self.char_devices, **devices},
                       files={k: v for k, v in self.files.items() if k not in devices},
                       symlinks={k: v for k, v in self.symlinks.items() if k not in devices})

    def with_dirs(self, *paths: str) -> Scenario:
        return replace(self, dirs=self.dirs | frozenset(paths))

    def with_tree(self, tree: Mapping[str, Any]) -> Scenario:
        """Merge a runtime_fragments ``Tree`` (host path -> File(content, mode) | Link(target))."""
        out = self
        for path, node in tree.items():
            if hasattr(node, "target"):
                out = out.with_symlinks({path: node.target})
            else:
                out = out.with_files({path: node.content}, mode=None if node.mode == 0o644 else node.mode)
        return out

    def without(self, *paths: str) -> Scenario:
        """Remove these paths and everything below them: scenario entries now, kit files after install."""

        def keep(p: str) -> bool:
            return not any(_under(p, prefix) for prefix in paths)

        return replace(
            self,
            files={k: v for k, v in self.files.items() if keep(k)},
            modes={k: v for k, v in self.modes.items() if keep(k)},
            symlinks={k: v for k, v in self.symlinks.items() if keep(k)},
            char_devices={k: v for k, v in self.char_devices.items() if keep(k)},
            dirs=frozenset(d for d in self.dirs if keep(d)),
            removed=tuple(dict.fromkeys((*self.removed, *paths))),
        )

    def with_driver(self, spec: KitSpec | None, *, libdir: str | None = None, binaries: bool | None = None) -> Scenario:
        return replace(self, driver=spec, driver_libdir=libdir or self.driver_libdir,
                       driver_binaries=self.driver_binaries if binaries is None else binaries)

    def expecting(self, statuses: Mapping[str, str], evidence: Mapping[str, str] | None = None,
                  summary: Mapping[str, str] | None = None) -> Scenario:
        """Override expected statuses (and evidence/summary texts) for some check ids; others keep theirs."""
        return replace(self, expected={**self.expected, **statuses}, evidence={**self.evidence, **(evidence or {})},
                       summary={**self.summary, **(summary or {})})

    def owned_by(self, owners: Mapping[str, tuple[int, int]]) -> Scenario:
        """Set (uid, gid) of files or device nodes."""
        return replace(self, owners={**self.owners, **owners})

    def expecting_live(self, statuses: Mapping[str, str], evidence: Mapping[str, str] | None = None) -> Scenario:
        return replace(self, live_expected={**self.live_expected, **statuses},
                       live_evidence={**self.live_evidence, **(evidence or {})})

    def bind_gpus(self, driver: str | None, addresses: Iterable[str] | None = None) -> Scenario:
        """Point the PCI ``driver`` link of these GPUs (all by default) at `driver`, or remove it (None)."""
        wanted = set(addresses) if addresses is not None else {g.sysfs_bus_id for g in self.gpus}
        out = self
        for address in wanted:
            link = f"{pci_device_dir(address)}/driver"
            out = out.without(link) if driver is None else out.with_symlinks(
                {link: f"../../../bus/pci/drivers/{driver}"}).with_dirs(f"/sys/bus/pci/drivers/{driver}")
        return out

    def build(self, root: Path) -> Path:
        """Lay this scenario out at `root` (an absent or empty directory); see :func:`build_into`."""
        return build_into(root, self)

    # -- lookups ------------------------------------------------------------------------------------------

    @property
    def gpu_minors(self) -> list[int]:
        return [g.minor for g in self.gpus]


# -- file formats: one implementation, in gpudoctor.demo.render (the bundled demo hosts use it too) ---------------

WSL1_PROC_VERSION = (
    "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) ) #3996-Microsoft "
    "Thu Jan 01 62:00:00 PST 2022\n"
)


def proc_devices_text(*, nvidia: bool = True, uvm: bool = True, frontend_name: str = "nvidia-frontend") -> str:
    """/proc/devices with the kit's majors (see :func:`gpudoctor.demo.render.proc_devices_text`)."""
    return render.proc_devices_text(nvidia=nvidia, uvm=uvm, frontend_name=frontend_name, majors=kit_majors())


def nvidia_nodes(gpus: Iterable[FakeGpu], *, mode: int = 0o666, uvm: bool = True) -> dict[str, tuple[int, int, int]]:
    """The driver's /dev nodes with the kit's majors (see :func:`gpudoctor.demo.render.nvidia_nodes`)."""
    return render.nvidia_nodes(gpus, mode=mode, uvm=uvm, majors=kit_majors())


def _scenario(fragment: render.Fragment) -> Scenario:
    return Scenario(name="", files=fragment.files, symlinks=fragment.links, dirs=fragment.dirs)


def pci_device(address: str, *, vendor: int, device: int, class_code: int, driver: str | None,
               subsystem: int = 0x16C1) -> Scenario:
    """A fragment with one PCI function (see :func:`gpudoctor.demo.render.pci_device`)."""
    return _scenario(render.pci_device(address, vendor=vendor, device=device, class_code=class_code, driver=driver,
                                       subsystem=subsystem))


def merge(base: Scenario, *others: Scenario) -> Scenario:
    """`base` with the files, links, devices and dirs of `others` added (later wins)."""
    out = base
    for o in others:
        out = out.with_files(o.files).with_symlinks(o.symlinks).with_devices(o.char_devices).with_dirs(*o.dirs)
        for path, mode in o.modes.items():
            out = replace(out, modes={**out.modes, path: mode})
    return out


# -- the healthy host -----------------------------------------------------------------------------------------

ALL_HW_CHECKS = (
    "driver.gpus", "driver.nouveau", "driver.loaded", "driver.installed", "driver.version_match",
    "modules.nvidia", "modules.nvidia_uvm", "modules.nvidia_modeset", "modules.nvidia_drm",
    "devices.control", "devices.gpus", "devices.uvm", "devices.permissions",
)


def base_system(name: str = "base") -> Scenario:
    """A machine with no NVIDIA anything: Ubuntu 22.04, a host bridge and a BMC's ASPEED VGA on the PCI bus."""
    files = render.base_system_files(os_release=UBUNTU_OS_RELEASE, proc_version=PROC_VERSION, kernel=KERNEL_RELEASE)
    sc = Scenario(name=name, files=files, dirs=frozenset({"/tmp", "/lib/modules/" + KERNEL_RELEASE + "/kernel"}))
    return merge(sc, *(_scenario(f) for f in render.base_pci_devices()))


def healthy_host(
    gpus: int | Iterable[FakeGpu] = 2,
    *,
    driver_version: str = "550.54.14",
    open_module: bool = False,
    runtime: bool = True,
    name: str | None = None,
) -> Scenario:
    """A healthy GPU host: GPUs bound to nvidia, all four modules live, every node 0666, the driver installed.

    With `runtime`, the toolkit/Docker/containerd/CDI/cgroup fragment from runtime_fragments is included, so
    every check passes offline. `gpus` is a count (2 gives the kit's default H100 pair) or FakeGpus.
    """
    gpu_list = (DEFAULT_GPUS if gpus == 2 else fake_gpus(gpus)) if isinstance(gpus, int) else tuple(gpus)
    n = len(gpu_list)
    sc = base_system(name or f"healthy_{n}gpu")
    files = render.kernel_driver_files(kernel=KERNEL_RELEASE, driver_version=driver_version, gpus=gpu_list,
                                       open_module=open_module, ko_content=b"\x7fELF stand-in for nvidia.ko\n",
                                       majors=kit_majors())
    sc = sc.with_files(files).with_devices(nvidia_nodes(gpu_list))
    sc = merge(sc, *(_scenario(render.gpu_pci_device(g)) for g in gpu_list))
    sc = replace(sc, gpus=gpu_list, driver=KitSpec(driver_version=driver_version, gpus=gpu_list),
                 description=f"healthy host with {n} GPU(s), driver {driver_version}")
    if runtime:
        from tests.scenarios.runtime_fragments import healthy_runtime_fragment

        sc = sc.with_tree(healthy_runtime_fragment(driver_version=driver_version, gpu_minors=[g.minor for g in gpu_list],
                                                   uuids=[g.uuid for g in gpu_list]))
    return sc.expecting({cid: "pass" for cid in ALL_HW_CHECKS})


def driver_unloaded(sc: Scenario) -> Scenario:
    """`sc` with the NVIDIA kernel driver not loaded: no /proc/driver/nvidia, no modules, no nodes, GPUs unbound.

    The userspace driver (the kit) stays installed.
    """
    return (
        sc.without("/proc/driver/nvidia", *[f"/sys/module/{m}" for m in NVIDIA_MODULES], "/dev/nvidiactl",
                   "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                   *[f"/dev/nvidia{g.minor}" for g in sc.gpus], "/dev/nvidia-caps")
        .with_files({"/proc/modules": proc_modules_text(()), "/proc/devices": proc_devices_text(nvidia=False, uvm=False)})
        .bind_gpus(None)
    )


# -- building ---------------------------------------------------------------------------------------------------


def _remove(real: Path) -> None:
    if real.is_symlink() or real.is_file() or (real.exists() and not real.is_dir()):
        real.unlink()
    elif real.is_dir():
        shutil.rmtree(real)


def _target(hr: HostRoot, host_path: str) -> Path:
    """Where to create `host_path`: parents resolved inside the root (and created), the leaf replaced."""
    parent = host_path.rsplit("/", 1)[0] or "/"
    hr.path(parent).mkdir(parents=True, exist_ok=True)
    target = hr.path(host_path, follow=False)
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            raise ScenarioBuildError(f"{host_path} is a directory in the fake root; cannot put a file there")
        target.unlink()
    return target


def build_host(tmp_path: Path, scenario: Scenario) -> Path:
    """Lay `scenario` out under ``tmp_path/<name>`` and return that root. Device nodes need root (mknod)."""
    return build_into(Path(tmp_path) / (scenario.name or "host"), scenario)


def build_into(root: Path, scenario: Scenario) -> Path:
    """Lay `scenario` out at `root` (created, or an existing empty directory) and return its absolute path."""
    root = Path(os.path.abspath(root))
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScenarioBuildError(f"{root} is not an empty directory; build each scenario into a fresh one")
    root.mkdir(parents=True, exist_ok=True)
    hr = HostRoot(root)
    for d in sorted(scenario.dirs):
        hr.path(d).mkdir(parents=True, exist_ok=True)
    if scenario.driver is not None:
        install_driver_root(root, scenario.driver, libdir=scenario.driver_libdir, binaries=scenario.driver_binaries,
                            device_nodes=False, ldconfig=True)
    elif scenario.ldconfig:
        _ldconfig(root)
    for path in scenario.removed:
        _remove(hr.path(path, follow=False))
    for path, content in scenario.files.items():
        target = _target(hr, path)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        target.chmod(scenario.modes.get(path, 0o644))
    for path, link in scenario.symlinks.items():
        os.symlink(link, _target(hr, path))
    for path, (major, minor, mode) in scenario.char_devices.items():
        target = _target(hr, path)
        try:
            os.mknod(target, stat.S_IFCHR | mode, os.makedev(major, minor))
        except PermissionError as exc:
            raise ScenarioBuildError(f"mknod {path} (c {major}:{minor}) needs root (CAP_MKNOD): {exc}") from exc
        os.chmod(target, mode)  # mknod's mode passes through the umask
    for path, (uid, gid) in scenario.owners.items():
        os.lchown(hr.path(path, follow=False), uid, gid)
    return root


def _ldconfig(root: Path) -> None:
    """A real /etc/ld.so.cache for a root without a driver (what every glibc host has)."""
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig is None:
        raise ScenarioBuildError("ldconfig was not found; it writes the fake root's /etc/ld.so.cache")
    (root / "etc").mkdir(exist_ok=True)
    proc = subprocess.run([ldconfig, "-r", str(root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ScenarioBuildError(f"ldconfig -r {root} failed ({proc.returncode}): {proc.stderr.strip()}")


def fake_dev_env(root: Path) -> dict[str, str]:
    """Environment that points the kit's fake NVML at the scenario's /dev (for live runs)."""
    return {"GPUDOCTOR_FAKE_DEV_ROOT": str(HostRoot(root).path("/dev"))}
