"""The few Linux calls the hooks need that ``os`` lacks, bound through the ``_ctypes`` C module directly.

Contract: every function raises ``OSError(errno, "WHAT: strerror")`` on failure (except `prctl`, which
returns the raw result, `openat2`, which raises a plain ``OSError(errno, strerror, path)``, and the poll
helpers `wait_any`/`wait_readable`, which report an interrupted wait as nothing ready). Nothing here
reads the environment or searches a path: the symbols come from the process's own namespace
(``dlopen(NULL)``, libc included), as ``ctypes.CDLL(None)`` would give them. Bindings are made on first
use.

Why not ``ctypes``: ``import ctypes`` costs ~8 ms of CPU per process on the development VM (its module
body builds dozens of types and a libffi callback thunk, and the interpreter pays again to tear them down
at exit), and the hooks start on every GPU container start. ``_ctypes`` itself loads in ~1 ms; the handful
of C types below are all the hooks use. Types match the C prototypes on every 64-bit and 32-bit Linux ABI
(``long`` for syscall numbers and results, ``unsigned long`` for prctl/mount flags).
"""

from __future__ import annotations

import _ctypes
import os
import sys

__all__ = [
    "add_seals",
    "capset_clear_inheritable",
    "errno",
    "fstatfs_type",
    "mount",
    "openat2",
    "prctl",
    "seccomp_filter",
    "setns",
    "setrlimit",
    "unshare",
    "wait_any",
    "wait_readable",
]

_SYS_OPENAT2 = 437  # the same number on every architecture (new-style syscall table)
_STATFS_SIZE = 256  # struct statfs is 120 bytes on 64-bit Linux, 64/84 on 32-bit: room to spare
_CAP_VERSION_3 = 0x20080522
_F_ADD_SEALS = 1033  # F_LINUX_SPECIFIC_BASE + 9, the same on every architecture
_POLLIN = 0x1
_EINTR = 4
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _UInt(_ctypes._SimpleCData):
    _type_ = "I"


class _Long(_ctypes._SimpleCData):
    _type_ = "l"


class _ULong(_ctypes._SimpleCData):
    _type_ = "L"


class _CharP(_ctypes._SimpleCData):
    _type_ = "z"  # bytes or None -> const char *


class _VoidP(_ctypes._SimpleCData):
    _type_ = "P"  # an _ctypes.Array instance or bytes -> void *


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


_buffer_types: dict[int, type] = {}


def _buffer(size: int) -> _ctypes.Array:
    """A zeroed C char[size]; ``.raw`` reads and writes its bytes."""
    cls = _buffer_types.get(size)
    if cls is None:
        cls = _buffer_types[size] = type("_Buf", (_ctypes.Array,), {"_type_": _Char, "_length_": size})
    buf: _ctypes.Array = cls()
    return buf


class _Self:
    """What ``CFuncPtr((name, obj))`` looks symbols up in: an object with the ``_handle`` of a dlopen."""

    __slots__ = ("_handle",)

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]  # NULL: ourselves


_self: _Self | None = None
_funcs: dict[str, object] = {}
_SIGNATURES: dict[str, tuple[type, tuple[type, ...]]] = {
    # name: (restype, argtypes), as in the C prototypes
    # syscall(2) is variadic and reads every argument as a long; only openat2 goes through it here.
    "syscall": (_Long, (_Long, _Long, _CharP, _CharP, _ULong)),
    "fstatfs": (_Int, (_Int, _VoidP)),
    "mount": (_Int, (_CharP, _CharP, _CharP, _ULong, _CharP)),
    "unshare": (_Int, (_Int,)),
    "setns": (_Int, (_Int, _Int)),
    "prctl": (_Int, (_Int, _ULong, _ULong, _ULong, _ULong)),
    "capget": (_Int, (_VoidP, _VoidP)),
    "capset": (_Int, (_VoidP, _VoidP)),
    "setrlimit": (_Int, (_Int, _VoidP)),
    "fcntl": (_Int, (_Int, _Int, _Int)),
    "poll": (_Int, (_VoidP, _ULong, _Int)),
}


def _func(name: str) -> object:
    func = _funcs.get(name)
    if func is None:
        global _self
        if _self is None:
            _self = _Self()
        restype, argtypes = _SIGNATURES[name]
        cls = type(
            f"_{name}",
            (_ctypes.CFuncPtr,),
            {
                "_flags_": _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO,
                "_restype_": restype,
                "_argtypes_": argtypes,
            },
        )
        func = _funcs[name] = cls((name, _self))
    return func


def _call(name: str, *args: object) -> int:
    result: int = _func(name)(*args)  # type: ignore[operator]
    return result


def errno() -> int:
    """The errno the last call left (ctypes' private copy, saved right after the call)."""
    return int(_ctypes.get_errno())


def _raise(what: str) -> None:
    err = errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def openat2(dirfd: int, path: bytes, flags: int, resolve: int) -> int:
    """One raw ``openat2(dirfd, path, {flags, 0, resolve})``; the fd, or OSError (errno kept, no retry)."""
    order = sys.byteorder
    how = flags.to_bytes(8, order) + bytes(8) + resolve.to_bytes(8, order)  # struct open_how
    fd = _call("syscall", _SYS_OPENAT2, dirfd, path, how, len(how))
    if fd < 0:
        err = errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return fd


