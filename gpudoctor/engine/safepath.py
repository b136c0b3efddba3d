"""Resolve and change paths inside an untrusted container root by file descriptor, never by string.

Contract
--------
* ``Root.open(host_path)`` opens the container root (a *host* path, trusted: it comes from the bundle's
  ``config.json``) as an ``O_PATH`` directory fd. Every other method takes a *container path*
  (``/usr/lib/x86_64-linux-gnu/libcuda.so``) and resolves it inside that fd with chroot semantics:
  an absolute symlink target restarts at the root, a ``..`` that climbs above the root stays at the root,
  a magic link (``/proc/<pid>/root``, ``/proc/self/fd/N`` ...) is refused, and a symlink loop or a chain
  of more than 40 links is refused. Nothing is ever resolved against the host's ``/``.
* Results are ``O_PATH|O_CLOEXEC`` fds. Changes (mkdir, symlink, atomic write) are made with ``*at()``
  calls on a *single* component relative to an already-resolved parent dir fd, and the final component is
  never followed (``O_NOFOLLOW``/``O_EXCL``, ``symlinkat`` + ``renameat``), so a container that swaps a
  directory for a symlink while we work cannot redirect a write to the host (the TOCTOU behind
  CVE-2024-0132/0133/0134 and CVE-2025-23267).
* Mount points inside the root (the container's volumes, its /proc) are crossed, as the container itself
  sees them: a link the hooks make in a volume lands in that volume, which the container's root could
  write anyway; a read-only volume gives a clear EROFS error. Only magic links are refused.
* Special files: a FIFO, socket or device where a regular file or symlink is expected is refused with a
  clear error; nothing here opens a file for I/O except through an ``O_PATH`` fd whose type was checked
  first, and reopening uses ``O_NONBLOCK``, so a FIFO can never block us.

Backends
--------
* ``openat2``: ``openat2(2)`` (Linux >= 5.6) through ``syscall(437, ...)`` with ``struct open_how``
  (gpudoctor.engine.libc: ``_ctypes`` directly, as ``import ctypes`` costs ~8 ms per hook start)
  and ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS``; ``EAGAIN``/``EXDEV`` (a concurrent rename or mount
  during ``..`` handling) are retried a bounded number of times.
* ``walk``: the portable fallback. One component at a time with ``O_PATH|O_NOFOLLOW``; a symlink is read
  with ``readlinkat(fd, "")`` and its text spliced in front of the remaining components (absolute text
  restarts at the root). ``..`` pops a stack of the dir fds we came through, so the kernel is never asked
  to walk ``..`` and the walk cannot leave the root even while the container renames directories. A symlink
  that lives on procfs is refused (that covers every magic link; it is stricter than openat2, which still
  allows the plain ``/proc/self`` link).
* ``auto`` (default) probes openat2 once when the root is opened. If openat2 works, the walker is never
  used for an operation (no silent downgrade); it is only used afterwards to *explain* an ``ELOOP``/
  ``ENOENT`` in the error message.

Errors are `SafePathError(path=, reason=, errno=)`: ``str()`` reads
``/usr/lib/x86_64-linux-gnu: symlink loop (more than 40 links) inside the container root``.
"""

from __future__ import annotations

import errno as errno_mod
import os
import stat as stat_mod

from gpudoctor.engine import libc

TYPE_CHECKING = False  # typing/collections/types cost import time on every container start
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = [
    "MAX_LINKS",
    "Root",
    "SafePathError",
    "openat2_available",
    "split_container_path",
]

MAX_LINKS = 40
"""Same limit as the kernel's MAXSYMLINKS and openat2."""

_SYS_OPENAT2 = 437  # the same number on every architecture (new-style syscall table)
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_OPENAT2_RETRIES = 128  # filepath-securejoin uses the same bound

_PROC_SUPER_MAGIC = 0x9FA0
_PATH_MAX = 4096
_NAME_MAX = 255

