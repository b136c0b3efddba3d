"""Write an ``/etc/ld.so.cache`` (glibc's new format) for a demo host, so no ldconfig is needed to make one.

The layout is the one :mod:`gpudoctor.host.parsers.ldcache` reads and ``ldconfig -p -C FILE`` prints: a
48-byte header (magic ``glibc-ld.so.cache1.1``, entry count, string-table length, little-endian flag), the
24-byte entries, then the NUL-terminated strings; string offsets count from the start of the file.
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Iterable

MAGIC = b"glibc-ld.so.cache1.1"
_ELF_LIBC6 = 0x0003
# The ABI byte ldconfig records for 64-bit libraries on each machine (glibc's ldconfig.h FLAG_*).
_ABI_BY_MACHINE = {
    "x86_64": 0x0300, "amd64": 0x0300, "aarch64": 0x0A00, "arm64": 0x0A00, "ppc64le": 0x0500, "ppc64": 0x0500,
    "s390x": 0x0400, "riscv64": 0x1000, "loongarch64": 0x1200,
}
_LITTLE_ENDIAN = 2


def native_flags(machine: str | None = None) -> int:
    """Entry flags for a 64-bit glibc library of this machine (x86-64 when the machine is unknown)."""
    return _ELF_LIBC6 | _ABI_BY_MACHINE.get((machine or platform.machine()).lower(), 0x0300)


def build_ld_so_cache(entries: Iterable[tuple[str, str]], *, flags: int | None = None) -> bytes:
    """A cache mapping each (soname, path); sorted the way ldconfig sorts them (descending name)."""
    items = sorted(set(entries), key=lambda e: (e[0], e[1]), reverse=True)
    entry_flags = native_flags() if flags is None else flags
    header_len, entry_len = 48, 24
    strings = bytearray()
    table = bytearray()
    base = header_len + entry_len * len(items)
    for key, value in items:
        key_off = base + len(strings)
        strings += key.encode() + b"\0"
        value_off = base + len(strings)
        strings += value.encode() + b"\0"
        table += struct.pack("<iIIIQ", entry_flags, key_off, value_off, 0, 0)
    header = MAGIC + struct.pack("<IIB3xI12x", len(items), len(strings), _LITTLE_ENDIAN, 0)
    assert len(header) == header_len
    return bytes(header + table + strings)
