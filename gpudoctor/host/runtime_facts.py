"""Host facts for the toolkit, runtime, CDI and cgroup checks, each computed once per HostFacts.

Every accessor reads through ``facts.root`` (so ``--root`` and snapshots work) and never raises for what
it finds on disk: a missing file is ``exists=False``, a file that does not parse carries its ParseError.
Paths in these facts are host paths, as a report shows them.
"""

from __future__ import annotations

import os
import re
import shlex
import stat as stat_mod
from collections.abc import Callable, Iterable
from typing import Any

from gpudoctor.host import model as m
from gpudoctor.host.errors import ParseError
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.parsers.cdi import CdiSpec, all_host_paths, driver_versions_mentioned, parse_cdi_spec
from gpudoctor.host.parsers.configs import (
    ContainerdConfig,
    ToolkitConfig,
    find_duplicate_json_keys,
    parse_daemon_json,
    parse_toolkit_config,
    read_containerd_config,
)
from gpudoctor.host.parsers.procfs import cgroup_version, flag_values, parse_mountinfo
from gpudoctor.record import Record

# The PATH that systemd gives services (dockerd, containerd): where they look up runtimes and the hook.
PATH_DIRS: tuple[str, ...] = m.BIN_DIRS

DAEMON_JSON = "/etc/docker/daemon.json"
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
CDI_DIRS: tuple[str, ...] = ("/etc/cdi", "/var/run/cdi")
CDI_SUFFIXES = (".yaml", ".yml", ".json")

# containerd configs by flavour. k3s and RKE2 regenerate theirs from config.toml.tmpl at every start.
CONTAINERD_CONFIGS: tuple[tuple[str, str], ...] = (
    ("containerd", "/etc/containerd/config.toml"),
    ("k3s", "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"),
    ("rke2", "/var/lib/rancher/rke2/agent/etc/containerd/config.toml"),
)
CONTAINERD_DROPIN_DIRS: tuple[str, ...] = ("/etc/containerd/conf.d", "/etc/containerd/config.d")

DOCKER_UNIT_FILES: tuple[str, ...] = (
    "/lib/systemd/system/docker.service",
    "/usr/lib/systemd/system/docker.service",
    "/etc/systemd/system/docker.service",
)
DOCKER_DROPIN_DIR = "/etc/systemd/system/docker.service.d"


# -- shared with the host model -----------------------------------------------------------------------------

# One implementation of each, in gpudoctor.host.model; the names stay importable from here.
Loaded = m.FileFact
"""A config file as found: absent, unreadable, unparseable (`error`), or parsed (`value`)."""
Binary = m.Binary
usable_path = m.usable_path
os_family = m.os_family


def find_binary(facts: HostFacts, name: str) -> Binary:
    """Look `name` up like a service's PATH would: an absolute name as is, a bare name on PATH_DIRS."""
    return m.lookup_binary(facts, name, PATH_DIRS)


def install_command(facts: HostFacts, *packages: str) -> str:
    """The package-manager command for this distro (apt when unknown, the toolkit's most common home)."""
    family, _ = os_family(facts)
    pkgs = " ".join(packages)
    if family == "rhel":
        return f"sudo dnf install -y {pkgs}"
    if family == "suse":
        return f"sudo zypper install -y {pkgs}"
    return f"sudo apt-get install -y {pkgs}"


# -- toolkit config ----------------------------------------------------------------------------------------


def toolkit_config(facts: HostFacts) -> Loaded[ToolkitConfig]:
    return facts.memo(
        "rt:toolkit_config",
        lambda: m.load_text(facts, TOOLKIT_CONFIG, lambda text: parse_toolkit_config(text, path=TOOLKIT_CONFIG)),
    )


def toolkit_mode(facts: HostFacts) -> str:
    """The nvidia-container-runtime mode in effect ("auto" when unset or the config is unusable)."""
    cfg = toolkit_config(facts).value
    return (cfg.mode if cfg is not None and cfg.mode else "auto").strip()


# -- Docker ------------------------------------------------------------------------------------------------


class DockerUnit(Record):
    """What dockerd's systemd unit passes on its command line (the last ExecStart that applies)."""

    source: str | None = None
    exec_start: str | None = None
    args: tuple[str, ...] = ()

    def values(self, *flags: str) -> list[str]:
        """Values of a repeatable flag given as ``--flag=v``, ``--flag v`` or ``-f v``."""
        return flag_values(self.args, *flags)

    def has(self, *flags: str) -> bool:
        return any(a == f or a.startswith(f + "=") for a in self.args for f in flags)


