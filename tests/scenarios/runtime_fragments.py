"""File fragments for the toolkit / runtime / CDI / cgroup layers of a fake host.

For the scenario builder (tests/scenarios/builder.py): a healthy host should include
``healthy_runtime_fragment(driver_version=..., gpu_minors=..., lib_dir=...)`` — the NVIDIA toolkit installed
and configured for this distro, Docker with the nvidia runtime registered and CDI on, containerd with a v2
config registering nvidia, a fresh CDI spec matching the driver, and a cgroup v2 mountinfo. With it every
toolkit.* and runtime.* check passes offline (the live ones skip).

A fragment is a ``Tree``: host path -> ``File`` | ``Link``. Trees merge with ``|`` (later wins);
``write_tree(root, tree)`` puts one on disk. Each broken variant differs from the healthy one in exactly
the file the failure mode is about, so a test can say which file and value decides the finding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DRIVER_VERSION = "550.54.14"
LIB_DIR = "/usr/lib/x86_64-linux-gnu"

TOOLKIT_BINARIES = (
    "nvidia-container-runtime-hook",
    "nvidia-container-cli",
    "nvidia-ctk",
    "nvidia-container-runtime",
    "nvidia-cdi-hook",
)

DAEMON_JSON = "/etc/docker/daemon.json"
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CDI_SPEC = "/etc/cdi/nvidia.yaml"


@dataclass(frozen=True, slots=True)
class File:
    """A regular file. `mode` 0o755 makes an executable (a shell stub that exits 0)."""

    content: str | bytes
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class Link:
    """A symlink; `target` is written as given (absolute targets resolve inside the fake root)."""

    target: str


Tree = dict[str, File | Link]

STUB = "#!/bin/sh\nexit 0\n"


def executable(content: str = STUB) -> File:
    return File(content, 0o755)


def write_tree(root: str | os.PathLike[str], tree: Mapping[str, File | Link]) -> None:
    """Write `tree` under `root`. Host paths are absolute; parents are created, and symlinks among them are
    resolved inside the root (so a fake root's ``/sbin -> /usr/sbin`` never leads to the real /usr/sbin)."""
    from gpudoctor.host.root import HostRoot

    hr = HostRoot(root)
    for host_path, node in tree.items():
        parent = host_path.rsplit("/", 1)[0] or "/"
        hr.path(parent).mkdir(parents=True, exist_ok=True)
        dest = hr.path(host_path, follow=False)
        if dest.is_symlink() or dest.exists():
            if dest.is_dir() and not dest.is_symlink():
                raise IsADirectoryError(f"{host_path} is a directory in the fake root")
            dest.unlink()
        if isinstance(node, Link):
            dest.symlink_to(node.target)
            continue
        data = node.content.encode() if isinstance(node.content, str) else node.content
        dest.write_bytes(data)
        dest.chmod(node.mode)


def merge(*trees: Mapping[str, File | Link]) -> Tree:
    out: Tree = {}
    for tree in trees:
        out.update(tree)
    return out


# -- toolkit ----------------------------------------------------------------------------------------------


def toolkit_binaries(names: Iterable[str] = TOOLKIT_BINARIES, *, bin_dir: str = "/usr/bin") -> Tree:
    """The toolkit's executables as shell stubs in `bin_dir`."""
    return {f"{bin_dir}/{name}": executable() for name in names}


def toolkit_config_text(
    *,
    ldconfig: str = "@/sbin/ldconfig.real",
    mode: str = "auto",
    no_cgroups: bool | None = None,
    debug: str | None = None,
    runtimes: Iterable[str] = ("runc", "crun"),
) -> str:
    """A config.toml shaped like `nvidia-ctk config default` writes it."""
    cli = [f'ldconfig = "{ldconfig}"', "load-kmods = true", "environment = []"]
    cli.append(f"no-cgroups = {str(no_cgroups).lower()}" if no_cgroups is not None else "#no-cgroups = false")
    cli.append(f'debug = "{debug}"' if debug else '#debug = "/var/log/nvidia-container-toolkit.log"')
    rts = ", ".join(f'"{r}"' for r in runtimes)
    return (
        "#accept-nvidia-visible-devices-as-volume-mounts = false\n"
        "#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n"
        "disable-require = false\n"
        'supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"\n\n'
        "[nvidia-container-cli]\n" + "\n".join(cli) + "\n\n"
        "[nvidia-container-runtime]\n"
        'log-level = "info"\n'
        f'mode = "{mode}"\n'
        f"runtimes = [{rts}]\n\n"
        "[nvidia-container-runtime.modes.cdi]\n"
        'annotation-prefixes = ["cdi.k8s.io/"]\n'
        'default-kind = "nvidia.com/gpu"\n'
        'spec-dirs = ["/etc/cdi", "/var/run/cdi"]\n\n'
        "[nvidia-container-runtime-hook]\n"
        'path = "nvidia-container-runtime-hook"\n'
        "skip-mode-detection = false\n\n"
        "[nvidia-ctk]\n"
        'path = "nvidia-ctk"\n'
    )


def toolkit_config(**kwargs: Any) -> Tree:
    return {TOOLKIT_CONFIG: File(toolkit_config_text(**kwargs))}


def ldconfig_debian() -> Tree:
    """Debian/Ubuntu: /sbin/ldconfig is a wrapper script around /sbin/ldconfig.real."""
    return {"/sbin/ldconfig": executable(), "/sbin/ldconfig.real": executable()}


def ldconfig_rpm() -> Tree:
    """Fedora/RHEL/SUSE: only /sbin/ldconfig, no .real."""
    return {"/sbin/ldconfig": executable()}


def os_release(distro: str = "debian") -> Tree:
    texts = {
        "debian": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
        "ID=debian\n",
        "ubuntu": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n'
        "ID_LIKE=debian\n",
        "fedora": 'NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\nPRETTY_NAME="Fedora Linux 40"\n',
        "rhel": 'NAME="Rocky Linux"\nVERSION_ID="9.3"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
        'PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n',
    }
    return {"/etc/os-release": File(texts[distro])}


def healthy_toolkit() -> Tree:
    """Toolkit binaries + a default config whose ldconfig exists (Debian layout)."""
    return merge(toolkit_binaries(), toolkit_config(), ldconfig_debian())


def rpm_toolkit_with_debian_ldconfig() -> Tree:
    """The classic D1: a config carrying `@/sbin/ldconfig.real` on a distro that only has /sbin/ldconfig."""
    return merge(toolkit_binaries(), toolkit_config(ldconfig="@/sbin/ldconfig.real"), ldconfig_rpm(),
                 os_release("fedora"))


# -- Docker -----------------------------------------------------------------------------------------------


def docker_engine(*, bin_dir: str = "/usr/bin") -> Tree:
    """dockerd, containerd and runc binaries (stubs), as docker-ce / docker.io install them."""
    return {f"{bin_dir}/{n}": executable() for n in ("dockerd", "docker", "containerd", "runc")}


def daemon_json(config: Mapping[str, Any]) -> Tree:
    return {DAEMON_JSON: File(json.dumps(config, indent=4) + "\n")}


NVIDIA_RUNTIME = {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}


def daemon_json_nvidia(*, cdi: bool = True, default: str | None = None, **extra: Any) -> Tree:
    """What `nvidia-ctk runtime configure --runtime=docker [--cdi.enabled]` writes."""
    cfg: dict[str, Any] = {"runtimes": dict(NVIDIA_RUNTIME)}
    if cdi:
        cfg["features"] = {"cdi": True}
    if default:
        cfg["default-runtime"] = default
    cfg.update(extra)
    return daemon_json(cfg)


# Line 4, column 5: the second runtime after a missing comma, as a hand merge leaves it.
DAEMON_JSON_INVALID = (
    "{\n"
    '    "runtimes": {\n'
    '        "nvidia": {"path": "nvidia-container-runtime", "args": []}\n'
    '        "gpudoctor": {"path": "/usr/local/bin/gpudoctor-runtime"}\n'
    "    }\n"
    "}\n"
)


def daemon_json_invalid() -> Tree:
    return {DAEMON_JSON: File(DAEMON_JSON_INVALID)}


def daemon_json_missing_runtime_binary() -> Tree:
    """Registers a runtime whose binary was removed (partial uninstall)."""
    return daemon_json({"runtimes": {"nvidia-legacy": {"path": "/usr/bin/nvidia-container-runtime.legacy"}}})


def daemon_json_default_unregistered() -> Tree:
    return daemon_json({"default-runtime": "nvidia"})


def daemon_json_gpudoctor(path: str = "/usr/local/bin/gpudoctor-runtime") -> Tree:
    return merge(daemon_json({"runtimes": {"gpudoctor": {"path": path}}}), {path: executable()})


# -- containerd -------------------------------------------------------------------------------------------


def _toml_runtime(prefix: str, name: str, *, binary: str | None, systemd: bool | None,
                  runtime_type: str | None = "io.containerd.runc.v2") -> str:
    lines = [f"[{prefix}.containerd.runtimes.{name}]"]
    if runtime_type is not None:
        lines.append(f'  runtime_type = "{runtime_type}"')
    lines.append(f"[{prefix}.containerd.runtimes.{name}.options]")
    if binary is not None:
        lines.append(f'  BinaryName = "{binary}"')
    if systemd is not None:
        lines.append(f"  SystemdCgroup = {str(systemd).lower()}")
    return "\n".join(lines) + "\n"


CRI_PLUGIN = {1: "plugins.cri", 2: 'plugins."io.containerd.grpc.v1.cri"', 3: 'plugins."io.containerd.cri.v1.runtime"'}


def containerd_config_text(
    *,
    version: int = 2,
    nvidia: bool = True,
    nvidia_binary: str = "/usr/bin/nvidia-container-runtime",
    runc_systemd: bool = True,
    nvidia_systemd: bool | None = True,
    nvidia_runtime_type: str | None = "io.containerd.runc.v2",
    default_runtime: str | None = None,
    enable_cdi: bool = False,
    imports: Iterable[str] = (),
) -> str:
    """A containerd config.toml of the given schema version with runc (and optionally nvidia)."""
    prefix = CRI_PLUGIN[version]
    head = "" if version == 1 else f"version = {version}\n"
    imps = list(imports)
    if imps:
        head += "imports = [" + ", ".join(json.dumps(i) for i in imps) + "]\n"
    body = f"\n[{prefix}]\n"
    if enable_cdi:
        body += "  enable_cdi = true\n"
    body += f"[{prefix}.containerd]\n"
    if default_runtime:
        body += f'  default_runtime_name = "{default_runtime}"\n'
    body += _toml_runtime(prefix, "runc", binary=None, systemd=runc_systemd)
    if nvidia:
        body += _toml_runtime(prefix, "nvidia", binary=nvidia_binary, systemd=nvidia_systemd,
                              runtime_type=nvidia_runtime_type)
    return head + body


def containerd_config(path: str = CONTAINERD_CONFIG, **kwargs: Any) -> Tree:
    return {path: File(containerd_config_text(**kwargs))}


def containerd_v3_with_dropin(*, dropin_dir: str = "/etc/containerd/conf.d", imported: bool = True) -> Tree:
    """containerd 2.x: version 3 main file without nvidia; the nvidia runtime lives in a drop-in.

    With ``imported=False`` the main file imports another directory, so the drop-in is never read
    (toolkit issue #1404: config.d vs conf.d).
    """
    main_imports = [f"{dropin_dir}/*.toml"] if imported else ["/etc/containerd/config.d/*.toml"]
    main = containerd_config_text(version=3, nvidia=False, imports=main_imports)
    dropin = "version = 3\n" + _toml_runtime(CRI_PLUGIN[3], "nvidia", binary="/usr/bin/nvidia-container-runtime",
                                              systemd=True)
    return {CONTAINERD_CONFIG: File(main), f"{dropin_dir}/99-nvidia.toml": File(dropin)}


def containerd_docker_only() -> Tree:
    """The file containerd.io ships for Docker: the CRI plugin is off, so Kubernetes never uses it."""
    return {CONTAINERD_CONFIG: File('#   Copyright 2018-2022 Docker Inc.\n\ndisabled_plugins = ["cri"]\n')}


K3S_CONFIG = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"


def k3s_containerd(*, nvidia: bool, template: bool = False) -> Tree:
    """k3s regenerates this file at start; customisation belongs in config.toml.tmpl."""
    tree: Tree = {
        "/usr/local/bin/k3s": executable(),
        K3S_CONFIG: File(containerd_config_text(version=2, nvidia=nvidia)),
    }
    if template:
        tree[K3S_CONFIG + ".tmpl"] = File("{{ template \"base\" . }}\n")
    return tree


# -- CDI --------------------------------------------------------------------------------------------------


def cdi_spec_data(
    *,
    driver_version: str = DRIVER_VERSION,
    gpu_minors: Iterable[int] = (0, 1),
    uuids: Iterable[str] | None = None,
    lib_dir: str = LIB_DIR,
    libs: Iterable[str] = ("libnvidia-ml.so", "libcuda.so"),
    hook: str = "/usr/bin/nvidia-cdi-hook",
    uvm: bool = True,
) -> dict[str, Any]:
    """A CDI spec shaped like `nvidia-ctk cdi generate` output for these GPUs and this driver."""
    minors = list(gpu_minors)
    ids = list(uuids) if uuids is not None else [f"GPU-{m:08d}-0000-4000-8000-{m:012d}" for m in minors]
    devices: list[dict[str, Any]] = []
    for minor, uuid in zip(minors, ids, strict=True):
        # Separate dicts: a shared one would make yaml.safe_dump emit anchors, which CDI readers refuse.
        for name in (str(minor), uuid):
            devices.append({"name": name, "containerEdits": {"deviceNodes": [{"path": f"/dev/nvidia{minor}"}]}})
    devices.append({"name": "all", "containerEdits": {"deviceNodes": [{"path": f"/dev/nvidia{m}"} for m in minors]}})
    common_nodes = [{"path": "/dev/nvidiactl"}]
    if uvm:
        common_nodes += [{"path": "/dev/nvidia-uvm"}, {"path": "/dev/nvidia-uvm-tools"}]
    lib_files = [f"{lib_dir}/{lib}.{driver_version}" for lib in libs]
    mounts = [
        {"hostPath": p, "containerPath": p, "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"]}
        for p in lib_files
    ]
    links = [f"{lib}.{driver_version}::{lib_dir}/{lib}.1" for lib in libs]
    hooks = [
        {"hookName": "createContainer", "path": hook,
         "args": ["nvidia-cdi-hook", "create-symlinks", *[a for link in links for a in ("--link", link)]]},
        {"hookName": "createContainer", "path": hook,
         "args": ["nvidia-cdi-hook", "enable-cuda-compat", f"--host-driver-version={driver_version}"]},
        {"hookName": "createContainer", "path": hook,
         "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", lib_dir]},
    ]
    return {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": devices,
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": common_nodes,
            "hooks": hooks,
            "mounts": mounts,
        },
    }


