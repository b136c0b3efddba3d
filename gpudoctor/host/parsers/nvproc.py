"""Parsers for the NVIDIA kernel driver's procfs files under ``/proc/driver/nvidia``.

Formats follow the driver's ``nv-procfs.c`` (open-gpu-kernel-modules): ``version`` is two lines
(``NVRM version: %s`` and ``GCC version:  %s``); ``gpus/<bus>/information`` is ``Key: \\t value`` lines;
``params`` is ``Name: %u`` lines followed by ``Name: "%s"`` string parameters.
"""

from __future__ import annotations

import re
from typing import Literal

from gpudoctor.host.parsers._util import fail, lines, reject_nul, snippet
from gpudoctor.record import Record

__all__ = [
    "DriverVersion",
    "GpuProcInfo",
    "device_file_gid",
    "device_file_mode",
    "device_file_uid",
    "modify_device_files",
    "parse_driver_version",
    "parse_gpu_information",
    "parse_params",
]


class DriverVersion(Record):
    """The loaded kernel module's identity, from ``/proc/driver/nvidia/version``."""

    version: str
    """Driver version, e.g. ``550.54.14`` (two-part versions like ``550.120`` also exist)."""
    flavor: Literal["proprietary", "open"]
    arch: str | None
    """``x86_64``, ``aarch64``, ``ppc64le``, ``x86`` (very old drivers), or None when not stated."""
    build_date: str | None
    """As printed, e.g. ``Thu Feb 22 01:44:30 UTC 2024``."""
    gcc: str | None
    """The ``GCC version:`` line's text, e.g. ``gcc version 12.2.0 (Debian 12.2.0-14)``."""
    raw_first_line: str

    @property
    def major(self) -> int:
        """The driver branch, e.g. 550."""
        return int(self.version.split(".", 1)[0])


_NVRM_PREFIX = "NVRM version:"
# "NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 ..." (proprietary) and
# "NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  (builder@host)  Thu Feb 22 ..." (open).
# Very old drivers say "NVIDIA Linux x86 Kernel Module".
_NVRM_RE = re.compile(
    r"^NVIDIA\s+(?:UNIX|Linux)\s+"
    r"(?:(?P<open>Open)\s+Kernel\s+Module(?:\s+for\s+(?P<open_arch>\S+))?"
    r"|(?:(?P<arch>\S+)\s+)?Kernel\s+Module)"
    r"\s+(?P<version>\d+(?:\.\d+){1,3})(?=\s|$)(?P<rest>.*)$"
)
_DATE_RE = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d(?: [A-Za-z+\-0-9]+)? \d{4}")


def parse_driver_version(text: str, *, path: str = "/proc/driver/nvidia/version") -> DriverVersion:
    """Parse ``/proc/driver/nvidia/version``. Raises ParseError when there is no recognisable NVRM line."""
    reject_nul(text, path)
    nvrm: str | None = None
    nvrm_lineno = 0
    gcc: str | None = None
    for lineno, line in enumerate(lines(text), start=1):
        stripped = line.strip()
        if nvrm is None and stripped.startswith(_NVRM_PREFIX):
            nvrm = stripped
            nvrm_lineno = lineno
        elif gcc is None and stripped.startswith("GCC version:"):
            gcc = stripped[len("GCC version:") :].strip() or None
    if nvrm is None:
        if not text.strip():
            fail(path, "file is empty; expected an 'NVRM version:' line")
        fail(
            path, f"no 'NVRM version:' line (first line is {snippet(lines(text)[0] if lines(text) else '')})"
        )
    ident = nvrm[len(_NVRM_PREFIX) :].strip()
    m = _NVRM_RE.match(ident)
    if m is None:
        fail(path, f"cannot find the driver version in {snippet(nvrm)}", line=nvrm_lineno)
    date = _DATE_RE.search(m.group("rest"))
    return DriverVersion(
        version=m.group("version"),
        flavor="open" if m.group("open") else "proprietary",
        arch=m.group("open_arch") or m.group("arch"),
        build_date=date.group(0) if date else None,
        gcc=gcc,
        raw_first_line=nvrm,
    )