def _exec_start_lines(text: str) -> list[str]:
    """ExecStart values in a unit file, with backslash continuations joined."""
    out: list[str] = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ExecStart":
            out.append(value.strip())
    return out


def docker_unit(facts: HostFacts) -> DockerUnit:
    def compute() -> DockerUnit:
        root = facts.root
        files = [p for p in DOCKER_UNIT_FILES if root.is_file(p)][-1:]
        files += [f"{DOCKER_DROPIN_DIR}/{n}" for n in root.listdir(DOCKER_DROPIN_DIR) if n.endswith(".conf")]
        current: tuple[str, str] | None = None
        for path in files:
            text = root.try_read_text(path) or ""
            for value in _exec_start_lines(text):
                # An empty ExecStart= resets the list; drop-ins use it before setting their own.
                current = (path, value) if value else None
        if current is None:
            return DockerUnit()
        path, value = current
        try:
            args = tuple(shlex.split(value.lstrip("-@!+:")))
        except ValueError:
            args = tuple(value.split())
        return DockerUnit(source=path, exec_start=value, args=args)

    return facts.memo("rt:docker_unit", compute)


def daemon_json_path(facts: HostFacts) -> str:
    """/etc/docker/daemon.json, unless dockerd's unit passes --config-file."""
    given = docker_unit(facts).values("--config-file")
    return given[-1] if given and given[-1].startswith("/") and usable_path(given[-1]) else DAEMON_JSON


def daemon_json(facts: HostFacts) -> Loaded[dict[str, Any]]:
    def compute() -> Loaded[dict[str, Any]]:
        path = daemon_json_path(facts)
        # Bytes, so the parser applies dockerd's own encoding rules (BOM, invalid UTF-8).
        return m.load_bytes(facts, path, lambda data: parse_daemon_json(data, path=path))

    return facts.memo("rt:daemon_json", compute)


def daemon_json_duplicates(facts: HostFacts) -> list[str]:
    """Keys daemon.json sets twice in one object (dockerd silently keeps the last); [] when unusable."""

    def compute() -> list[str]:
        loaded = daemon_json(facts)
        if not loaded.ok:
            return []
        data = facts.root.try_read_bytes(loaded.path)
        try:
            return find_duplicate_json_keys(data, path=loaded.path) if data else []
        except ParseError:
            return []

    return facts.memo("rt:daemon_json_dups", compute)


def docker_installed(facts: HostFacts) -> Binary:
    return find_binary(facts, "dockerd")


class DockerRuntime(Record):
    """A runtime dockerd knows: from daemon.json `runtimes` or an ``--add-runtime`` flag in its unit."""

    name: str
    path: str | None
    source: str
    binary: Binary | None = None


def docker_runtimes(facts: HostFacts) -> list[DockerRuntime]:
    """The runtimes registered in daemon.json and dockerd's unit (entries that are not objects are skipped)."""

    def compute() -> list[DockerRuntime]:
        out: list[DockerRuntime] = []
        loaded = daemon_json(facts)
        cfg = loaded.value if isinstance(loaded.value, dict) else {}
        runtimes = cfg.get("runtimes")
        if isinstance(runtimes, dict):
            for name, entry in runtimes.items():
                if not isinstance(entry, dict):
                    continue
                path = entry.get("path")
                path = path if isinstance(path, str) and path else None
                out.append(
                    DockerRuntime(
                        name=str(name),
                        path=path,
                        source=f"{loaded.path}: runtimes.{name}",
                        binary=find_binary(facts, path) if path else None,
                    )
                )
        unit = docker_unit(facts)
        for spec in unit.values("--add-runtime"):
            name, sep, path = spec.partition("=")
            if sep and name and path:
                out.append(
                    DockerRuntime(
                        name=name, path=path, source=f"{unit.source}: --add-runtime {spec}",
                        binary=find_binary(facts, path),
                    )
                )
        return out

    return facts.memo("rt:docker_runtimes", compute)


GPUDOCTOR_RUNTIME_BASENAME = "gpudoctor-runtime"


def gpudoctor_route(facts: HostFacts) -> DockerRuntime | None:
    """gpudoctor's own runtime when Docker has it registered and its binary exists."""
    for rt in docker_runtimes(facts):
        base = os.path.basename(rt.path or "")
        if (rt.name == "gpudoctor" or base == GPUDOCTOR_RUNTIME_BASENAME) and rt.binary and rt.binary.ok:
            return rt
    return None


