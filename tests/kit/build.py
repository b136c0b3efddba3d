"""Compiling the kit with gcc, cached on disk so each scenario is built once (across pytest processes too).

Two caches under ``<repo>/.gpudoctor-build/kit/`` (or ``$GPUDOCTOR_KIT_BUILD_DIR``):

- ``nvml-<hash>/libnvidia-ml.so.<VER>``: one per KitSpec (GPUs, versions and failure switches are compiled
  in), keyed by the spec and the C source;
- ``tools-<hash>/``: nvidia-smi, the stand-in binaries and the stub libraries, keyed by the driver version
  and their sources, so scenarios that differ only in GPUs share them.

A build happens in a private temporary directory under an exclusive file lock and is published with an
atomic rename, so concurrent test processes never see a half-built directory.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.kit.spec import KIT_BINARIES, KIT_LIBRARIES, FakeGpu, KitSpec

SRC_DIR = Path(__file__).resolve().parent / "src"
REPO_ROOT = Path(__file__).resolve().parents[2]
CFLAGS = ("-std=gnu11", "-O1", "-g0", "-Wall", "-Wextra")


class KitBuildError(RuntimeError):
    """gcc (or the toolchain) failed; the message has the command and its output."""


@dataclass(frozen=True, kw_only=True)
class BuiltKit:
    """Paths of one built kit. Files in the cache are shared: copy them, never modify them in place.

    `stub_libs` maps each stub library's soname to its file (named with the full driver version).
    `binaries` maps nvidia-smi and the stand-in tools to their executables.
    """

    spec: KitSpec
    libnvml: Path
    nvidia_smi: Path
    stub_libs: dict[str, Path]
    binaries: dict[str, Path]


def build_root() -> Path:
    """Where built kits are cached."""
    override = os.environ.get("GPUDOCTOR_KIT_BUILD_DIR")
    return Path(override) if override else REPO_ROOT / ".gpudoctor-build" / "kit"


@functools.lru_cache(maxsize=1)
def _compiler_id() -> str:
    """The compiler's version line, part of every cache key (a new gcc rebuilds everything)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise KitBuildError("gcc is not installed; the simulated driver kit is built from C sources with gcc")
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0] if out else gcc


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:20]


def _run_parallel(commands: Sequence[Sequence[str]], *, cwd: Path) -> None:
    """Run the compiler commands, a few at a time; raise KitBuildError naming the first that failed."""
    width = max(1, min(len(commands), os.cpu_count() or 1))
    pending = list(commands)
    running: list[tuple[Sequence[str], subprocess.Popen[str]]] = []
    failure: str | None = None
    while pending or running:
        while pending and len(running) < width and failure is None:
            cmd = pending.pop(0)
            running.append(
                (
                    cmd,
                    subprocess.Popen(
                        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                    ),
                )
            )
        if not running:
            break
        cmd, proc = running.pop(0)
        output, _ = proc.communicate()
        if proc.returncode != 0 and failure is None:
            failure = f"command failed ({proc.returncode}): {' '.join(cmd)}\n{output}"
    if failure is not None:
        raise KitBuildError(failure)


