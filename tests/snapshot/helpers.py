"""Shared helpers for the snapshot tests: comparing reports, reading bundles, crafting archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpudoctor.snapshot.manifest import FORMAT

Finding = tuple[str, str, str, tuple[str, ...], Any, tuple[str, ...]]


def findings(report: Mapping[str, Any]) -> list[Finding]:
    """What must replay identically: id, status, summary, evidence, remedy, fixes (never durations)."""
    return [(c["id"], c["status"], c["summary"], tuple(c["evidence"]), c["remedy"], tuple(c["fixes"]))
            for c in report["checks"]]


def host_without_root(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report's host header minus `root` (the live run names the directory, a replay the archive)."""
    return {k: v for k, v in report["host"].items() if k != "root"}


def differences(live: Mapping[str, Any], replay: Mapping[str, Any]) -> list[str]:
    """Readable differences between two reports' findings and host headers (empty when they agree)."""
    out: list[str] = []
    a, b = findings(live), findings(replay)
    if [f[0] for f in a] != [f[0] for f in b]:
        out.append(f"check ids differ: {[f[0] for f in a]} vs {[f[0] for f in b]}")
    for x, y in zip(a, b, strict=False):  # a length mismatch is reported above
        if x != y:
            out.append(f"{x[0]}:\n  live:   {x[1:]}\n  replay: {y[1:]}")
    if host_without_root(live) != host_without_root(replay):
        out.append(f"host: {host_without_root(live)} vs {host_without_root(replay)}")
    return out


def bundle_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tf:
        return {m.name: m for m in tf.getmembers()}


def bundle_bytes(path: Path) -> dict[str, bytes]:
    """Every regular member's contents."""
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if m.isreg():
                fh = tf.extractfile(m)
                assert fh is not None
                out[m.name] = fh.read()
    return out


def manifest_of(path: Path) -> dict[str, Any]:
    data = json.loads(bundle_bytes(path)["manifest.json"])
    assert isinstance(data, dict)
    return data


# -- crafting archives -------------------------------------------------------------------------------------


Member = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes = b"x\n") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def special(name: str, kind: bytes, *, linkname: str = "", devmajor: int = 0, devminor: int = 0) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    return info, None


def manifest_for(members: Iterable[Member], *, source_offline: bool = True) -> Member:
    """A manifest.json that lists `members` the way gpudoctor writes them (so only the hostile part fails)."""
    entries: list[dict[str, Any]] = []
    for info, data in members:
        if info.isreg():
            entry: dict[str, Any] = {"name": info.name, "type": "file", "sha256": hashlib.sha256(data or b"").hexdigest(),
                                     "source": {"path": "/" + info.name[len("root/"):]}}
            kind = "file"
        elif info.isdir():
            entry, kind = {"name": info.name, "type": "dir", "sha256": None, "source": {}}, "dir"
        elif info.issym():
            entry = {"name": info.name, "type": "symlink", "target": info.linkname, "sha256": None, "source": {}}
            kind = "symlink"
        else:
            continue
        if info.name == "root" or info.name.startswith("root/"):
            entry["host"] = {"type": kind, "mode": 0o755 if kind == "dir" else 0o644, "uid": 0, "gid": 0, "size": 0,
                             "mtime": 0, "ctime": 0, "atime": 0, "content": "full" if kind == "file" else "none"}
            if kind == "symlink":
                entry["host"]["target"] = info.linkname
        entries.append(entry)
    manifest = {"format": FORMAT, "tool": {"name": "gpudoctor", "version": "test"},
                "source": {"root": "/", "offline": source_offline, "docker_host": None},
                "members": entries, "absent": [], "redactions": [], "notes": []}
    return reg("manifest.json", json.dumps(manifest).encode())


def base_members() -> list[Member]:
    """The smallest well-formed bundle body: a root with /etc/os-release and a report."""
    return [directory("root"), directory("root/etc"),
            reg("root/etc/os-release", b'ID=debian\nVERSION_ID="12"\n'), reg("report.json", b"{}\n")]


def write_tar(path: Path, members: Sequence[Member], *, gz: bool = True, manifest: bool = True) -> Path:
    """Write `members` (plus a matching manifest.json last, unless told not to) as a tar or tar.gz."""
    body = list(members)
    if manifest:
        body.append(manifest_for(members))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in body:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    payload = raw.getvalue()
    if gz:
        import gzip

        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path