class GpuProcInfo(Record):
    """One GPU as the driver describes it in ``/proc/driver/nvidia/gpus/<bus>/information``."""

    model: str
    irq: int | None
    uuid: str | None
    video_bios: str | None
    bus_type: str | None
    bus_location: str | None
    device_minor: int | None
    """The N of ``/dev/nvidiaN``."""
    gpu_excluded: bool | None
    """From ``GPU Excluded:`` (``Blacklisted:`` on older drivers); None when the driver does not print it."""
    firmware: str | None
    """GSP firmware version (``GPU Firmware:``), printed only when the GPU runs GSP firmware."""
    raw: dict[str, str]


# Values the driver prints when it cannot read a field (e.g. a GPU that fell off the bus).
_UNKNOWN = {"Unknown", "N/A", ""}


def _is_unknown(value: str) -> bool:
    # "??", and "??.??.??.??.??" for a VBIOS version the driver could not read.
    return value in _UNKNOWN or set(value) <= {"?", ".", ":"}


_YES_NO = {"yes": True, "no": False}


def _key_values(text: str, path: str) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key:
            fail(path, f"expected 'Key: value', got {snippet(line)}", line=lineno)
        out.append((lineno, key, value.strip()))
    return out


def _opt_int(value: str, *, key: str, path: str, lineno: int) -> int | None:
    if _is_unknown(value):
        return None
    if not re.fullmatch(r"-?\d{1,12}", value):
        fail(path, f"{key}: expected a number, got {snippet(value)}", line=lineno)
    return int(value)


def parse_gpu_information(text: str, *, path: str) -> GpuProcInfo:
    """Parse one GPU's ``information`` file. Raises ParseError if it has no ``Model:`` line or a bad field."""
    reject_nul(text, path)
    raw: dict[str, str] = {}
    where: dict[str, int] = {}
    for lineno, key, value in _key_values(text, path):
        raw[key] = value
        where[key] = lineno
    if "Model" not in raw:
        fail(path, "no 'Model:' line; this is not an NVIDIA GPU information file")

    def opt(key: str) -> str | None:
        value = raw.get(key)
        return None if value is None or _is_unknown(value) else value

    def opt_int(key: str) -> int | None:
        value = raw.get(key)
        return None if value is None else _opt_int(value, key=key, path=path, lineno=where[key])

    excluded: bool | None = None
    for key in ("GPU Excluded", "Blacklisted"):
        if key in raw:
            flag = _YES_NO.get(raw[key].lower())
            if flag is None and not _is_unknown(raw[key]):
                fail(path, f"{key}: expected Yes or No, got {snippet(raw[key])}", line=where[key])
            excluded = flag
            break
    return GpuProcInfo(
        model=raw["Model"],
        irq=opt_int("IRQ"),
        uuid=opt("GPU UUID"),
        video_bios=opt("Video BIOS"),
        # Drivers before PCIe naming printed "Card Type:".
        bus_type=opt("Bus Type") or opt("Card Type"),
        bus_location=opt("Bus Location"),
        device_minor=opt_int("Device Minor"),
        gpu_excluded=excluded,
        firmware=opt("GPU Firmware"),
        raw=raw,
    )


_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_params(text: str, *, path: str = "/proc/driver/nvidia/params") -> dict[str, str]:
    """Parse ``/proc/driver/nvidia/params`` into ``{name: value}``; string values lose their quotes.

    Raises ParseError for a line that is not ``Name: value``.
    """
    reject_nul(text, path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _PARAM_NAME.fullmatch(name):
            fail(path, f"expected 'Name: value', got {snippet(line)}", line=lineno)
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        out[name] = value
    return out


def _param_int(params: dict[str, str], name: str) -> int | None:
    value = params.get(name, "").strip()
    # The driver prints these with %u: plain decimal.
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


def device_file_mode(params: dict[str, str]) -> int | None:
    """``DeviceFileMode`` as a mode number (the file holds decimal: 438 == 0o666); None if absent or bad."""
    return _param_int(params, "DeviceFileMode")


def device_file_uid(params: dict[str, str]) -> int | None:
    """``DeviceFileUID``: owner the driver gives the ``/dev/nvidia*`` nodes it creates."""
    return _param_int(params, "DeviceFileUID")


def device_file_gid(params: dict[str, str]) -> int | None:
    """``DeviceFileGID``: group the driver gives the ``/dev/nvidia*`` nodes it creates."""
    return _param_int(params, "DeviceFileGID")


def modify_device_files(params: dict[str, str]) -> bool | None:
    """``ModifyDeviceFiles``: whether the driver (via nvidia-modprobe) creates and fixes device nodes."""
    value = _param_int(params, "ModifyDeviceFiles")
    return None if value is None else value != 0
