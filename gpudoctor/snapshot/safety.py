"""Extract a snapshot bundle without trusting it.

A bundle may come from anyone (it is attached to bug reports). :func:`extract_bundle` streams the archive
once and validates every member itself before anything is written; Python's ``tarfile`` data filter is
applied too where it exists, as a second layer, never as the only one. Rejected, with the member named:

- names that are absolute, contain ``..``/``.``/empty components or NUL, are too long or too deep, or lie
  outside the bundle layout (``manifest.json``, ``report.json``, ``probes/*.json``, ``root/...``,
  ``diagnostics/...``), and names that appear twice;
- hard links (bundles never contain them), device nodes, FIFOs and any other special member;
- symlinks outside ``root/``, with an absolute target, or whose target climbs out of ``root/``;
- any member below a symlink (directories are opened with ``O_NOFOLLOW`` at every step, files are created
  with ``O_EXCL|O_NOFOLLOW``, so nothing is ever written through a link);
- more than `max_members` members, or more than `max_bytes` of decompressed data (counted while reading,
  trailing data included);
- truncated or corrupt archives: bad gzip data or CRC, a tar header that does not parse, data after the end
  of the archive that is not zero padding.

After extraction every symlink is resolved with the operating system's own rules and must end inside
``root/``. Files are written 0600 and directories 0700 whatever the archive says: the recorded modes live in
the manifest, never on disk. The caller owns `dest` (a private ``mkdtemp``) and removes it on error.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gpudoctor.host.open import HostOpenError

MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 100_000
MAX_NAME_LENGTH = 4096
MAX_DEPTH = 96
_CHUNK = 64 * 1024
_TOP_FILES = ("manifest.json", "report.json")
_TOP_DIRS = ("root", "probes", "diagnostics")


class SnapshotError(HostOpenError):
    """The bundle cannot be replayed: unsafe, corrupt, or not a gpudoctor snapshot. The message says why."""


class UnsafeSnapshot(SnapshotError):
    """A member that could write or point outside the bundle, a special file, or a size/count past the caps."""


class CorruptSnapshot(SnapshotError):
    """Truncated or damaged data, or members that do not match the manifest."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Extracted:
    """One extracted member: `kind` is "file", "dir" or "symlink"; `sha256`/`size` for files, `target` for links."""

    name: str
    kind: str
    size: int = 0
    sha256: str | None = None
    target: str | None = None


