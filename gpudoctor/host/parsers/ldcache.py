"""A direct reader of ``/etc/ld.so.cache`` (never ``ldconfig -p``, which would run a host binary).

Two binary formats exist (glibc ``sysdeps/generic/dl-cache.h``):

- old, magic ``ld.so-1.7.0``: a 16-byte header (11-byte magic, padding, ``uint32 nlibs``), then ``nlibs``
  12-byte entries ``{int32 flags; uint32 key, value}``, then the strings. Offsets count from the end of the
  entry table.
- new, magic ``glibc-ld.so.cache1.1``: a 48-byte header (``uint32 nlibs, len_strings``, ``uint8 flags`` whose
  low 2 bits give the byte order since glibc 2.33, ``uint32 extension_offset``), then ``nlibs`` 24-byte entries
  ``{int32 flags; uint32 key, value, osversion; uint64 hwcap}``. Offsets count from the new header.

"compat" files (the default before glibc 2.32) hold an old table followed, 8-byte aligned (4 on some 32-bit
ABIs), by a complete new-format cache; glibc then uses only the new part, and so does this reader.

Everything read from the file is bounds-checked: a hostile or truncated cache gives ParseError, never an
IndexError or a huge allocation.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from gpudoctor.host.parsers._util import fail
from gpudoctor.record import Record

__all__ = ["LdCacheEntry", "lookup", "parse_ld_so_cache"]

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_HEADER = 16
_OLD_ENTRY = 12
_NEW_HEADER = 48
_NEW_ENTRY = 24
_EXTENSION_MAGIC = 0xEAA42174
_EXT_TAG_GLIBC_HWCAPS = 1
# hwcap bit 62 marks an entry in a glibc-hwcaps subdirectory; the low 32 bits index the subdirectory names.
_HWCAP_EXTENSION = 1 << 62
# Longest string accepted (PATH_MAX); real keys and paths are far shorter.
_MAX_STRING = 4096

# FLAG_* from glibc's ldconfig.h: the low byte is the library type, the next byte the ABI.
FLAG_TYPE_MASK = 0x00FF
FLAG_REQUIRED_MASK = 0xFF00
_TYPE_NAMES = {0x0000: "libc4", 0x0001: "ELF", 0x0002: "libc5", 0x0003: "libc6"}
# (arch name used here, the text `ldconfig -p` prints, 64-bit?)
_ABI = {
    0x0000: ("i386", "", False),
    0x0100: ("sparc64", "64bit", True),
    0x0200: ("ia64", "IA-64", True),
    0x0300: ("x86-64", "x86-64", True),
    0x0400: ("s390x", "64bit", True),
    0x0500: ("ppc64", "64bit", True),
    0x0600: ("mips64-n32", "N32", False),
    0x0700: ("mips64", "64bit", True),
    0x0800: ("x32", "x32", False),
    0x0900: ("armhf", "hard-float", False),
    0x0A00: ("aarch64", "AArch64", True),
    0x0B00: ("armel", "soft-float", False),
    0x0C00: ("mips-nan2008", "nan2008", False),
    0x0D00: ("mips64-n32-nan2008", "N32,nan2008", False),
    0x0E00: ("mips64-nan2008", "64bit,nan2008", True),
    0x0F00: ("riscv64-soft", "soft-float", True),
    0x1000: ("riscv64", "double-float", True),
    0x1100: ("loongarch64-soft", "soft-float", True),
    0x1200: ("loongarch64", "double-float", True),
}


class LdCacheEntry(Record):
    """One library in the cache: the soname the dynamic linker looks up, and the file it maps to."""

    key: str
    """The soname, e.g. ``libnvidia-ml.so.1``."""
    value: str
    """The full path, e.g. ``/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1``."""
    flags: int
    arch: str
    """ABI decoded from `flags`: ``x86-64``, ``i386`` (the plain 32-bit ABI), ``aarch64``, ``ppc64``, ``x32``,
    ``armhf``, ... or ``unknown-0xNN00``."""
    hwcap: int = 0
    hwcap_subdir: str | None = None
    """For a library in a ``glibc-hwcaps/<name>/`` subdirectory, that name (e.g. ``x86-64-v3``)."""

    @property
    def is_64bit(self) -> bool:
        abi = _ABI.get(self.flags & FLAG_REQUIRED_MASK)
        return abi is not None and abi[2]

    @property
    def ldconfig_description(self) -> str:
        """What ``ldconfig -p`` prints in parentheses, e.g. ``libc6,x86-64`` (without hwcap/OS ABI parts)."""
        kind = _TYPE_NAMES.get(self.flags & FLAG_TYPE_MASK, "unknown")
        required = self.flags & FLAG_REQUIRED_MASK
        abi = _ABI.get(required)
        if abi is None:
            return f"{kind},{required}"
        return f"{kind},{abi[1]}" if abi[1] else kind


def _arch(flags: int) -> str:
    required = flags & FLAG_REQUIRED_MASK
    abi = _ABI.get(required)
    return abi[0] if abi else f"unknown-{required:#06x}"


def _string(data: bytes, offset: int, *, base: int, path: str, what: str) -> str:
    """The NUL-terminated string at `base + offset`."""
    start = base + offset
    if offset < 0 or start >= len(data):
        fail(path, f"{what} points outside the file (offset {offset}, file is {len(data)} bytes)")
    # Bounded search: a cache full of huge unterminated strings must not make parsing quadratic.
    end = data.find(b"\0", start, start + _MAX_STRING + 1)
    if end < 0:
        fail(path, f"{what} at offset {start} is not NUL-terminated within {_MAX_STRING} bytes")
    # Paths are bytes on Linux; surrogateescape keeps undecodable ones round-trippable (os.fsencode).
    return os.fsdecode(data[start:end])


def _parse_old(data: bytes, path: str) -> list[LdCacheEntry]:
    if len(data) < _OLD_HEADER:
        fail(path, "truncated: shorter than the ld.so-1.7.0 header")
    (nlibs,) = struct.unpack_from("<I", data, 12)
    table_end = _OLD_HEADER + nlibs * _OLD_ENTRY
    if table_end > len(data):
        fail(path, f"header claims {nlibs} libraries, more than the file can hold")
    out: list[LdCacheEntry] = []
    for i in range(nlibs):
        flags, key, value = struct.unpack_from("<iII", data, _OLD_HEADER + i * _OLD_ENTRY)
        out.append(
            LdCacheEntry(
                key=_string(data, key, base=table_end, path=path, what=f"entry {i} name"),
                value=_string(data, value, base=table_end, path=path, what=f"entry {i} path"),
                flags=flags,
                arch=_arch(flags),
            )
        )
    return out


def _new_byte_order(data: bytes, base: int) -> str:
    endian = data[base + 28] & 3
    if endian == 2:
        return "<"
    if endian == 3:
        return ">"
    # 0: written before glibc 2.33 recorded it (1 is "invalid"). Guess from which reading of nlibs fits.
    (little,) = struct.unpack_from("<I", data, base + 20)
    return "<" if base + _NEW_HEADER + little * _NEW_ENTRY <= len(data) else ">"


def _hwcap_names(data: bytes, base: int, ext_offset: int, bo: str, path: str) -> list[str]:
    """The glibc-hwcaps subdirectory names from the cache extension area (glibc 2.33+)."""
    if ext_offset == 0:
        return []
    if ext_offset + 8 > len(data):
        fail(path, "extension offset points outside the file")
    magic, count = struct.unpack_from(bo + "II", data, ext_offset)
    if magic != _EXTENSION_MAGIC:
        return []  # no extension area (older writers leave the field zero or unused)
    if ext_offset + 8 + count * 16 > len(data):
        fail(path, f"extension header claims {count} sections, more than the file can hold")
    for i in range(count):
        tag, _flags, offset, size = struct.unpack_from(bo + "IIII", data, ext_offset + 8 + i * 16)
        if tag != _EXT_TAG_GLIBC_HWCAPS:
            continue
        if size % 4 or offset + size > len(data):
            fail(path, "glibc-hwcaps extension section lies outside the file")
        # The section holds string-table offsets, which (like entry strings) count from the new header.
        return [
            _string(
                data,
                struct.unpack_from(bo + "I", data, offset + j)[0],
                base=base,
                path=path,
                what="hwcaps name",
            )
            for j in range(0, size, 4)
        ]
    return []


def _parse_new(data: bytes, base: int, path: str) -> list[LdCacheEntry]:
    if base + _NEW_HEADER > len(data):
        fail(path, "truncated: shorter than the glibc-ld.so.cache1.1 header")
    bo = _new_byte_order(data, base)
    nlibs, _len_strings = struct.unpack_from(bo + "II", data, base + 20)
    (ext_offset,) = struct.unpack_from(bo + "I", data, base + 32)
    if base + _NEW_HEADER + nlibs * _NEW_ENTRY > len(data):
        fail(path, f"header claims {nlibs} libraries, more than the file can hold")
    names: list[str] | None = None
    out: list[LdCacheEntry] = []
    for i in range(nlibs):
        flags, key, value, _osversion, hwcap = struct.unpack_from(
            bo + "iIIIQ", data, base + _NEW_HEADER + i * _NEW_ENTRY
        )
        subdir: str | None = None
        if hwcap & _HWCAP_EXTENSION:
            if names is None:
                names = _hwcap_names(data, base, ext_offset, bo, path)
            index = hwcap & 0xFFFFFFFF
            if index >= len(names):
                fail(
                    path,
                    f"entry {i} names glibc-hwcaps subdirectory #{index}, but the cache lists {len(names)}",
                )
            subdir = names[index]
        out.append(
            LdCacheEntry(
                key=_string(data, key, base=base, path=path, what=f"entry {i} name"),
                value=_string(data, value, base=base, path=path, what=f"entry {i} path"),
                flags=flags,
                arch=_arch(flags),
                hwcap=hwcap,
                hwcap_subdir=subdir,
            )
        )
    return out


def parse_ld_so_cache(data: bytes, *, path: str = "/etc/ld.so.cache") -> list[LdCacheEntry]:
    """All entries of an ld.so.cache in file order (old, new or compat format). Raises only ParseError."""
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0, path)
    if data.startswith(OLD_MAGIC):
        if len(data) < _OLD_HEADER:
            fail(path, "truncated: shorter than the ld.so-1.7.0 header")
        (nlibs,) = struct.unpack_from("<I", data, 12)
        table_end = _OLD_HEADER + nlibs * _OLD_ENTRY
        # A compat file hides a complete new-format cache at the start of the old string table.
        for align in (8, 4):
            base = (table_end + align - 1) & ~(align - 1)
            if data[base : base + len(NEW_MAGIC)] == NEW_MAGIC:
                return _parse_new(data, base, path)
        return _parse_old(data, path)
    if not data:
        fail(path, "file is empty")
    fail(path, "not an ld.so.cache: unknown magic (expected 'glibc-ld.so.cache1.1' or 'ld.so-1.7.0')")


def lookup(entries: Iterable[LdCacheEntry], soname: str) -> list[LdCacheEntry]:
    """Entries whose key is exactly `soname`, in cache order (the dynamic linker's preference order)."""
    return [e for e in entries if e.key == soname]