def _cached_build(name: str, populate: Callable[[Path], None]) -> Path:
    """Return ``<build_root>/<name>``, running populate(tmpdir) first if it does not exist yet."""
    root = build_root()
    final = root / name
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # another process built it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            populate(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; containers running as non-root read from here
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _c_string(value: str) -> str:
    if any(not (" " <= ch <= "~") for ch in value):
        raise ValueError(f"only printable ASCII can be compiled into the kit: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _gpu_initializer(gpu: FakeGpu) -> str:
    mig = -1 if gpu.mig_mode is None else int(gpu.mig_mode)
    fan = -1 if gpu.fan_speed_percent is None else gpu.fan_speed_percent
    ecc = -1 if gpu.ecc_errors is None else gpu.ecc_errors
    fields = [
        _c_string(gpu.name),
        _c_string(gpu.uuid),
        f"0x{gpu.pci_domain:X}u",
        f"0x{gpu.pci_bus:X}u",
        f"0x{gpu.pci_device:X}u",
        f"{gpu.minor}u",
        f"{gpu.memory_total_mib}ULL",
        f"{gpu.memory_used_mib}ULL",
        f"0x{gpu.pci_device_id:X}u",
        f"0x{gpu.pci_subsystem_id:X}u",
        str(int(gpu.persistence_mode)),
        str(mig),
        str(fan),
        f"{gpu.temperature_c}u",
        f"{gpu.power_draw_w}u",
        f"{gpu.power_limit_w}u",
        f"{ecc}LL",
    ]
    return "{" + ", ".join(fields) + "}"


def nvml_config_header(spec: KitSpec) -> str:
    """The kit_config.h that fake_nvml.c is compiled with."""
    gpus = ", ".join(_gpu_initializer(g) for g in spec.gpus)
    return (
        "/* Generated by tests/kit/build.py for one KitSpec. */\n"
        f"#define KIT_DRIVER_VERSION {_c_string(spec.driver_version)}\n"
        f"#define KIT_NVML_VERSION {_c_string(spec.nvml_version)}\n"
        f"#define KIT_CUDA_VERSION {spec.cuda_version}\n"
        f"#define KIT_RM_MISMATCH {int(spec.rm_mismatch)}\n"
        f"#define KIT_HANG_ON_INIT {int(spec.hang_on_init)}\n"
        f"#define KIT_CRASH_ON_INIT {int(spec.crash_on_init)}\n"
        f"#define KIT_GPUS {{{gpus}}}\n"
    )


def _shared_lib_cmd(source: Path, out: Path, soname: str, *extra: str) -> list[str]:
    return [
        "gcc",
        *CFLAGS,
        "-shared",
        "-fPIC",
        "-fvisibility=hidden",
        f"-Wl,-soname,{soname}",
        "-Wl,--no-undefined",
        *extra,
        "-o",
        str(out),
        str(source),
    ]


def _build_nvml(spec: KitSpec) -> Path:
    source = SRC_DIR / "fake_nvml.c"
    header = nvml_config_header(spec)
    key = _digest(_compiler_id(), " ".join(CFLAGS), source.read_bytes(), header)
    filename = f"libnvidia-ml.so.{spec.driver_version}"

    def populate(tmp: Path) -> None:
        (tmp / "kit_config.h").write_text(header)
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2, sort_keys=True) + "\n")
        _run_parallel([_shared_lib_cmd(source, tmp / filename, "libnvidia-ml.so.1", f"-I{tmp}")], cwd=tmp)

    return _cached_build(f"nvml-{key}", populate) / filename


def _build_tools(version: str) -> Path:
    smi, stub, tool = SRC_DIR / "fake_nvidia_smi.c", SRC_DIR / "stub_lib.c", SRC_DIR / "fake_tool.c"
    libs = [(lib.soname_for(version), lib.filename_for(version)) for lib in KIT_LIBRARIES]
    key = _digest(
        _compiler_id(),
        " ".join(CFLAGS),
        version,
        smi.read_bytes(),
        stub.read_bytes(),
        tool.read_bytes(),
        json.dumps(libs),
        json.dumps(sorted(KIT_BINARIES)),
    )
    version_define = f"-DKIT_DRIVER_VERSION={_c_string(version)}"

    def populate(tmp: Path) -> None:
        (tmp / "lib").mkdir()
        cmds: list[list[str]] = [
            # Like the real tool: glibc only, dlopen by soname, no rpath. --as-needed keeps libdl out where
            # glibc (>= 2.34) has dlopen itself.
            [
                "gcc",
                *CFLAGS,
                f"-DKIT_SMI_VERSION={_c_string(version)}",
                "-o",
                str(tmp / "nvidia-smi"),
                str(smi),
                "-Wl,--as-needed",
                "-ldl",
            ],
        ]
        for name in KIT_BINARIES:
            if name != "nvidia-smi":
                cmds.append(
                    [
                        "gcc",
                        *CFLAGS,
                        version_define,
                        f"-DKIT_TOOL_NAME={_c_string(name)}",
                        "-o",
                        str(tmp / name),
                        str(tool),
                    ]
                )
        for soname, filename in libs:
            cmds.append(
                _shared_lib_cmd(
                    stub,
                    tmp / "lib" / filename,
                    soname,
                    version_define,
                    f"-DKIT_STUB_SONAME={_c_string(soname)}",
                )
            )
        _run_parallel(cmds, cwd=tmp)

    return _cached_build(f"tools-{key}", populate)


_BUILT: dict[KitSpec, BuiltKit] = {}


def build_kit(spec: KitSpec) -> BuiltKit:
    """Build (or reuse) the kit for `spec`. Raises KitBuildError when gcc fails."""
    built = _BUILT.get(spec)
    if built is not None and built.libnvml.is_file():
        return built
    libnvml = _build_nvml(spec)
    tools = _build_tools(spec.driver_version)
    built = BuiltKit(
        spec=spec,
        libnvml=libnvml,
        nvidia_smi=tools / "nvidia-smi",
        stub_libs={
            lib.soname_for(spec.driver_version): tools / "lib" / lib.filename_for(spec.driver_version)
            for lib in KIT_LIBRARIES
        },
        binaries={name: tools / name for name in KIT_BINARIES},
    )
    _BUILT[spec] = built
    return built