def systemd_booted(facts: HostFacts) -> bool:
    """systemd is PID 1 (sd_booted(3): /run/systemd/system exists)."""
    return facts.memo("rt:systemd", lambda: facts.root.is_dir("/run/systemd/system"))


class CgroupDriver(Record):
    driver: str  # "systemd" | "cgroupfs"
    evidence: str


def docker_cgroup_driver(facts: HostFacts, cgroup: str | None) -> CgroupDriver:
    """Docker's cgroup driver: exec-opts in daemon.json or the unit, else Docker's default for the host."""
    loaded = daemon_json(facts)
    cfg = loaded.value if isinstance(loaded.value, dict) else {}
    opts = cfg.get("exec-opts")
    sources: list[tuple[str, str]] = []
    if isinstance(opts, list):
        sources += [(f"{loaded.path}: exec-opts", str(o)) for o in opts]
    unit = docker_unit(facts)
    sources += [(f"{unit.source}: --exec-opt", o) for o in unit.values("--exec-opt")]
    for where, opt in reversed(sources):
        key, sep, value = opt.partition("=")
        if sep and key.strip() == "native.cgroupdriver":
            return CgroupDriver(driver=value.strip(), evidence=f"{where} sets {opt.strip()}")
    if cgroup == "v2" and systemd_booted(facts):
        return CgroupDriver(
            driver="systemd",
            evidence="no native.cgroupdriver in exec-opts: Docker 20.10+ defaults to the systemd driver on "
            "cgroup v2 with systemd as init (/run/systemd/system exists)",
        )
    return CgroupDriver(driver="cgroupfs", evidence="no native.cgroupdriver in exec-opts: Docker uses cgroupfs here")


# -- containerd --------------------------------------------------------------------------------------------


class ContainerdSetup(Record):
    """One containerd config in use: the stock one, or the one k3s/RKE2 generate."""

    flavor: str
    loaded: Loaded[ContainerdConfig]
    template: str | None = None  # k3s/RKE2: config.toml.tmpl when present


def _read_containerd(facts: HostFacts, path: str) -> Loaded[ContainerdConfig]:
    root = facts.root
    if not root.exists(path):
        return Loaded(path=path, exists=False)
    if not root.is_file(path):
        return Loaded(path=path, exists=True, unreadable="is not a regular file")
    try:
        cfg = read_containerd_config(root, path)
    except ParseError as exc:
        return Loaded(path=path, exists=True, error=exc)
    except OSError as exc:
        return Loaded(path=path, exists=True, unreadable=exc.strerror or str(exc))
    if cfg is None:
        # The file exists but could not be read (read_containerd_config says None for "no bytes").
        return Loaded(path=path, exists=True, unreadable="cannot be read")
    return Loaded(path=path, exists=True, value=cfg)


def containerd_setups(facts: HostFacts) -> list[ContainerdSetup]:
    """The containerd configs present on the host (none when containerd is not configured)."""

    def compute() -> list[ContainerdSetup]:
        out: list[ContainerdSetup] = []
        for flavor, path in CONTAINERD_CONFIGS:
            loaded = _read_containerd(facts, path)
            tmpl = path + ".tmpl"
            has_tmpl = flavor != "containerd" and facts.root.is_file(tmpl)
            if loaded.exists:
                out.append(ContainerdSetup(flavor=flavor, loaded=loaded, template=tmpl if has_tmpl else None))
        return out

    return facts.memo("rt:containerd", compute)


def containerd_dropins(facts: HostFacts) -> list[str]:
    """*.toml drop-ins in the directories `nvidia-ctk runtime configure` writes to (imported or not)."""

    def compute() -> list[str]:
        out: list[str] = []
        for d in CONTAINERD_DROPIN_DIRS:
            out += [f"{d}/{n}" for n in facts.root.listdir(d) if n.endswith(".toml")]
        return out

    return facts.memo("rt:containerd_dropins", compute)


def containerd_cdi_on(cfg: ContainerdConfig) -> bool:
    """enable_cdi as containerd applies it: unset means off in 1.x (config v1/v2), on in 2.x (config v3)."""
    return bool(cfg.cdi_enabled) if cfg.cdi_enabled is not None else cfg.version >= 3


def cri_disabled(cfg: ContainerdConfig) -> str | None:
    """The disabled_plugins entry that turns the CRI plugin off (Docker's containerd.io default), if any."""
    disabled = cfg.raw.get("disabled_plugins") if isinstance(cfg.raw, dict) else None
    if isinstance(disabled, list):
        for name in disabled:
            if name in ("cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"):
                return str(name)
    return None


# -- cgroups -----------------------------------------------------------------------------------------------


