"""/proc/driver/nvidia parsers: version, per-GPU information, params."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.nvproc import (
    DriverVersion,
    GpuProcInfo,
    device_file_gid,
    device_file_mode,
    device_file_uid,
    modify_device_files,
    parse_driver_version,
    parse_gpu_information,
    parse_params,
)
from tests.parsers.fuzzlib import FUZZ, mutated_text, parse_or_error, sample

VERSION_PATH = "/proc/driver/nvidia/version"
INFO_PATH = "/proc/driver/nvidia/gpus/0000:3b:00.0/information"
PARAMS_PATH = "/proc/driver/nvidia/params"

VERSION_SAMPLES = {
    "nvidia-version-535-proprietary.txt": (
        "535.104.05",
        "proprietary",
        "x86_64",
        "Sat Aug 19 01:15:15 UTC 2023",
    ),
    "nvidia-version-550-proprietary.txt": (
        "550.54.14",
        "proprietary",
        "x86_64",
        "Thu Feb 22 01:44:30 UTC 2024",
    ),
    "nvidia-version-550-open.txt": ("550.54.14", "open", "x86_64", "Thu Feb 22 01:25:25 UTC 2024"),
    "nvidia-version-550-open-aarch64.txt": ("550.144.03", "open", "aarch64", "Mon Dec 30 17:33:24 UTC 2024"),
    "nvidia-version-550-aarch64.txt": ("550.120", "proprietary", "aarch64", "Fri Sep 13 11:01:10 UTC 2024"),
    "nvidia-version-590-open.txt": ("590.48.01", "open", "x86_64", "Mon Dec  8 13:05:00 UTC 2025"),
    "nvidia-version-180-x86.txt": ("180.44", "proprietary", "x86", "Mon Mar 23 14:59:10 PST 2009"),
}


@pytest.mark.parametrize("name", sorted(VERSION_SAMPLES))
def test_driver_version_samples(name: str) -> None:
    version, flavor, arch, date = VERSION_SAMPLES[name]
    text = sample(name)
    got = parse_driver_version(text)
    assert (got.version, got.flavor, got.arch, got.build_date) == (version, flavor, arch, date)
    assert got.raw_first_line == text.split("\n")[0].strip()
    assert got.gcc is not None and got.gcc.startswith("gcc version ")
    assert got.major == int(version.split(".")[0])


def test_driver_version_without_gcc_line() -> None:
    got = parse_driver_version(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01  Fri Oct 22 23:01:16 UTC 2021\n"
    )
    assert got.version == "470.82.01" and got.gcc is None and got.flavor == "proprietary"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("GCC version:  gcc version 12.2.0\n", "no 'NVRM version:' line"),
        ("NVRM version: something else entirely\n", "cannot find the driver version"),
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  \n", "cannot find the driver version"),
        ("\x00\x00\x00", "NUL"),
    ],
)
def test_driver_version_errors_name_the_file(text: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_driver_version(text, path="/host/proc/driver/nvidia/version")
    assert str(info.value).startswith("/host/proc/driver/nvidia/version")
    assert needle in str(info.value)


@pytest.mark.parametrize("name", ["gpu-information-rtx3090.txt", "gpu-information-a10g.txt"])
def test_gpu_information_current_format(name: str) -> None:
    got = parse_gpu_information(sample(name), path=INFO_PATH)
    assert got.model.startswith("NVIDIA ")
    assert got.uuid is not None and got.uuid.startswith("GPU-")
    assert got.gpu_excluded is False
    assert got.bus_type in ("PCI", "PCIe")
    assert got.raw["DMA Size"].endswith("bits")


def test_gpu_information_fields() -> None:
    got = parse_gpu_information(sample("gpu-information-rtx3090.txt"), path=INFO_PATH)
    assert got == GpuProcInfo(
        model="NVIDIA GeForce RTX 3090",
        irq=77,
        uuid="GPU-eaf23aa1-4d3d-596c-da66-b86b0e5db584",
        video_bios="94.02.26.40.81",
        bus_type="PCI",
        bus_location="0000:01:00.0",
        device_minor=0,
        gpu_excluded=False,
        firmware="590.48.01",
        raw=got.raw,
    )
    assert len(got.raw) == 11


def test_gpu_information_old_driver_blacklisted_field() -> None:
    got = parse_gpu_information(sample("gpu-information-k80.txt"), path=INFO_PATH)
    assert got.model == "Tesla K80" and got.device_minor == 0 and got.gpu_excluded is False
    assert got.firmware is None


def test_gpu_information_excluded_and_unknown_bios() -> None:
    got = parse_gpu_information(sample("gpu-information-h100-excluded.txt"), path=INFO_PATH)
    assert got.gpu_excluded is True
    assert got.video_bios is None  # "??.??.??.??.??" is how the driver says it could not read it
    assert got.device_minor == 2 and got.bus_location == "0000:3b:00.0"


def test_gpu_information_lost_gpu_question_marks() -> None:
    text = "Model: \t\t Unknown\nIRQ:   \t\t ??\nDevice Minor: \t ??\n"
    got = parse_gpu_information(text, path=INFO_PATH)
    assert got.irq is None and got.device_minor is None and got.uuid is None


@pytest.mark.parametrize(
    ("text", "needle", "line"),
    [
        ("IRQ: 5\n", "no 'Model:' line", None),
        ("Model: \t\t X\nDevice Minor: \t zero\n", "Device Minor: expected a number", 2),
        ("Model: \t\t X\nGPU Excluded:\t Maybe\n", "expected Yes or No", 2),
        ("Model: \t\t X\njust words\n", "expected 'Key: value'", 2),
    ],
)
def test_gpu_information_errors(text: str, needle: str, line: int | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_gpu_information(text, path=INFO_PATH)
    assert info.value.path == INFO_PATH and info.value.line == line
    assert needle in str(info.value)


def test_params_real_580_file() -> None:
    params = parse_params(sample("nvidia-params-580.txt"))
    assert len(params) == 42
    assert params["ModifyDeviceFiles"] == "1"
    assert params["TemporaryFilePath"] == "/var/tmp"  # quotes removed
    assert params["RegistryDwords"] == ""
    assert device_file_mode(params) == 438 == 0o666
    assert device_file_uid(params) == 0 and device_file_gid(params) == 0
    assert modify_device_files(params) is True


def test_params_helpers_on_missing_or_bad_values() -> None:
    assert device_file_mode({}) is None
    assert device_file_mode({"DeviceFileMode": "0x1b6"}) is None
    assert device_file_gid({"DeviceFileGID": "44"}) == 44
    assert modify_device_files({"ModifyDeviceFiles": "0"}) is False


def test_params_error_line() -> None:
    with pytest.raises(ParseError) as info:
        parse_params("ModifyDeviceFiles: 1\nthis is not a param\n")
    assert info.value.line == 2 and info.value.path == PARAMS_PATH


# ---------------------------------------------------------------------------------------------- fuzz


@FUZZ
@given(st.text())
def test_fuzz_driver_version_text(text: str) -> None:
    parse_or_error(parse_driver_version, text, path=VERSION_PATH, expected=DriverVersion)


@FUZZ
@given(st.sampled_from(sorted(VERSION_SAMPLES)).flatmap(lambda n: mutated_text(sample(n))))
def test_fuzz_driver_version_mutations(text: str) -> None:
    got = parse_or_error(parse_driver_version, text, path=VERSION_PATH, expected=DriverVersion)
    if got is not None:
        assert got.version[0].isdigit() and got.major >= 0


@FUZZ
@given(st.text())
def test_fuzz_gpu_information_text(text: str) -> None:
    parse_or_error(parse_gpu_information, text, path=INFO_PATH, expected=GpuProcInfo)


@FUZZ
@given(
    st.sampled_from(
        ["gpu-information-rtx3090.txt", "gpu-information-k80.txt", "gpu-information-h100-excluded.txt"]
    ).flatmap(lambda n: mutated_text(sample(n)))
)
def test_fuzz_gpu_information_mutations(text: str) -> None:
    parse_or_error(parse_gpu_information, text, path=INFO_PATH, expected=GpuProcInfo)


@FUZZ
@given(st.one_of(st.text(), mutated_text(sample("nvidia-params-580.txt"))))
def test_fuzz_params(text: str) -> None:
    params = parse_or_error(parse_params, text, path=PARAMS_PATH, expected=dict)
    if params is not None:
        for helper in (device_file_mode, device_file_uid, device_file_gid):
            value = helper(params)
            assert value is None or value >= 0
