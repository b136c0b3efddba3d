"""HostRoot: every file gpudoctor reads about the host is read through this.

Paths are given as the host sees them (``/proc/driver/nvidia/version``). Under ``--root DIR`` they are
resolved inside DIR, and symlinks are followed with chroot semantics: an absolute link target, or a
``..`` that climbs above DIR, stays inside DIR. That matters for a DaemonSet that mounts the host at
``/host``: ``/host/etc/alternatives/x -> /usr/bin/x`` must mean the host's ``/usr/bin/x``, not the pod's.

Every read is recorded in `accessed` so that a snapshot can collect exactly the files the checks read.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
from collections.abc import Iterator
from pathlib import Path

_MAX_LINKS = 40
# /proc and /sys files are small; a cap keeps a hostile or huge file from eating memory.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


# What Path.is_symlink() treats as "not a link" rather than an error.
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def _is_symlink(path: str) -> bool:
    """``Path(path).is_symlink()`` without building a Path."""
    try:
        return stat_mod.S_ISLNK(os.lstat(path).st_mode)
    except OSError as exc:
        if exc.errno in _NOT_THERE:
            return False
        raise
    except ValueError:
        return False


class HostRoot:
    """The filesystem of the host being diagnosed, rooted at `root`."""

    def __init__(self, root: str | os.PathLike[str] = "/", *, offline: bool = False) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.offline = offline
        self._accessed: set[str] = set()
        self._lock = threading.Lock()

    @property
    def is_live_root(self) -> bool:
        """True when the root is this machine's own ``/``."""
        return str(self.root) == "/"

    @property
    def label(self) -> str:
        """How reports name this root: the directory (a snapshot replay names its archive instead)."""
        return str(self.root)

    @property
    def accessed(self) -> frozenset[str]:
        """Host paths that were read (or looked for) so far."""
        with self._lock:
            return frozenset(self._accessed)

    def _record(self, host_path: str) -> None:
        with self._lock:
            self._accessed.add(host_path)

    @staticmethod
    def normalize(host_path: str) -> str:
        """Return the absolute, ``..``-free form of a host path (lexically, without touching disk)."""
        parts: list[str] = []
        for comp in host_path.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(comp)
        return "/" + "/".join(parts)

    def path(self, host_path: str, *, follow: bool = True) -> Path:
        """Map a host path to the real path under the root.

        With `follow`, symlinks in every component (including the last) are resolved inside the root.
        Without it, only the parent components are resolved, so ``lstat``/``readlink`` see the link itself.
        """
        if "\x00" in host_path:
            # A NUL can come from a hostile config value; open() would raise ValueError, not OSError.
            raise OSError(errno.EINVAL, "path contains a NUL byte", host_path.replace("\x00", "\\0"))
        if self.is_live_root:
            return Path(self.normalize(host_path))
        return self.root / self.resolve(host_path, follow=follow).lstrip("/")

    def resolve(self, host_path: str, *, follow: bool = True) -> str:
        """Resolve symlinks in `host_path` inside the root; returns the resolved host path."""
        if self.is_live_root:
            return self.normalize(host_path)
        root = str(self.root)
        pending = [c for c in host_path.split("/") if c not in ("", ".")]
        pending.reverse()
        done: list[str] = []
        links = 0
        while pending:
            comp = pending.pop()
            if comp == "..":
                if done:
                    done.pop()
                continue
            # Plain strings, not Path objects: this runs for every component of every file the checks read.
            candidate = os.path.join(root, *done, comp)
            is_last = not pending
            if (follow or not is_last) and _is_symlink(candidate):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(40, "Too many levels of symbolic links", "/" + "/".join([*done, comp]))
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                new = [c for c in target.split("/") if c not in ("", ".")]
                pending.extend(reversed(new))
                continue
            done.append(comp)
        return "/" + "/".join(done)

    # -- reads ---------------------------------------------------------------------------------------------

    def read_bytes(self, host_path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """Read a file. Raises OSError (FileNotFoundError, PermissionError, ...) like open()."""
        self._record(host_path)
        with open(self.path(host_path), "rb") as fh:
            return fh.read(max_bytes)

    def read_text(self, host_path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
        """Read a file as text; undecodable bytes become U+FFFD rather than an exception."""
        return self.read_bytes(host_path, max_bytes=max_bytes).decode("utf-8", errors="replace")

    def try_read_text(self, host_path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
        """Like read_text, but None when the file is missing or unreadable."""
        try:
            return self.read_text(host_path, max_bytes=max_bytes)
        except OSError:
            return None

    def try_read_bytes(self, host_path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
        """Like read_bytes, but None when the file is missing or unreadable."""
        try:
            return self.read_bytes(host_path, max_bytes=max_bytes)
        except OSError:
            return None

    def exists(self, host_path: str) -> bool:
        self._record(host_path)
        try:
            return self.path(host_path).exists()
        except OSError:
            return False

    def is_dir(self, host_path: str) -> bool:
        try:
            return self.path(host_path).is_dir()
        except OSError:
            return False

    def is_file(self, host_path: str) -> bool:
        try:
            return self.path(host_path).is_file()
        except OSError:
            return False

    def is_symlink(self, host_path: str) -> bool:
        try:
            return self.path(host_path, follow=False).is_symlink()
        except OSError:
            return False

    def listdir(self, host_path: str) -> list[str]:
        """Sorted names in a directory; [] when it is missing or unreadable."""
        self._record(host_path)
        try:
            return sorted(os.listdir(self.path(host_path)))
        except OSError:
            return []

    def readlink(self, host_path: str) -> str | None:
        """The raw target of a symlink, or None when it is not one."""
        self._record(host_path)
        try:
            return os.readlink(self.path(host_path, follow=False))
        except OSError:
            return None

    def stat(self, host_path: str) -> os.stat_result | None:
        """stat() following links inside the root; None when missing."""
        self._record(host_path)
        try:
            return os.stat(self.path(host_path))
        except OSError:
            return None

    def lstat(self, host_path: str) -> os.stat_result | None:
        self._record(host_path)
        try:
            return os.lstat(self.path(host_path, follow=False))
        except OSError:
            return None

    def is_char_device(self, host_path: str) -> bool:
        st = self.stat(host_path)
        return st is not None and stat_mod.S_ISCHR(st.st_mode)

    def glob(self, pattern: str) -> list[str]:
        """Host paths matching a glob pattern (``/proc/driver/nvidia/gpus/*/information``), sorted."""
        base = self.path("/") if not self.is_live_root else Path("/")
        out: list[str] = []
        for p in base.glob(pattern.lstrip("/")):
            rel = p.relative_to(base).as_posix()
            out.append("/" + rel)
        return sorted(out)

    def walk_files(self, host_dir: str) -> Iterator[str]:
        """Host paths of regular files below a directory, not following directory symlinks."""
        top = self.path(host_dir)
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                full = Path(dirpath) / name
                rel = full.relative_to(self.root if not self.is_live_root else Path("/")).as_posix()
                yield "/" + rel