class CgroupLayout(Record):
    version: str | None  # "v1" | "v2" | "hybrid" | None
    evidence: str


def cgroup_layout(facts: HostFacts) -> CgroupLayout:
    """cgroup v1/v2/hybrid from mountinfo (/proc/self, then /proc/1), else from /sys/fs/cgroup."""

    def compute() -> CgroupLayout:
        root = facts.root
        notes: list[str] = []
        for path in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
            text = root.try_read_text(path)
            if text is None:
                continue
            try:
                version = cgroup_version(parse_mountinfo(text, path=path))
            except ParseError as exc:
                notes.append(str(exc))
                continue
            if version != "none":
                return CgroupLayout(version=version, evidence=f"{path}: {_cgroup_words(version)}")
            notes.append(f"{path}: no cgroup or cgroup2 mount listed")
        prefix = "; ".join(notes) + "; " if notes else ""
        if root.is_file("/sys/fs/cgroup/cgroup.controllers"):
            return CgroupLayout(version="v2", evidence=f"{prefix}/sys/fs/cgroup/cgroup.controllers exists: cgroup v2")
        if root.is_dir("/sys/fs/cgroup/devices"):
            return CgroupLayout(version="v1", evidence=f"{prefix}/sys/fs/cgroup/devices exists: cgroup v1")
        return CgroupLayout(
            version=None,
            evidence=prefix + "no readable /proc/self/mountinfo or /proc/1/mountinfo, and no /sys/fs/cgroup",
        )

    return facts.memo("rt:cgroup", compute)


def _cgroup_words(version: str) -> str:
    return {
        "v2": "cgroup2 mounted at /sys/fs/cgroup (cgroup v2, unified)",
        "v1": "cgroup v1 controllers mounted under /sys/fs/cgroup",
        "hybrid": "cgroup v1 controllers plus cgroup2 at /sys/fs/cgroup/unified (hybrid)",
    }.get(version, version)


# -- driver version and CDI --------------------------------------------------------------------------------


class HostDriver(Record):
    """The driver versions this host has: the loaded kernel module's and the userspace library's.

    They differ only on a half-upgraded host (driver.version_match reports that); a CDI spec written for
    either one is not stale.
    """

    kernel: str | None
    library: str | None
    library_path: str | None = None

    @property
    def versions(self) -> frozenset[str]:
        return frozenset(v for v in (self.kernel, self.library) if v)

    @property
    def version(self) -> str | None:
        return self.kernel or self.library

    def describe(self) -> str:
        """Evidence: which version, from which file(s)."""
        parts: list[str] = []
        if self.kernel:
            parts.append(f"{self.kernel} ({NVIDIA_VERSION})")
        if self.library and (self.library != self.kernel or not self.kernel):
            parts.append(f"libraries {self.library} ({self.library_path})")
        elif self.library and self.library_path:
            parts[-1] = f"{self.kernel} ({NVIDIA_VERSION}; {self.library_path})"
        return " and ".join(parts) if parts else f"no driver version ({NVIDIA_VERSION} not present, no versioned libnvidia-ml)"


NVIDIA_VERSION = m.NVIDIA_VERSION


def host_driver(facts: HostFacts) -> HostDriver:
    """The kernel module's version (from /proc) and the userspace driver's (libnvidia-ml.so.1's target)."""

    def compute() -> HostDriver:
        kernel = m.nvidia_version(facts).value
        lib = m.find_library(facts, m.NVML_SONAME)
        return HostDriver(
            kernel=kernel.version if kernel is not None else None,
            library=lib.version,
            library_path=lib.real_path,
        )

    return facts.memo("rt:host_driver", compute)


def driver_gpu_minors(facts: HostFacts) -> frozenset[int]:
    """Device minors of the GPUs the loaded driver knows (/proc/driver/nvidia/gpus/*/information)."""
    return frozenset(g.info.device_minor for g in m.proc_gpus(facts) if g.info and g.info.device_minor is not None)


# Nodes the driver's modules create: when one is missing, the device layer is broken, not a CDI spec.
DRIVER_CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


def cdi_dirs(facts: HostFacts) -> list[str]:
    """The standard CDI spec dirs plus any that Docker, containerd or the toolkit are configured with."""
    extra: list[str] = []
    dj = daemon_json(facts).value
    if isinstance(dj, dict) and isinstance(dj.get("cdi-spec-dirs"), list):
        extra += [d for d in dj["cdi-spec-dirs"] if isinstance(d, str)]
    for setup in containerd_setups(facts):
        if setup.loaded.value is not None:
            extra += list(setup.loaded.value.cdi_spec_dirs or ())
    tk = toolkit_config(facts).value
    if tk is not None and tk.cdi_spec_dirs:
        extra += list(tk.cdi_spec_dirs)
    out: list[str] = []
    for d in (*CDI_DIRS, *extra):
        if d.startswith("/") and usable_path(d) and d not in out:
            out.append(d)
    return out


