"""A kit driver root that also carries the host's /proc view of the driver, for the engine's tests.

tests.kit.install_driver_root lays out libraries, binaries, firmware, nodes and ld.so.cache; discovery also
reads ``/proc/driver/nvidia/version``, ``/proc/devices`` and ``/proc/driver/nvidia/gpus/*/information``
under the dev root, which a real host's kernel provides. write_proc() writes them in the kernel's formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.kit.driver_root import DriverRootInfo, install_driver_root
from tests.kit.spec import KitSpec, kit_majors


def write_proc(root: Path, spec: KitSpec, *, excluded: frozenset[int] = frozenset()) -> None:
    """The driver's procfs files under `root` for `spec` (GPU indices in `excluded` say GPU Excluded: Yes)."""
    proc = root / "proc"
    nvidia = proc / "driver" / "nvidia"
    nvidia.mkdir(parents=True, exist_ok=True)
    (nvidia / "version").write_text(
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {spec.driver_version}  Thu Feb 22 01:44:30 UTC 2024\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    majors = kit_majors()
    (proc / "devices").write_text(
        "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n"
        + "".join(f"{major:3d} {name}\n" for name, major in sorted(majors.items(), key=lambda kv: kv[1]))
        + "\nBlock devices:\n  7 loop\n259 blkext\n"
    )
    for gpu in spec.gpus:
        directory = nvidia / "gpus" / gpu.sysfs_bus_id
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "information").write_text(
            f"Model: \t\t {gpu.name}\n"
            "IRQ:   \t\t 130\n"
            f"GPU UUID: \t {gpu.uuid}\n"
            "Video BIOS: \t 96.00.30.00.01\n"
            "Bus Type: \t PCIe\n"
            "DMA Size: \t 52 bits\n"
            "DMA Mask: \t 0xfffffffffffff\n"
            f"Bus Location: \t {gpu.sysfs_bus_id}\n"
            f"Device Minor: \t {gpu.minor}\n"
            f"GPU Excluded:\t {'Yes' if gpu.index in excluded else 'No'}\n"
        )


def kit_root(root: Path, spec: KitSpec | None = None, **install: Any) -> DriverRootInfo:
    """install_driver_root() plus write_proc(): a complete simulated host driver under `root`."""
    spec = spec or KitSpec()
    info = install_driver_root(root, spec, **install)
    write_proc(root, spec)
    return info


SHARED = Path(__file__).resolve().parents[3] / "shared"
"""The team's shared reference files (../shared next to the repository), as CI has them too."""


def schema_validator(directory: Path, name: str) -> Any:
    """A jsonschema validator for `name` in `directory`, with every other JSON file there resolvable by
    its file name (the CDI and OCI schemas refer to ``defs.json#/...``)."""
    import json

    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4, DRAFT7

    schema = json.loads((directory / name).read_text(encoding="utf-8"))
    draft = DRAFT4 if "draft-04" in schema.get("$schema", "") else DRAFT7
    resources = [
        (
            path.name,
            Resource.from_contents(json.loads(path.read_text(encoding="utf-8")), default_specification=draft),
        )
        for path in sorted(directory.glob("*.json"))
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry)


def docker_like_config(env: list[str] | None = None) -> dict[str, Any]:
    """The shape dockerd 20.10 writes (trimmed): default mounts, a deny-all device rule, process env."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": env if env is not None else ["PATH=/usr/bin:/bin", "HOSTNAME=abc"],
            "cwd": "/",
        },
        "root": {"path": "/var/lib/docker/overlay2/x/merged"},
        "hostname": "abc",
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime"]},
            {
                "destination": "/etc/hostname",
                "type": "bind",
                "source": "/var/lib/docker/c/hostname",
                "options": ["rbind", "rprivate"],
            },
        ],  # fmt: skip
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "mount"}, {"type": "pid"}],
            "maskedPaths": ["/proc/kcore"],
        },
        "x-unknown-field": {"kept": [1, 2.5, None, True]},
    }


# Runs inside the container (busybox sh): nodes with hex major:minor, nvidia-smi -L, write attempts.
CONTAINER_PROBE = r"""
for n in /dev/nvidia*; do [ -e "$n" ] && stat -c 'node %n %t:%T %F' "$n"; done
echo "smi-begin"; nvidia-smi -L 2>&1; echo "smi-end $?"
for f in /usr/bin/nvidia-smi "$(ls /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.*.* 2>/dev/null)"; do
    [ -e "$f" ] || continue
    if echo x >> "$f" 2>/dev/null; then echo "writable $f"; else echo "readonly $f"; fi
done
grep ' /usr/lib/x86_64-linux-gnu/libnvidia-ml.so' /proc/self/mountinfo | sed 's/^/mount /'
"""


def probe_nodes(stdout: str) -> dict[str, tuple[int, int]]:
    """Device nodes CONTAINER_PROBE saw: path -> (major, minor)."""
    out: dict[str, tuple[int, int]] = {}
    for line in stdout.splitlines():
        if line.startswith("node "):
            _, path, numbers, *kind = line.split()
            assert " ".join(kind) == "character special file", line
            major, minor = numbers.split(":")
            out[path] = (int(major, 16), int(minor, 16))
    return out


def probe_smi(stdout: str) -> list[str]:
    """The lines nvidia-smi -L printed in CONTAINER_PROBE."""
    lines = stdout.splitlines()
    return lines[
        lines.index("smi-begin") + 1 : next(i for i, ln in enumerate(lines) if ln.startswith("smi-end"))
    ]
