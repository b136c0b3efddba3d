"""RecordingRoot: the HostRoot a snapshot runs the doctor on. It remembers how each host path was used.

HostRoot records every path it reads or looks up in `accessed`. A snapshot needs more: the bytes each read
returned (``/proc`` and ``/sys`` change from one read to the next, so the bundle keeps what the checks saw,
not a second read), the reads that failed and why (a replay must fail them the same way), the directories
that were listed (a replay must list the same names), and the paths that type tests (`is_file`, `is_dir`)
and globs touched, which the base class does not log.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Iterator

from gpudoctor.host.root import DEFAULT_MAX_BYTES, HostRoot

# A missing path is recorded as absent by the collector; only other failures need replaying as errors.
_ABSENT_ERRNOS = frozenset({errno_mod.ENOENT, errno_mod.ENOTDIR, errno_mod.ELOOP})


class RecordingRoot(HostRoot):
    """A HostRoot that keeps the contents of every read, failed reads, and listed directories."""

    def __init__(self, root: str | os.PathLike[str] = "/", *, offline: bool = False) -> None:
        super().__init__(root, offline=offline)
        self._reads: dict[str, bytes] = {}
        self._read_errors: dict[str, tuple[int, str]] = {}
        self._listed: set[str] = set()

    def read_bytes(self, host_path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        try:
            data = super().read_bytes(host_path, max_bytes=max_bytes)
        except OSError as exc:
            if exc.errno is not None and exc.errno not in _ABSENT_ERRNOS:
                with self._lock:
                    self._read_errors.setdefault(host_path, (exc.errno, exc.strerror or str(exc)))
            raise
        with self._lock:
            # The longest read wins: a later, shorter read (smaller max_bytes) sees a prefix of it.
            if len(data) >= len(self._reads.get(host_path, b"")):
                self._reads[host_path] = data
        return data

    def listdir(self, host_path: str) -> list[str]:
        with self._lock:
            self._listed.add(host_path)
        return super().listdir(host_path)

    def is_dir(self, host_path: str) -> bool:
        self._record(host_path)
        return super().is_dir(host_path)

    def is_file(self, host_path: str) -> bool:
        self._record(host_path)
        return super().is_file(host_path)

    def is_symlink(self, host_path: str) -> bool:
        self._record(host_path)
        return super().is_symlink(host_path)

    def glob(self, pattern: str) -> list[str]:
        found = super().glob(pattern)
        for path in found:
            self._record(path)
        return found

    def walk_files(self, host_dir: str) -> Iterator[str]:
        self._record(host_dir)
        with self._lock:
            self._listed.add(host_dir)
        for path in super().walk_files(host_dir):
            self._record(path)
            yield path

    # -- what was recorded -----------------------------------------------------------------------------------

    def reads(self) -> dict[str, bytes]:
        """Host path (as the checks named it) -> the bytes its longest read returned."""
        with self._lock:
            return dict(self._reads)

    def read_errors(self) -> dict[str, tuple[int, str]]:
        """Host path -> (errno, message) of reads that failed for a reason other than absence."""
        with self._lock:
            return {k: v for k, v in self._read_errors.items() if k not in self._reads}

    def listed(self) -> frozenset[str]:
        """Directories whose entries were listed."""
        with self._lock:
            return frozenset(self._listed)