class CdiFile(Record):
    """One spec file compared with this host.

    `other_versions` and `missing_paths` make it stale (regenerating it is the cure). `missing_nodes` are
    device nodes the loaded driver should have created but that are missing: the device layer's problem,
    not the spec's.
    """

    loaded: Loaded[CdiSpec]
    is_nvidia: bool = False
    other_versions: tuple[str, ...] = ()
    missing_paths: tuple[str, ...] = ()
    missing_nodes: tuple[str, ...] = ()
    device_nodes: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        return bool(self.other_versions or self.missing_paths)


def _spec_kind(spec: CdiSpec) -> str:
    return str(getattr(spec, "kind", "") or "")


def is_nvidia_kind(kind: str) -> bool:
    vendor = kind.split("/", 1)[0]
    return vendor == "nvidia.com" or vendor.endswith(".nvidia.com")


def cdi_files(facts: HostFacts) -> list[CdiFile]:
    """Every spec file in the CDI dirs, parsed and compared with this host (same real file counted once)."""

    def compute() -> list[CdiFile]:
        root = facts.root
        seen: set[str] = set()
        out: list[CdiFile] = []
        for d in cdi_dirs(facts):
            for name in root.listdir(d):
                path = f"{d}/{name}"
                if not name.endswith(CDI_SUFFIXES) or root.is_dir(path):
                    continue
                try:
                    real = root.resolve(path)
                except OSError:
                    real = path
                if real in seen:
                    continue
                seen.add(real)
                loaded = m.load_text(facts, path, _cdi_parser(path))
                out.append(_assess(facts, loaded))
        return out

    return facts.memo("rt:cdi_files", compute)


def _cdi_parser(path: str) -> Callable[[str], CdiSpec]:
    return lambda text: parse_cdi_spec(text, path=path)


_GPU_NODE = re.compile(r"/dev/nvidia(\d+)")


def _assess(facts: HostFacts, file: Loaded[CdiSpec]) -> CdiFile:
    spec = file.value
    if spec is None:
        return CdiFile(loaded=file)
    nvidia = is_nvidia_kind(_spec_kind(spec))
    driver = host_driver(facts)
    have = driver.versions
    versions = sorted(driver_versions_mentioned(spec)) if nvidia else []
    other = tuple(v for v in versions if have and v not in have)
    paths = sorted(set(all_host_paths(spec)))
    absent = [p for p in paths if not (p.startswith("/") and usable_path(p) and facts.root.exists(p))]
    minors = driver_gpu_minors(facts)
    nodes_missing: list[str] = []
    stale_missing: list[str] = []
    loaded = driver.kernel is not None
    for p in absent:
        gpu = _GPU_NODE.fullmatch(p)
        # Without a loaded driver no GPU node can exist, so a missing one says nothing about the spec.
        known_gpu = gpu is not None and (not loaded or int(gpu.group(1)) in minors)
        if nvidia and (p in DRIVER_CONTROL_NODES or known_gpu):
            nodes_missing.append(p)
        else:
            stale_missing.append(p)
    nodes = tuple(p for p in paths if p.startswith("/dev/"))
    return CdiFile(loaded=file, is_nvidia=nvidia, other_versions=other, missing_paths=tuple(stale_missing),
                   missing_nodes=tuple(nodes_missing), device_nodes=nodes)


def host_gpu_nodes(facts: HostFacts) -> list[str]:
    """/dev/nvidiaN nodes present on the host."""
    return facts.memo(
        "rt:gpu_nodes",
        lambda: [f"/dev/{n}" for n in facts.root.listdir("/dev") if re.fullmatch(r"nvidia\d+", n)],
    )


def dev_char_links(facts: HostFacts, nodes: Iterable[str]) -> tuple[list[str], list[str]]:
    """For device nodes, (those with a /dev/char/MAJ:MIN link, those without). Non-char nodes are ignored."""
    have: list[str] = []
    lack: list[str] = []
    for node in nodes:
        st = facts.root.stat(node)
        if st is None or not stat_mod.S_ISCHR(st.st_mode):
            continue
        link = f"/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        (have if facts.root.lstat(link) is not None else lack).append(node)
    return have, lack
