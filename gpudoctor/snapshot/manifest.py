"""The bundle layout and its manifest (``gpudoctor.snapshot/1``).

A bundle is a tar (usually gzip-compressed) holding::

    root/<host path>        every host path the checks used, under the path the host sees
    probes/<name>.json      live probe results as recorded (they stand in for the probes on replay)
    diagnostics/...         what a maintainer asks for: docker info, dockerd's command line and environment,
                            nvidia-smi -q, kernel log lines about NVRM/nvidia, the toolkit's logs
    report.json             the report of the run that made the bundle
    manifest.json           this file; always the last member

The manifest lists every other member with its sha256 and where it came from (a host path, a command, a
probe), and for ``root/`` members the host's own metadata (`PathMeta`): type, mode, owner, size, times,
device numbers, the link's original target. On disk a replay keeps only contents; metadata comes from here,
so device nodes need no mknod and modes need no chmod. It also lists the host paths that were looked for
and absent, what was redacted where, and notes on what could not be collected.
"""

from __future__ import annotations

import math
import os
import stat as stat_mod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

FORMAT = "gpudoctor.snapshot/1"
MANIFEST = "manifest.json"
REPORT = "report.json"
ROOT_DIR = "root"
PROBES_DIR = "probes"
DIAGNOSTICS_DIR = "diagnostics"

KINDS = ("file", "dir", "symlink", "char", "block", "fifo", "socket", "absent")
_S_IFMT = {
    "file": stat_mod.S_IFREG, "dir": stat_mod.S_IFDIR, "symlink": stat_mod.S_IFLNK, "char": stat_mod.S_IFCHR,
    "block": stat_mod.S_IFBLK, "fifo": stat_mod.S_IFIFO, "socket": stat_mod.S_IFSOCK,
}  # fmt: skip


class ManifestError(ValueError):
    """manifest.json is malformed; the message says which entry and field."""


def kind_of(mode: int) -> str:
    """The PathMeta kind for an ``st_mode``."""
    for kind, fmt in _S_IFMT.items():
        if stat_mod.S_IFMT(mode) == fmt:
            return kind
    return "file"


def probe_member(name: str) -> str:
    """``probes/<name>.json``, the name percent-encoded (probe names hold ``:`` and ``/``)."""
    return f"{PROBES_DIR}/{quote(name, safe='')}.json"


def probe_name(member: str) -> str:
    """Inverse of probe_member."""
    return unquote(member[len(PROBES_DIR) + 1 : -len(".json")])


def member_name(host_path: str) -> str:
    """``/etc/os-release`` -> ``root/etc/os-release`` (``/`` itself is ``root``)."""
    return f"{ROOT_DIR}{host_path}" if host_path != "/" else ROOT_DIR


@dataclass(frozen=True, slots=True, kw_only=True)
class PathMeta:
    """A host path as the live run saw it. `content` is "full", "partial" (the first bytes the checks read),
    or "none" (metadata only); `read_error` is (errno, message) when reading it failed live."""

    kind: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    nlink: int = 1
    ino: int = 0
    dev: int = 0
    atime: float = 0.0
    mtime: float = 0.0
    ctime: float = 0.0
    major: int | None = None
    minor: int | None = None
    target: str | None = None
    content: str = "none"
    read_error: tuple[int, str] | None = None

    @classmethod
    def from_stat(cls, st: os.stat_result, *, target: str | None = None) -> PathMeta:
        kind = kind_of(st.st_mode)
        device = kind in ("char", "block")
        return cls(kind=kind, mode=stat_mod.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, size=st.st_size,
                   nlink=st.st_nlink, ino=st.st_ino, dev=st.st_dev, atime=st.st_atime, mtime=st.st_mtime,
                   ctime=st.st_ctime, major=os.major(st.st_rdev) if device else None,
                   minor=os.minor(st.st_rdev) if device else None, target=target)

    def stat_result(self) -> os.stat_result:
        """An ``os.stat_result`` with the recorded fields (floats and nanoseconds for the times)."""
        fmt = _S_IFMT.get(self.kind, stat_mod.S_IFREG)
        rdev = os.makedev(self.major, self.minor) if self.major is not None and self.minor is not None else 0
        fields = (fmt | self.mode, self.ino, self.dev, self.nlink, self.uid, self.gid, self.size,
                  int(self.atime), int(self.mtime), int(self.ctime))
        extra = {"st_atime": self.atime, "st_mtime": self.mtime, "st_ctime": self.ctime,
                 "st_atime_ns": int(self.atime * 1e9), "st_mtime_ns": int(self.mtime * 1e9),
                 "st_ctime_ns": int(self.ctime * 1e9), "st_rdev": rdev, "st_blksize": 4096,
                 "st_blocks": (self.size + 511) // 512}
        return os.stat_result(fields, extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "absent":
            return out
        out.update(mode=self.mode, uid=self.uid, gid=self.gid, size=self.size, nlink=self.nlink, ino=self.ino,
                   dev=self.dev, atime=self.atime, mtime=self.mtime, ctime=self.ctime, content=self.content)
        if self.major is not None:
            out.update(major=self.major, minor=self.minor)
        if self.target is not None:
            out["target"] = self.target
        if self.read_error is not None:
            out["read_error"] = {"errno": self.read_error[0], "message": self.read_error[1]}
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> PathMeta:
        """Parse one ``host`` object; ManifestError names `where` and the bad field."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"{where}: host metadata must be an object")
        kind = data.get("type")
        if kind not in KINDS:
            raise ManifestError(f"{where}: unknown type {kind!r}")
        if kind == "absent":
            return cls(kind="absent")

        def num(key: str, typ: type, default: Any = 0) -> Any:
            value = data.get(key, default)
            if value is None and default is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ManifestError(f"{where}: {key} must be a number, got {value!r}")
            if typ is int:
                if not isinstance(value, int) or value < 0 or value >= 2**63:
                    raise ManifestError(f"{where}: {key} must be a non-negative integer, got {value!r}")
                return value
            if not math.isfinite(value) or abs(value) > 1e11:
                raise ManifestError(f"{where}: {key} must be a time in seconds, got {value!r}")
            return float(value)

        target = data.get("target")
        if target is not None and (not isinstance(target, str) or "\0" in target):
            raise ManifestError(f"{where}: target must be a string")
        content = data.get("content", "none")
        if content not in ("full", "partial", "none"):
            raise ManifestError(f"{where}: content must be full, partial or none")
        error = data.get("read_error")
        read_error: tuple[int, str] | None = None
        if error is not None:
            if not isinstance(error, Mapping) or not isinstance(error.get("errno"), int) \
                    or not isinstance(error.get("message"), str):
                raise ManifestError(f"{where}: read_error must be {{errno, message}}")
            read_error = (int(error["errno"]), str(error["message"])[:500])
        major, minor = num("major", int, None), num("minor", int, None)
        if major is not None and (major >= 2**32 or minor is None or minor >= 2**32):
            raise ManifestError(f"{where}: device numbers out of range")
        return cls(kind=kind, mode=num("mode", int) & 0o7777, uid=num("uid", int), gid=num("gid", int),
                   size=num("size", int), nlink=num("nlink", int, 1), ino=num("ino", int), dev=num("dev", int),
                   atime=num("atime", float), mtime=num("mtime", float), ctime=num("ctime", float),
                   major=major, minor=minor, target=target, content=content, read_error=read_error)