class _Counting:
    """A read-only stream that fails once more than `limit` bytes have come out of it."""

    def __init__(self, inner: IO[bytes], *, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        data = self.inner.read(min(size, self.limit - self.total + 1))
        self.total += len(data)
        if self.total > self.limit:
            raise UnsafeSnapshot(f"it decompresses to more than {_size(self.limit)} (the cap for a snapshot)")
        return data


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def check_name(name: str) -> list[str]:
    """The components of a member name, or SnapshotError when the name is not allowed (see module doc)."""
    if not name:
        raise UnsafeSnapshot("a member has an empty name")
    if "\0" in name:
        raise UnsafeSnapshot(f"member {name!r}: NUL byte in the name")
    if name.startswith("/"):
        raise UnsafeSnapshot(f"member {name!r}: absolute path")
    if len(name) > MAX_NAME_LENGTH:
        raise UnsafeSnapshot(f"member {name[:80]!r}...: name longer than {MAX_NAME_LENGTH} characters")
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part == "..":
            raise UnsafeSnapshot(f"member {name!r}: path traversal ('..')")
        if part in ("", "."):
            raise UnsafeSnapshot(f"member {name!r}: empty or '.' path component")
    if len(parts) > MAX_DEPTH:
        raise UnsafeSnapshot(f"member {name!r}: nested deeper than {MAX_DEPTH} directories")
    top = parts[0]
    if len(parts) == 1 and top not in _TOP_FILES and top not in _TOP_DIRS:
        raise UnsafeSnapshot(f"member {name!r}: not part of a gpudoctor snapshot (expected manifest.json, "
                            "report.json, probes/, root/, diagnostics/)")
    if len(parts) > 1 and top not in _TOP_DIRS:
        raise UnsafeSnapshot(f"member {name!r}: not part of a gpudoctor snapshot")
    if top == "probes" and (len(parts) != 2 or not parts[1].endswith(".json")):
        raise UnsafeSnapshot(f"member {name!r}: probes/ holds only <name>.json files")
    return parts


def check_link(parts: list[str], target: str) -> None:
    """A symlink at `parts` may only point inside ``root/``, by a relative target."""
    name = "/".join(parts)
    if parts[0] != "root" or len(parts) < 2:
        raise UnsafeSnapshot(f"member {name!r}: symlink outside root/ (only host files may be links)")
    if not target or "\0" in target:
        raise UnsafeSnapshot(f"member {name!r}: symlink with an empty or NUL-containing target")
    if target.startswith("/"):
        raise UnsafeSnapshot(f"member {name!r}: symlink to an absolute path ({target}) points outside the bundle")
    where = list(parts[:-1])
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if len(where) <= 1:
                raise UnsafeSnapshot(f"member {name!r}: symlink target {target!r} climbs out of root/")
            where.pop()
        else:
            where.append(comp)


class _Dirs:
    """Directory fds under `dest`, opened one component at a time with O_NOFOLLOW."""

    _FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

    def __init__(self, dest: Path) -> None:
        self.dest_fd = os.open(dest, self._FLAGS)
        self._cache: dict[tuple[str, ...], int] = {(): self.dest_fd}

    def open(self, parts: list[str], *, member: str) -> int:
        """The fd of directory `parts` (created 0700 as needed); SnapshotError when a component is not a
        real directory (a symlink or a file)."""
        key: tuple[str, ...] = ()
        fd = self.dest_fd
        for comp in parts:
            key = (*key, comp)
            cached = self._cache.get(key)
            if cached is not None:
                fd = cached
                continue
            with suppress(FileExistsError):
                os.mkdir(comp, 0o700, dir_fd=fd)
            try:
                fd = os.open(comp, self._FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UnsafeSnapshot(f"member {member!r}: {'/'.join(key)} is not a directory (a symlink or file "
                                    f"in the way: {exc.strerror})") from None
            self._cache[key] = fd
        return fd

    def close(self) -> None:
        for fd in self._cache.values():
            with suppress(OSError):
                os.close(fd)
        self._cache.clear()


@contextmanager
def _open_stream(archive: str, limit: int) -> Iterator[_Counting]:
    try:
        raw = open(archive, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SnapshotError(f"the file cannot be opened ({exc.strerror or exc})") from None
    try:
        magic = raw.read(2)
        raw.seek(0)
        inner: IO[bytes] = (gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b"  # type: ignore[assignment]
                            else raw)
        yield _Counting(inner, limit=limit)
    finally:
        raw.close()


def _extra_filter(member: tarfile.TarInfo, dest: Path) -> None:
    """Python's own data filter (3.10.12+/3.11.4+), as a second opinion."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return
    try:
        data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise UnsafeSnapshot(f"member {member.name!r}: {exc}") from None


def _write_file(tf: tarfile.TarFile, member: tarfile.TarInfo, dir_fd: int, leaf: str) -> tuple[int, str]:
    src = tf.extractfile(member)
    if src is None:
        raise UnsafeSnapshot(f"member {member.name!r}: no data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(leaf, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeSnapshot(f"member {member.name!r}: cannot create it ({exc.strerror})") from None
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            try:
                out.write(chunk)
            except OSError as exc:  # a full or read-only temp dir is this machine's problem, not the bundle's
                raise SnapshotError(f"cannot extract {member.name!r} into the temporary directory: "
                                    f"{exc.strerror or exc} (set TMPDIR to a directory with room)") from None
    if size != member.size:
        raise CorruptSnapshot(f"member {member.name!r}: {size} of its {member.size} bytes")
    return size, digest.hexdigest()


def _drain(stream: _Counting) -> None:
    """Read to the end: gzip checks its CRC there, and anything but zero padding means a damaged archive."""
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        if chunk.strip(b"\0"):
            raise CorruptSnapshot("data after the end of the archive: a tar header is damaged")


def extract_bundle(archive: str, dest: Path, *, max_bytes: int = MAX_TOTAL_BYTES,
                   max_members: int = MAX_MEMBERS) -> dict[str, Extracted]:
    """Validate and extract `archive` (tar or tar.gz) into the existing empty directory `dest`.

    Returns the extracted members by name. Raises UnsafeSnapshot or CorruptSnapshot (the message names the
    archive, the member and the reason) for anything in the module docstring; `dest` may then hold a
    partial extraction, which the caller removes.
    """
    try:
        return _extract(archive, dest, max_bytes=max_bytes, max_members=max_members)
    except UnsafeSnapshot as exc:
        raise UnsafeSnapshot(f"{archive}: unsafe snapshot, not replayed: {exc}") from None
    except CorruptSnapshot as exc:
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: it is truncated or corrupt ({exc})") from None
    except SnapshotError as exc:
        raise SnapshotError(f"{archive}: cannot replay this snapshot: {exc}") from None


def _extract(archive: str, dest: Path, *, max_bytes: int, max_members: int) -> dict[str, Extracted]:
    out: dict[str, Extracted] = {}
    links: list[tuple[list[str], str]] = []
    dirs = _Dirs(dest)
    try:
        with _open_stream(archive, max_bytes) as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tf:  # type: ignore[call-overload]
                    for member in tf:
                        if len(out) >= max_members:
                            raise UnsafeSnapshot(f"more than {max_members} members (the cap for a snapshot)")
                        _extract_one(tf, member, dest, dirs, out, links)
                _drain(stream)
            except SnapshotError:
                raise
            except (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeError, ValueError) as exc:
                raise CorruptSnapshot(f"{type(exc).__name__}: {exc}") from None
    finally:
        dirs.close()
    _check_links_resolve(dest, links)
    return out


def _extract_one(tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, dirs: _Dirs,
                 out: dict[str, Extracted], links: list[tuple[list[str], str]]) -> None:
    parts = check_name(member.name)
    name = "/".join(parts)
    if name in out:
        raise UnsafeSnapshot(f"member {name!r} appears twice")
    if member.islnk():
        raise UnsafeSnapshot(f"member {name!r}: hard link to {member.linkname!r} (snapshots contain none)")
    if member.ischr() or member.isblk():
        raise UnsafeSnapshot(f"member {name!r}: device node member (snapshots record devices as metadata)")
    if member.isfifo():
        raise UnsafeSnapshot(f"member {name!r}: FIFO member")
    if not (member.isreg() or member.isdir() or member.issym()):
        raise UnsafeSnapshot(f"member {name!r}: unsupported member type {member.type!r}")
    if member.issym():
        check_link(parts, member.linkname)
    _extra_filter(member, dest)
    if member.isdir():
        dirs.open(parts, member=name)
        out[name] = Extracted(name=name, kind="dir")
        return
    parent = dirs.open(parts[:-1], member=name)
    if member.issym():
        try:
            os.symlink(member.linkname, parts[-1], dir_fd=parent)
        except OSError as exc:
            raise UnsafeSnapshot(f"member {name!r}: cannot create the symlink ({exc.strerror})") from None
        links.append((parts, member.linkname))
        out[name] = Extracted(name=name, kind="symlink", target=member.linkname)
        return
    size, digest = _write_file(tf, member, parent, parts[-1])
    out[name] = Extracted(name=name, kind="file", size=size, sha256=digest)


def _check_links_resolve(dest: Path, links: list[tuple[list[str], str]]) -> None:
    """Every link, followed by the OS (chains included), must end inside ``dest/root``."""
    base = os.path.realpath(dest / "root")
    for parts, target in links:
        real = os.path.realpath(dest.joinpath(*parts))
        if real != base and not real.startswith(base + os.sep):
            name = "/".join(parts)
            raise UnsafeSnapshot(f"member {name!r}: symlink to {target!r} leads outside the bundle "
                                f"(through other links, to {posixpath.normpath(real)})")
