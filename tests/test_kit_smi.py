"""The fake nvidia-smi prints the real tool's formats, line for line, and its real error texts."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kit import (
    FAKE_DEV_ROOT_ENV,
    DriverRootInfo,
    FakeGpu,
    KitSpec,
    build_kit,
    fake_gpus,
    install_driver_root,
    install_host_glibc,
)
from tests.kit import expected as exp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need mknod (root)")

CHROOT = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin") or "/usr/sbin/chroot"
ALL_FIELDS = ["index", "uuid", "name", "driver_version", "memory.total", "pci.bus_id"]

# Verbatim output of the real tool (public bug reports and READMEs), with the GPU each one shows.
REAL_550 = (
    "Fri Feb  7 22:02:35 2025" + " " * 7,
    "+-----------------------------------------------------------------------------------------+",
    "| NVIDIA-SMI 550.144.03             Driver Version: 550.144.03     CUDA Version: 12.4     |",
    "|-----------------------------------------+------------------------+----------------------+",
    "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
    "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
    "|                                         |                        |               MIG M. |",
    "|=========================================+========================+======================|",
    "|   0  NVIDIA GeForce RTX 3090        Off |   00000000:98:00.0 Off |                  N/A |",
    "| 40%   46C    P0            107W /  350W |       1MiB /  24576MiB |      0%      Default |",
    "|                                         |                        |                  N/A |",
    "+-----------------------------------------+------------------------+----------------------+",
    " " * 89,
    "+-----------------------------------------------------------------------------------------+",
    "| Processes:                                                                              |",
    "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
    "|        ID   ID                                                               Usage      |",
    "|=========================================================================================|",
    "|  No running processes found                                                             |",
    "+-----------------------------------------------------------------------------------------+",
)
REAL_550_GPU = FakeGpu(
    index=0,
    name="NVIDIA GeForce RTX 3090",
    uuid="GPU-23e41200-1111-2222-3333-444455556666",
    pci_bus_id="98:00.0",
    minor=0,
    memory_total_mib=24576,
    memory_used_mib=1,
    persistence_mode=False,
    mig_mode=None,
    pci_device_id=0x2204,
    fan_speed_percent=40,
    temperature_c=46,
    power_draw_w=107,
    power_limit_w=350,
    ecc_errors=None,
)

# This capture lost its trailing spaces on the way into the report; compare it right-stripped.
REAL_570 = (
    "Sun Feb 22 22:05:49 2026",
    "+-----------------------------------------------------------------------------------------+",
    "| NVIDIA-SMI 570.195.03             Driver Version: 570.195.03     CUDA Version: 12.8     |",
    "|-----------------------------------------+------------------------+----------------------+",
    "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
    "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
    "|                                         |                        |               MIG M. |",
    "|=========================================+========================+======================|",
    "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:8D:00.0 Off |                    0 |",
    "| N/A   28C    P0             68W /  700W |       0MiB /  81559MiB |      0%      Default |",
    "|                                         |                        |             Disabled |",
    "+-----------------------------------------+------------------------+----------------------+",
    "",
    "+-----------------------------------------------------------------------------------------+",
    "| Processes:                                                                              |",
    "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
    "|        ID   ID                                                               Usage      |",
    "|=========================================================================================|",
    "|  No running processes found                                                             |",
    "+-----------------------------------------------------------------------------------------+",
)
REAL_580 = (
    "Tue Feb 24 20:21:18 2026" + " " * 7,
    "+-----------------------------------------------------------------------------------------+",
    "| NVIDIA-SMI 580.105.08             Driver Version: 580.105.08     CUDA Version: 13.0     |",
    "+-----------------------------------------+------------------------+----------------------+",
    "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
    "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
    "|                                         |                        |               MIG M. |",
    "|=========================================+========================+======================|",
    "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:75:00.0 Off |                    0 |",
    "| N/A   28C    P0             67W /  700W |       0MiB /  81559MiB |      0%      Default |",
    "|                                         |                        |             Disabled |",
    "+-----------------------------------------+------------------------+----------------------+",
)


def _h100(bus: str, power: int) -> FakeGpu:
    return FakeGpu(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-8d000000-1111-2222-3333-444455556666",
        pci_bus_id=bus,
        minor=0,
        memory_total_mib=81559,
        temperature_c=28,
        power_draw_w=power,
    )


def _root(tmp_path: Path, spec: KitSpec, **kwargs: object) -> DriverRootInfo:
    return install_driver_root(tmp_path / "root", spec, ldconfig=False, **kwargs)  # type: ignore[arg-type]


def smi(info: DriverRootInfo, *args: str) -> tuple[int, list[str]]:
    """Run the root's nvidia-smi; the loader finds libnvidia-ml.so.1 through LD_LIBRARY_PATH."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        FAKE_DEV_ROOT_ENV: str(info.dev_root),
        "LD_LIBRARY_PATH": str(info.path(info.libdir)),
    }
    proc = subprocess.run(
        [str(info.path("/usr/bin/nvidia-smi")), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stderr == ""
    return proc.returncode, proc.stdout.split("\n")[:-1]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> DriverRootInfo:
    return _root(tmp_path_factory.mktemp("smi"), KitSpec())


def test_list_gpus(healthy: DriverRootInfo) -> None:
    assert smi(healthy, "-L") == (0, exp.smi_list(healthy.spec.gpus))
    assert smi(healthy, "--list-gpus")[1] == [
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13)",
        "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-c4e2a9b7-13f5-4d08-a6c2-7b9e1f3d5a28)",
    ]


@pytest.mark.parametrize(
    ("fields", "fmt"),
    [
        (ALL_FIELDS, "csv"),
        (ALL_FIELDS, "csv,noheader"),
        (ALL_FIELDS, "csv,nounits"),
        (ALL_FIELDS, "csv,noheader,nounits"),
        (["pci.bus_id", "memory.total", "index"], "csv"),
        (["uuid"], "csv,noheader"),
        (["gpu_name", "gpu_uuid", "gpu_bus_id", "count"], "csv"),
        (["persistence_mode", "mig.mode.current"], "csv"),
    ],
)
def test_query_gpu_csv(healthy: DriverRootInfo, fields: list[str], fmt: str) -> None:
    options = fmt.split(",")
    expected = exp.smi_query(
        healthy.spec,
        healthy.spec.gpus,
        fields,
        header="noheader" not in options,
        units="nounits" not in options,
    )
    assert smi(healthy, f"--query-gpu={','.join(fields)}", f"--format={fmt}") == (0, expected)
    # The separate-argument spelling is accepted as well.
    assert smi(healthy, "--query-gpu", ",".join(fields), "--format", fmt) == (0, expected)


def test_query_gpu_header_and_values_match_the_real_tool(healthy: DriverRootInfo) -> None:
    rc, lines = smi(healthy, f"--query-gpu={','.join(ALL_FIELDS)}", "--format=csv")
    assert rc == 0
    assert lines == [
        "index, uuid, name, driver_version, memory.total [MiB], pci.bus_id",
        "0, GPU-5a3f0c1e-8d2b-4c6a-9e71-2f4b8d6c0a13, NVIDIA H100 80GB HBM3, 550.54.14, 81559 MiB, 00000000:3B:00.0",
        "1, GPU-c4e2a9b7-13f5-4d08-a6c2-7b9e1f3d5a28, NVIDIA H100 80GB HBM3, 550.54.14, 81559 MiB, 00000000:86:00.0",
    ]


def test_query_gpu_rejects_unknown_fields_and_missing_format(healthy: DriverRootInfo) -> None:
    assert smi(healthy, "--query-gpu=index,cuda_version", "--format=csv") == (
        2,
        ['Field "cuda_version" is not a valid field to query.', ""],
    )
    assert smi(healthy, "--query-gpu=index") == (2, exp.SMI_INVALID_ARGUMENTS)
    assert smi(healthy, "--query-gpu=index", "--format=json") == (2, exp.SMI_INVALID_ARGUMENTS)
    assert smi(healthy, "--bogus") == (2, exp.SMI_INVALID_ARGUMENTS)


def test_version(healthy: DriverRootInfo) -> None:
    assert smi(healthy, "--version") == (0, exp.smi_version(healthy.spec))
    assert exp.smi_version(healthy.spec) == [
        "NVIDIA-SMI version  : 550.54.14",
        "NVML version        : 550.54",
        "DRIVER version      : 550.54.14",
        "CUDA Version        : 12.4",
    ]


def _summary(info: DriverRootInfo) -> list[str]:
    rc, lines = smi(info)
    assert rc == 0
    assert exp.SMI_DATE_RE.match(lines[0]), lines[0]
    return lines


def test_summary_table(healthy: DriverRootInfo) -> None:
    lines = _summary(healthy)
    assert lines == exp.smi_summary(healthy.spec, healthy.spec.gpus, date=lines[0])
    assert all(len(line) == 91 for line in lines[1:] if line.strip())


@pytest.mark.parametrize(
    ("capture", "spec", "strip"),
    [
        (REAL_550, KitSpec(driver_version="550.144.03", cuda_version=12040, gpus=(REAL_550_GPU,)), False),
        (
            REAL_570,
            KitSpec(driver_version="570.195.03", cuda_version=12080, gpus=(_h100("8D:00.0", 68),)),
            True,
        ),
        (
            REAL_580,
            KitSpec(driver_version="580.105.08", cuda_version=13000, gpus=(_h100("75:00.0", 67),)),
            False,
        ),
    ],
)
def test_summary_reproduces_real_captures(
    tmp_path: Path, capture: tuple[str, ...], spec: KitSpec, strip: bool
) -> None:
    lines = _summary(_root(tmp_path, spec))
    real = list(capture)
    got = lines[1 : len(real)]
    if strip:
        got = [line.rstrip() for line in got]
    assert got == real[1:]
    assert exp.smi_summary(spec, spec.gpus, date=lines[0]) == lines


def test_summary_truncates_long_names_and_shows_each_gpu(tmp_path: Path) -> None:
    gpus = fake_gpus(3, name="NVIDIA RTX 6000 Ada Generation Laptop GPU")
    spec = KitSpec(gpus=(dataclasses.replace(gpus[0], fan_speed_percent=30), *gpus[1:]))
    lines = _summary(_root(tmp_path, spec))
    assert lines == exp.smi_summary(spec, spec.gpus, date=lines[0])
    assert "|   0  NVIDIA RTX 6000 Ada Generat... On  |" in lines[8]


def test_only_gpus_with_device_nodes_are_shown(tmp_path: Path) -> None:
    spec = KitSpec(gpus=fake_gpus(4))
    info = _root(tmp_path, spec, gpu_nodes=[1, 3])
    visible = exp.visible_gpus(spec, [1, 3])
    assert smi(info, "-L") == (0, exp.smi_list(visible))
    assert smi(info, "--query-gpu=index,uuid", "--format=csv,noheader") == (
        0,
        exp.smi_query(spec, visible, ["index", "uuid"], header=False),
    )
    lines = _summary(info)
    assert lines == exp.smi_summary(spec, visible, date=lines[0])


def test_no_gpu_nodes_means_no_devices_were_found(tmp_path: Path) -> None:
    info = _root(tmp_path, KitSpec(), gpu_nodes=[])
    for args in ([], ["-L"], ["--query-gpu=index", "--format=csv"]):
        assert smi(info, *args) == (6, exp.SMI_NO_DEVICES)


def test_driver_not_loaded(tmp_path: Path) -> None:
    info = _root(tmp_path, KitSpec())
    (info.dev_root / "nvidiactl").unlink()
    for args in ([], ["-L"], ["--version"], [f"--query-gpu={','.join(ALL_FIELDS)}", "--format=csv"]):
        assert smi(info, *args) == (9, exp.SMI_DRIVER_NOT_LOADED)


def test_driver_library_version_mismatch(tmp_path: Path) -> None:
    spec = KitSpec(driver_version="565.57.01", cuda_version=12070, rm_mismatch=True)
    info = _root(tmp_path, spec)
    assert smi(info) == (18, exp.smi_mismatch(spec))
    assert smi(info, "-L")[1] == [
        "Failed to initialize NVML: Driver/library version mismatch",
        "NVML library version: 565.57",
    ]


def test_insufficient_permissions(tmp_path: Path) -> None:
    info = _root(tmp_path, KitSpec())
    (info.dev_root / "nvidiactl").chmod(0o000)
    assert smi(info) == (4, exp.SMI_NO_PERMISSION)
    assert smi(info, "-L") == (4, exp.SMI_NO_PERMISSION)


def test_a_gpu_refusing_its_handle_is_reported_and_skipped(tmp_path: Path) -> None:
    info = _root(tmp_path, KitSpec())
    (info.dev_root / "nvidia0").chmod(0o000)
    rc, lines = smi(info, "-L")
    assert rc == 4
    assert lines == [
        "Unable to determine the device handle for GPU0: Insufficient Permissions",
        f"GPU 1: NVIDIA H100 80GB HBM3 (UUID: {info.spec.gpus[1].uuid})",
    ]


def test_links_only_against_glibc_without_rpath() -> None:
    smi_binary = build_kit(KitSpec()).nvidia_smi
    dynamic = subprocess.run(
        ["readelf", "-d", str(smi_binary)], capture_output=True, text=True, check=True
    ).stdout
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic))
    assert needed <= {"libc.so.6", "libdl.so.2"} and "libc.so.6" in needed
    ldd = subprocess.run(["ldd", str(smi_binary)], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in ldd.splitlines() if line.strip()}
    names.discard("linux-vdso.so.1")
    loaders = {n for n in names if "ld-linux" in n}
    assert len(loaders) == 1
    assert names - loaders <= {"libc.so.6", "libdl.so.2"}
    assert "libnvidia-ml.so.1" not in ldd  # loaded at run time with dlopen, like the real tool