_O_PATH = getattr(os, "O_PATH", 0o10000000)
_PATH_FLAGS = _O_PATH | os.O_CLOEXEC


class SafePathError(Exception):
    """A container path could not be resolved or changed safely.

    `path` is the container path as given (or the component that failed), `reason` a sentence for the
    user, `errno` the underlying errno when there is one.
    """

    def __init__(self, *, path: str, reason: str, errno: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.errno = errno
        super().__init__(f"{path}: {reason}")


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """Raw openat2(2); returns an fd or raises OSError. O_CLOEXEC must be in `flags` (raw syscall)."""
    encoded = os.fsencode(path)
    for _ in range(_OPENAT2_RETRIES):
        try:
            return libc.openat2(dirfd, encoded, flags, resolve)
        except OSError as exc:
            # EAGAIN/EXDEV: a rename or mount raced with ".." handling; the kernel asks us to retry.
            if exc.errno not in (errno_mod.EAGAIN, errno_mod.EXDEV):
                raise OSError(exc.errno, exc.strerror, path) from None
    raise OSError(errno_mod.EAGAIN, "openat2 kept racing with a concurrent rename or mount", path)


def openat2_available() -> bool:
    """True when openat2(2) with RESOLVE_IN_ROOT works here (kernel >= 5.6, not blocked by seccomp)."""
    try:
        fd = _openat2(-100, "/", _PATH_FLAGS | os.O_DIRECTORY, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    except OSError:
        return False
    os.close(fd)
    return True


def _fs_type(fd: int) -> int:
    """f_type of the filesystem that holds `fd` (fstatfs; Python has no binding for it)."""
    return libc.fstatfs_type(fd)


def split_container_path(path: str) -> list[str]:
    """The components of a container path, without empty and ``.`` components (``..`` is kept)."""
    if not isinstance(path, str):
        raise SafePathError(path=repr(path), reason="a container path must be a string")
    if "\0" in path:
        raise SafePathError(path=repr(path), reason="the path contains a NUL byte")
    if len(path.encode("utf-8", "surrogateescape")) >= _PATH_MAX:
        raise SafePathError(path=path[:80] + "...", reason=f"the path is longer than {_PATH_MAX - 1} bytes")
    return [c for c in path.split("/") if c not in ("", ".")]


def _join(comps: list[str]) -> str:
    return "/" + "/".join(comps)


def _kind(mode: int) -> str:
    if stat_mod.S_ISREG(mode):
        return "a regular file"
    if stat_mod.S_ISDIR(mode):
        return "a directory"
    if stat_mod.S_ISLNK(mode):
        return "a symlink"
    if stat_mod.S_ISFIFO(mode):
        return "a FIFO"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    if stat_mod.S_ISCHR(mode):
        return "a character device"
    if stat_mod.S_ISBLK(mode):
        return "a block device"
    return "a special file"


def _errno_reason(err: int) -> str:
    if err == errno_mod.ENOENT:
        return "does not exist inside the container root"
    if err == errno_mod.ENOTDIR:
        return "a component of the path is not a directory"
    if err == errno_mod.ELOOP:
        return (
            "too many levels of symbolic links, or a magic link such as /proc/<pid>/root "
            "(refused: it could lead out of the container root)"
        )
    if err == errno_mod.EACCES or err == errno_mod.EPERM:
        return "permission denied"
    if err == errno_mod.EROFS:
        return "the container root is read-only"
    if err == errno_mod.ENOSPC:
        return "no space left on the device that holds the container root"
    return os.strerror(err)


class Root:
    """An opened container root. Use `Root.open`; close it (or use ``with``) when done.

    `fd` is an ``O_PATH|O_DIRECTORY`` fd on the root, `path` the host path it was opened from (only for
    messages), `backend` ``"openat2"`` or ``"walk"``.
    """

    def __init__(self, *, fd: int, path: str, backend: str) -> None:
        if backend not in ("openat2", "walk"):
            raise ValueError(f"unknown backend {backend!r}")
        self.fd = fd
        self.path = path
        self.backend = backend

    # -- lifecycle ---------------------------------------------------------------------------------------

    @classmethod
    def open(cls, host_path: str, *, backend: str = "auto") -> Root:
        """Open the root at the (trusted) host path. `backend` is ``auto``, ``openat2`` or ``walk``."""
        if backend not in ("auto", "openat2", "walk"):
            raise ValueError(f"unknown backend {backend!r} (auto, openat2 or walk)")
        try:
            fd = os.open(host_path, _PATH_FLAGS | os.O_DIRECTORY)
        except OSError as exc:
            raise SafePathError(
                path=host_path, reason=f"cannot open the container root: {exc.strerror}", errno=exc.errno
            ) from None
        chosen = backend
        if backend != "walk":
            try:
                os.close(
                    _openat2(fd, ".", _PATH_FLAGS | os.O_DIRECTORY, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
                )
                chosen = "openat2"
            except OSError as exc:
                if backend == "openat2":
                    os.close(fd)
                    raise SafePathError(
                        path=host_path,
                        reason=f"openat2(2) is not usable here: {exc.strerror}",
                        errno=exc.errno,
                    ) from None
                chosen = "walk"
        return cls(fd=fd, path=host_path, backend=chosen)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fileno(self) -> int:
        return self.fd

    def __enter__(self) -> Root:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Root(path={self.path!r}, backend={self.backend!r}, fd={self.fd})"

    # -- resolution --------------------------------------------------------------------------------------

    def resolve(self, path: str, *, follow: bool = True) -> int:
        """An ``O_PATH|O_CLOEXEC`` fd for `path` resolved inside the root; the caller closes it.

        With ``follow=False`` a final symlink is not followed: the fd is the link itself.
        """
        comps = split_container_path(path)
        if self.backend == "walk":
            return self._walk(comps, follow=follow, shown=path)
        flags = _PATH_FLAGS | (0 if follow else os.O_NOFOLLOW)
        try:
            return _openat2(self.fd, _join(comps), flags, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            raise self._explain(comps, follow=follow, shown=path, err=exc.errno or errno_mod.EIO) from None

    def _explain(self, comps: list[str], *, follow: bool, shown: str, err: int) -> SafePathError:
        """Turn an openat2 errno into a precise message by replaying the lookup with the walker.

        The walker only reads (O_PATH opens and readlinkat); its result is never used for an operation.
        """
        if err != errno_mod.EAGAIN:
            try:
                os.close(self._walk(comps, follow=follow, shown=shown))
            except SafePathError as detailed:
                return detailed
        return SafePathError(path=shown, reason=_errno_reason(err), errno=err)

    def _walk(self, comps: list[str], *, follow: bool, shown: str) -> int:
        pending = list(reversed(comps))  # a stack: the next component is pending[-1]
        stack: list[int] = [os.dup(self.fd)]
        names: list[str] = []  # names[i] is the component that stack[i + 1] was opened from
        links = 0
        try:
            while pending:
                name = pending.pop()
                if name == ".":
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                        names.pop()
                    continue
                where = _join([*names, name])
                if not stat_mod.S_ISDIR(os.fstat(stack[-1]).st_mode):
                    raise SafePathError(
                        path=_join(names), reason="is not a directory", errno=errno_mod.ENOTDIR
                    )
                try:
                    fd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=stack[-1])
                except OSError as exc:
                    if exc.errno == errno_mod.ENOENT and links:
                        reason = "does not exist inside the container root (reached through a symlink)"
                    else:
                        reason = _errno_reason(exc.errno or errno_mod.EIO)
                    raise SafePathError(path=where, reason=reason, errno=exc.errno) from None
                mode = os.fstat(fd).st_mode
                if stat_mod.S_ISLNK(mode) and (pending or follow):
                    try:
                        links += 1
                        if links > MAX_LINKS:
                            raise SafePathError(
                                path=where,
                                reason=f"symlink loop (more than {MAX_LINKS} links)",
                                errno=errno_mod.ELOOP,
                            )
                        if _fs_type(stack[-1]) == _PROC_SUPER_MAGIC:
                            raise SafePathError(
                                path=where,
                                reason="refusing to follow a symlink on procfs (a magic link such as "
                                "/proc/<pid>/root leads out of the container root)",
                                errno=errno_mod.ELOOP,
                            )
                        target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                    if not target:
                        raise SafePathError(path=where, reason="is an empty symlink", errno=errno_mod.ENOENT)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                    pending.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
                    continue
                if pending and not stat_mod.S_ISDIR(mode):
                    os.close(fd)
                    raise SafePathError(
                        path=where, reason=f"is {_kind(mode)}, not a directory", errno=errno_mod.ENOTDIR
                    )
                stack.append(fd)
                names.append(name)
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    # -- queries -----------------------------------------------------------------------------------------

    def stat(self, path: str, *, follow: bool = True) -> os.stat_result:
        """stat (or lstat with ``follow=False``) of a container path, resolved inside the root."""
        fd = self.resolve(path, follow=follow)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def exists(self, path: str, *, follow: bool = True) -> bool:
        """True when the path resolves inside the root (a dangling or escaping link counts as absent)."""
        try:
            self.stat(path, follow=follow)
        except SafePathError as exc:
            if exc.errno in (errno_mod.ENOENT, errno_mod.ENOTDIR):
                return False
            raise
        return True

    def readlink(self, path: str) -> str:
        """The text of the symlink at `path` (parents resolved inside the root, the link not followed)."""
        fd = self.resolve(path, follow=False)
        try:
            if not stat_mod.S_ISLNK(os.fstat(fd).st_mode):
                raise SafePathError(path=path, reason="is not a symlink", errno=errno_mod.EINVAL)
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)

    def host_path(self, fd: int) -> str:
        """Where an fd from this root lives, as the kernel names it (for messages and tests only)."""
        return os.readlink(f"/proc/self/fd/{fd}")

    def open_dir(self, path: str) -> int:
        """An O_PATH fd on the directory at `path`; refuses anything that is not a directory."""
        fd = self.resolve(path)
        mode = os.fstat(fd).st_mode
        if not stat_mod.S_ISDIR(mode):
            os.close(fd)
            raise SafePathError(
                path=path, reason=f"is {_kind(mode)}, not a directory", errno=errno_mod.ENOTDIR
            )
        return fd

    def scandir(self, path: str, *, limit: int = 100_000) -> list[tuple[str, bool]]:
        """(name, is_symlink) for the entries of the directory at `path`, at most `limit` of them."""
        dfd = self.open_dir(path)
        try:
            rfd = os.open(f"/proc/self/fd/{dfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(dfd)
        out: list[tuple[str, bool]] = []
        try:
            with os.scandir(rfd) as entries:
                for entry in entries:
                    if len(out) >= limit:
                        break
                    out.append((entry.name, entry.is_symlink()))
        finally:
            os.close(rfd)
        return out

    def read_file(self, path: str, *, limit: int = 1 << 20) -> bytes:
        """The bytes of a regular file (symlinks followed inside the root), at most `limit` bytes.

        A FIFO, socket or device is refused before it is ever opened for reading; the reopen of the
        checked inode goes through ``/proc/self/fd`` with ``O_NONBLOCK`` so nothing can block.
        """
        fd = self.resolve(path)
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise SafePathError(
                    path=path, reason=f"is {_kind(st.st_mode)}, not a regular file", errno=errno_mod.EINVAL
                )
            if st.st_size > limit:
                raise SafePathError(path=path, reason=f"is larger than {limit} bytes", errno=errno_mod.EFBIG)
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        finally:
            os.close(fd)
        try:
            again = os.fstat(rfd)
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) or not stat_mod.S_ISREG(again.st_mode):
                raise SafePathError(
                    path=path, reason="changed while it was being opened", errno=errno_mod.EAGAIN
                )
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise SafePathError(
                        path=path, reason=f"is larger than {limit} bytes", errno=errno_mod.EFBIG
                    )
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(rfd)

    # -- changes -----------------------------------------------------------------------------------------

    def mkdir_all(self, path: str, *, mode: int = 0o755) -> int:
        """``mkdir -p`` inside the root; returns an O_PATH fd on the directory.

        Existing components are resolved inside the root (an image's ``/lib -> usr/lib`` is followed,
        in-root). A component that must be created is made with ``mkdirat`` on the parent fd and opened
        with ``O_NOFOLLOW|O_DIRECTORY``, so a symlink raced into its place is refused, never followed.
        A dangling symlink is refused rather than created through.
        """
        comps = split_container_path(path)
        cur = os.dup(self.fd)
        try:
            for i in range(len(comps)):
                prefix = comps[: i + 1]
                try:
                    nxt = self.resolve(_join(prefix))
                except SafePathError as exc:
                    if exc.errno != errno_mod.ENOENT:
                        raise
                    nxt = -1
                if nxt >= 0:
                    mode_now = os.fstat(nxt).st_mode
                    if not stat_mod.S_ISDIR(mode_now):
                        os.close(nxt)
                        raise SafePathError(
                            path=_join(prefix),
                            reason=f"is {_kind(mode_now)}, not a directory",
                            errno=errno_mod.ENOTDIR,
                        )
                    os.close(cur)
                    cur = nxt
                    continue
                # `name` is missing in `cur` (or is a dangling link): create the rest below `cur` by fd.
                for j in range(i, len(comps)):
                    if comps[j] == "..":
                        raise SafePathError(
                            path=path,
                            reason="'..' after a directory that does not exist yet",
                            errno=errno_mod.EINVAL,
                        )
                    parent, cur = cur, -1  # _mkdir_at consumes (closes) the parent fd
                    cur = self._mkdir_at(parent, comps[j], mode=mode, where=_join(comps[: j + 1]))
                return cur
            return cur
        except BaseException:
            if cur >= 0:
                os.close(cur)
            raise

    def _mkdir_at(self, dirfd: int, name: str, *, mode: int, where: str) -> int:
        """Create `name` in `dirfd` if needed and return an O_PATH fd on it; closes `dirfd`.

        `where` is the container path of `name`, for messages.
        """
        try:
            try:
                os.mkdir(name, mode, dir_fd=dirfd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise SafePathError(
                    path=where,
                    reason=f"cannot create the directory: {_errno_reason(exc.errno or errno_mod.EIO)}",
                    errno=exc.errno,
                ) from None
            try:
                return os.open(name, _PATH_FLAGS | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dirfd)
            except OSError as exc:
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except OSError:
                    raise SafePathError(
                        path=where, reason="vanished while it was being created", errno=exc.errno
                    ) from None
                if stat_mod.S_ISLNK(st.st_mode):
                    try:
                        text = os.readlink(name, dir_fd=dirfd)
                    except OSError:  # swapped again under us
                        text = "?"
                    reason = f"is a symlink to {text!r}, which does not exist inside the container root"
                else:
                    reason = f"is {_kind(st.st_mode)}, not a directory"
                raise SafePathError(path=where, reason=reason, errno=exc.errno) from None
        finally:
            os.close(dirfd)

    def _parent(self, path: str, *, create: bool) -> tuple[int, str]:
        comps = split_container_path(path)
        if not comps or comps[-1] == "..":
            raise SafePathError(
                path=path, reason="does not name a file (it ends in '/', '.' or '..')", errno=errno_mod.EINVAL
            )
        name = comps[-1]
        if len(name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            raise SafePathError(
                path=path,
                reason=f"the last component is longer than {_NAME_MAX} bytes",
                errno=errno_mod.ENAMETOOLONG,
            )
        parent = _join(comps[:-1])
        return (self.mkdir_all(parent) if create else self.open_dir(parent)), name

    def lstat_at(self, path: str) -> os.stat_result | None:
        """lstat of the last component (parents resolved inside the root); None when it is absent."""
        dfd, name = self._parent(path, create=False)
        try:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(dfd)

    def symlink(self, target: str, path: str) -> bool:
        """Make `path` a symlink whose text is `target` (``ln -sfn`` inside the root).

        Parents are created with `mkdir_all`. An existing symlink or regular file at `path` is replaced
        atomically (``symlinkat`` of a temporary name + ``renameat``); the old link is never followed.
        A directory, FIFO, socket or device there is refused. Returns False when the link already had
        that text. The *location* is always inside the root; the *text* may say anything, as in the image.
        """
        if not isinstance(target, str) or not target or "\0" in target or len(target) >= _PATH_MAX:
            raise SafePathError(
                path=path, reason=f"invalid symlink target {target!r}", errno=errno_mod.EINVAL
            )
        dfd, name = self._parent(path, create=True)
        try:
            for _ in range(8):  # a container racing us can at most make us retry
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    try:
                        os.symlink(target, name, dir_fd=dfd)
                        return True
                    except FileExistsError:
                        continue
                if stat_mod.S_ISLNK(st.st_mode):
                    if os.readlink(name, dir_fd=dfd) == target:
                        return False
                elif not stat_mod.S_ISREG(st.st_mode):
                    raise SafePathError(
                        path=path,
                        reason=f"is {_kind(st.st_mode)}; refusing to replace it with a symlink",
                        errno=errno_mod.EEXIST,
                    )
                self._replace(dfd, name, lambda tmp: os.symlink(target, tmp, dir_fd=dfd), shown=path)
                return True
            raise SafePathError(
                path=path, reason="kept changing while the symlink was being created", errno=errno_mod.EAGAIN
            )
        except OSError as exc:
            raise SafePathError(
                path=path, reason=_errno_reason(exc.errno or errno_mod.EIO), errno=exc.errno
            ) from None
        finally:
            os.close(dfd)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
        """Atomically replace the file at `path` with `data` (temp file + fsync + rename in the same dir).

        `durable` False skips the fsync (~3.5 ms on ext4 here): readers still see the old file or the new
        one, never a mix; only a host crash right after the write may lose it. For container-lifetime files.

        The temp file is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` on the parent fd. An existing symlink
        at `path` is replaced, not written through; a directory, FIFO, socket or device is refused.
        """
        dfd, name = self._parent(path, create=True)
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISLNK(st.st_mode)):
                raise SafePathError(
                    path=path,
                    reason=f"is {_kind(st.st_mode)}, not a regular file; refusing to replace it",
                    errno=errno_mod.EEXIST,
                )

            def create(tmp: str) -> None:
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd
                )
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchmod(fd, mode)
                    if durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)

            self._replace(dfd, name, create, shown=path)
        except OSError as exc:
            raise SafePathError(
                path=path, reason=_errno_reason(exc.errno or errno_mod.EIO), errno=exc.errno
            ) from None
        finally:
            os.close(dfd)

    @staticmethod
    def _replace(dfd: int, name: str, make: Callable[[str], None], *, shown: str) -> None:
        """Create a temporary sibling with `make(tmp)` and rename it over `name` (both relative to dfd)."""
        stem = name[: _NAME_MAX - 40]
        tmp = f".{stem}.gpudoctor-{os.urandom(8).hex()}"
        make(tmp)
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            try:  # noqa: SIM105 - contextlib costs import time on the hook's hot path
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            if exc.errno in (errno_mod.EISDIR, errno_mod.ENOTEMPTY, errno_mod.EEXIST):
                raise SafePathError(
                    path=shown, reason="is a directory; refusing to replace it", errno=exc.errno
                ) from None
            raise