def cdi_spec(path: str = CDI_SPEC, **kwargs: Any) -> Tree:
    data = cdi_spec_data(**kwargs)
    text = json.dumps(data, indent=2) if path.endswith(".json") else "---\n" + yaml.safe_dump(data, sort_keys=False)
    return {path: File(text)}


def wsl_cdi_spec(path: str = CDI_SPEC, *, driver_store: str = "/usr/lib/wsl/drivers/nv_dispi.inf_amd64_8f2a",
                 store_files: Iterable[str] = ()) -> Tree:
    """A spec like `nvidia-ctk cdi generate --mode=wsl`: /dev/dxg, /usr/lib/wsl/lib and driver-store files.

    `store_files` are names under `driver_store` (a Windows driver update renames that directory, which is
    what makes a WSL spec stale)."""
    mounts = [{"hostPath": f"/usr/lib/wsl/lib/{n}", "containerPath": f"/usr/lib/wsl/lib/{n}",
               "options": ["ro", "nosuid", "nodev", "bind"]} for n in ("libnvidia-ml.so.1", "nvidia-smi")]
    mounts += [{"hostPath": f"{driver_store}/{n}", "containerPath": f"{driver_store}/{n}",
                "options": ["ro", "nosuid", "nodev", "bind"]} for n in store_files]
    data = {
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": [{"name": "all", "containerEdits": {"deviceNodes": [{"path": "/dev/dxg"}]}}],
        "containerEdits": {
            "mounts": mounts,
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-cdi-hook",
                       "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib/wsl/lib"]}],
        },
    }
    return {path: File("---\n" + yaml.safe_dump(data, sort_keys=False))}