def fstatfs_type(fd: int) -> int:
    """``f_type`` of the filesystem that holds `fd` (the first field of struct statfs)."""
    buf = _buffer(_STATFS_SIZE)
    if _call("fstatfs", fd, buf) != 0:
        _raise("fstatfs")
    word = 8 if sys.maxsize > 2**32 else 4  # __fsword_t is a long
    return int.from_bytes(buf.raw[:word], sys.byteorder) & 0xFFFFFFFF


def mount(
    source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None, *, what: str
) -> None:
    """mount(2); OSError naming `what` on failure."""
    if _call("mount", source, target, fstype, flags, data) != 0:
        _raise(what)


def unshare(flags: int, *, what: str = "unshare") -> None:
    if _call("unshare", flags) != 0:
        _raise(what)


def setns(fd: int, nstype: int, *, what: str = "setns") -> None:
    if _call("setns", fd, nstype) != 0:
        _raise(what)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)'s raw result (-1 with `errno` set on failure)."""
    return _call("prctl", option, arg2, arg3, arg4, arg5)


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) with a ``struct rlimit`` of two ``rlim_t`` (unsigned long). `resource` is the
    kernel's RLIMIT_* number, which differs on a few architectures (the caller knows which)."""
    word = 8 if sys.maxsize > 2**32 else 4
    limits = _buffer(2 * word)
    limits.raw = soft.to_bytes(word, sys.byteorder) + hard.to_bytes(word, sys.byteorder)
    if _call("setrlimit", resource, limits) != 0:
        _raise(f"setrlimit({resource})")


def add_seals(fd: int, seals: int) -> None:
    """``fcntl(fd, F_ADD_SEALS, seals)`` (a memfd created with MFD_ALLOW_SEALING)."""
    if _call("fcntl", fd, _F_ADD_SEALS, seals) != 0:
        _raise("fcntl(F_ADD_SEALS)")


def wait_any(fds: list[int], timeout: float) -> list[int]:
    """The fds of `fds` that are readable (or hung up) within `timeout` seconds; [] when none is.

    poll(2); an interrupted wait (EINTR) is simply reported as nothing ready, so callers loop on their
    own deadline.
    """
    order = sys.byteorder
    pfds = _buffer(8 * len(fds))  # struct pollfd {int fd; short events; short revents;}[]
    pfds.raw = b"".join(
        fd.to_bytes(4, order, signed=True) + _POLLIN.to_bytes(2, order) + bytes(2) for fd in fds
    )
    ms = max(0, min(int(timeout * 1000) + 1, 2**31 - 1))
    n = _call("poll", pfds, len(fds), ms)
    if n < 0:
        if errno() == _EINTR:
            return []
        _raise("poll")
    if n == 0:
        return []
    raw = pfds.raw
    return [fd for i, fd in enumerate(fds) if int.from_bytes(raw[8 * i + 6 : 8 * i + 8], order)]


def wait_readable(fd: int, timeout: float) -> bool:
    """Wait at most `timeout` seconds for `fd` to be readable (or hung up); True when it is."""
    return bool(wait_any([fd], timeout))


def seccomp_filter(program: list[tuple[int, int, int, int]]) -> None:
    """Install a classic-BPF seccomp filter for this thread and its future children (prctl
    ``PR_SET_SECCOMP``, ``SECCOMP_MODE_FILTER``); `program` is ``(code, jt, jf, k)`` instructions. Needs
    no-new-privs (or CAP_SYS_ADMIN)."""
    order = sys.byteorder
    raw = b"".join(
        code.to_bytes(2, order) + bytes((jt, jf)) + k.to_bytes(4, order) for code, jt, jf, k in program
    )
    instructions = _buffer(len(raw))
    instructions.raw = raw
    word = 8 if sys.maxsize > 2**32 else 4
    fprog = _buffer(2 * word)  # struct sock_fprog {unsigned short len; struct sock_filter *filter;}
    fprog.raw = (
        len(program).to_bytes(2, order)
        + bytes(word - 2)
        + _ctypes.addressof(instructions).to_bytes(word, order)
    )
    if _call("prctl", _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _ctypes.addressof(fprog), 0, 0) != 0:
        _raise("prctl(PR_SET_SECCOMP)")


def capset_clear_inheritable() -> None:
    """Clear this thread's inheritable capability set, keeping effective and permitted (capget + capset)."""
    order = sys.byteorder
    header = _buffer(8)
    header.raw = _CAP_VERSION_3.to_bytes(4, order) + bytes(4)  # {version, pid 0 = this thread}
    data = _buffer(24)  # struct __user_cap_data_struct[2]: {effective, permitted, inheritable} x 2
    if _call("capget", header, data) != 0:
        _raise("capget")
    raw = bytearray(data.raw)
    raw[8:12] = bytes(4)
    raw[20:24] = bytes(4)
    data.raw = bytes(raw)
    if _call("capset", header, data) != 0:
        _raise("capset")