def test_in_a_chroot_it_finds_nvml_through_the_roots_own_ld_so_cache(tmp_path: Path) -> None:
    """As in a minimal image: no LD_LIBRARY_PATH, no dev-root override; the root's cache and /dev decide."""
    spec = KitSpec()
    info = install_driver_root(tmp_path / "root", spec)
    install_host_glibc(info.root)
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [CHROOT, str(info.root), "/usr/bin/nvidia-smi", "-L"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout.splitlines()) == (0, exp.smi_list(spec.gpus))
    (info.dev_root / "nvidiactl").unlink()
    proc = subprocess.run(
        [CHROOT, str(info.root), "/usr/bin/nvidia-smi"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout.split("\n")[:-1]) == (9, exp.SMI_DRIVER_NOT_LOADED)


def test_without_the_library_it_prints_the_real_message(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    install_host_glibc(root)
    smi_path = root / "usr/bin/nvidia-smi"
    smi_path.parent.mkdir(parents=True)
    smi_path.write_bytes(build_kit(KitSpec()).nvidia_smi.read_bytes())
    smi_path.chmod(0o755)
    proc = subprocess.run(
        [CHROOT, str(root), "/usr/bin/nvidia-smi", "-L"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout.split("\n")[:-1]) == (12, exp.SMI_NO_LIBRARY)