def driver_libs(*, driver_version: str = DRIVER_VERSION, lib_dir: str = LIB_DIR,
                libs: Iterable[str] = ("libnvidia-ml.so", "libcuda.so")) -> Tree:
    """Plain placeholder driver libraries (the scenario builder makes real ELF stubs; these only exist)."""
    tree: Tree = {}
    for lib in libs:
        tree[f"{lib_dir}/{lib}.{driver_version}"] = File(b"\x7fELF placeholder\n")
        tree[f"{lib_dir}/{lib}.1"] = Link(f"{lib}.{driver_version}")
    return tree


def driver_version_file(version: str = DRIVER_VERSION) -> Tree:
    text = (
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Thu Feb 22 01:44:30 UTC 2024\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    return {"/proc/driver/nvidia/version": File(text)}


# -- cgroups ----------------------------------------------------------------------------------------------

_MOUNTINFO_BASE = (
    "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    "28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
)

MOUNTINFO_V2 = _MOUNTINFO_BASE + (
    "26 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)

_V1_CONTROLLERS = ("cpu,cpuacct", "devices", "memory", "pids", "freezer")

MOUNTINFO_V1 = _MOUNTINFO_BASE + (
    "26 22 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755\n"
    "27 26 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup "
    "rw,xattr,name=systemd\n"
    + "".join(
        f"{30 + i} 26 0:{30 + i} / /sys/fs/cgroup/{c} rw,nosuid,nodev,noexec,relatime shared:{10 + i} - cgroup "
        f"cgroup rw,{c}\n"
        for i, c in enumerate(_V1_CONTROLLERS)
    )
)

MOUNTINFO_HYBRID = MOUNTINFO_V1 + (
    "40 26 0:40 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:6 - cgroup2 cgroup2 "
    "rw,nsdelegate\n"
)


def mountinfo(kind: str = "v2", *, systemd: bool = True, path: str = "/proc/self/mountinfo") -> Tree:
    """cgroup layout ("v1", "v2", "hybrid"), and whether systemd is PID 1 (/run/systemd/system)."""
    text = {"v1": MOUNTINFO_V1, "v2": MOUNTINFO_V2, "hybrid": MOUNTINFO_HYBRID}[kind]
    tree: Tree = {path: File(text)}
    if kind == "v2":
        tree["/sys/fs/cgroup/cgroup.controllers"] = File("cpuset cpu io memory hugetlb pids rdma misc\n")
    if systemd:
        tree["/run/systemd/system/.keep"] = File("")
    return tree


# -- the healthy whole ------------------------------------------------------------------------------------


def healthy_runtime_fragment(
    *,
    driver_version: str = DRIVER_VERSION,
    gpu_minors: Iterable[int] = (0, 1),
    uuids: Iterable[str] | None = None,
    lib_dir: str = LIB_DIR,
    libs: Iterable[str] = ("libnvidia-ml.so", "libcuda.so"),
) -> Tree:
    """Everything above the driver for a healthy host. The CDI spec must match the host's driver: pass the
    scenario's driver version, GPU minors/UUIDs and the driver libraries that exist on it."""
    return merge(
        healthy_toolkit(),
        docker_engine(),
        daemon_json_nvidia(cdi=True),
        containerd_config(version=2),
        cdi_spec(driver_version=driver_version, gpu_minors=gpu_minors, uuids=uuids, lib_dir=lib_dir, libs=libs),
        mountinfo("v2", systemd=True),
    )


# -- building a host for tests ----------------------------------------------------------------------------


def minimal_driver_tree(*, driver_version: str = DRIVER_VERSION, gpu_minors: Iterable[int] = (0, 1)) -> Tree:
    """Just enough driver for the runtime checks' own comparisons (version file, libraries, nodes)."""
    nodes = [f"nvidia{m}" for m in gpu_minors] + ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"]
    return merge(driver_version_file(driver_version), driver_libs(driver_version=driver_version),
                 {f"/dev/{n}": File("") for n in nodes})


def build_host(tmp_path: str | os.PathLike[str], *trees: Mapping[str, File | Link], gpus: int = 2) -> Path:
    """Build the scenario builder's healthy host (which includes healthy_runtime_fragment()) with `trees`
    merged over it, under `tmp_path`; returns the host's root directory."""
    from tests.scenarios.builder import build_host as build
    from tests.scenarios.builder import healthy_host

    scenario = healthy_host(gpus, name="host")
    for tree in trees:
        scenario = scenario.with_tree(tree)
    return build(Path(tmp_path), scenario)


def remove(root: str | os.PathLike[str], *host_paths: str) -> None:
    """Delete files from a built host (to break exactly one thing)."""
    for host_path in host_paths:
        (Path(root) / host_path.lstrip("/")).unlink()


def doctor(root: str | os.PathLike[str], *only: str) -> dict[str, Any]:
    """Run the doctor offline on `root` for `only` (ids or groups); {check id: CheckResult} of what was asked."""
    from gpudoctor.checks.base import CheckOptions
    from gpudoctor.doctor import run_doctor
    from gpudoctor.host.facts import HostFacts
    from gpudoctor.host.root import HostRoot

    facts = HostFacts(root=HostRoot(root, offline=True))
    report = run_doctor(facts, options=CheckOptions(offline=True), only=list(only))
    return {r.id: r for r in report.checks}
