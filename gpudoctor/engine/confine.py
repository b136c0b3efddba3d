"""Run a trusted host binary confined to an untrusted container root (the update-ldcache hook's ldconfig).

Contract: `run_confined(root, binary, argv, env=, timeout=, name=)` returns ``(exit_code, output)``:
the binary (its bytes, already vetted by the caller as a static ELF) runs from a sealed memfd, chrooted
into the `root` fd, in new mount/pid/net/ipc/uts namespaces, with every procfs under the root covered by
an empty read-only tmpfs, all fds closed, rlimits set, no-new-privs, and only ``CAP_DAC_OVERRIDE`` and
``CAP_FOWNER`` left in the bounding set. `exit_code` is the binary's exit status (128+N for signal N),
`TIMED_OUT` when the deadline passed (the namespace is killed), or `SETUP_FAILED` when the confinement
itself could not be built (the output then says why; nothing was executed). Why each step is there is
explained in `gpudoctor.engine.hooks`.

Linux only, needs root (or CAP_SYS_ADMIN in the container's user namespace). Call it from a
single-threaded process: it forks.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import fcntl
import os
import select
import time

from gpudoctor.engine.safepath import Root

__all__ = ["SETUP_FAILED", "TIMED_OUT", "run_confined", "sealed_memfd"]

TIMED_OUT = -1
SETUP_FAILED = 125

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000

_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_CAP_DAC_OVERRIDE = 1
_CAP_FOWNER = 3
KEEP_CAPS = frozenset({_CAP_DAC_OVERRIDE, _CAP_FOWNER})
_CAP_VERSION_3 = 0x20080522

_PROC_SUPER_MAGIC = 0x9FA0
_TMPFS_MAGIC = 0x01021994
_MFD_EXEC = 0x0010
_OUTPUT_LIMIT = 64 * 1024
_SIGKILL = 9  # the same on every Linux architecture; `import signal` would load enum (~10 ms per start)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    lib.unshare.argtypes = [ctypes.c_int]
    lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    lib.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    return lib


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def sealed_memfd(binary: bytes, name: str) -> int:
    """A memfd holding `binary`, sealed against any change (write, grow, shrink, new seals)."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create(f"gpudoctor-{name}", flags | _MFD_EXEC)
    except OSError as exc:
        if exc.errno != errno_mod.EINVAL:  # MFD_EXEC is new in Linux 6.3
            raise
        fd = os.memfd_create(f"gpudoctor-{name}", flags)
    try:
        view = memoryview(binary)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE,
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def proc_mounts_under(mountinfo: str, root: str) -> list[str]:
    """Mount points (relative to `root`, as ``/proc``) of every procfs mounted at or below `root`."""
    found = []
    prefix = root.rstrip("/") + "/"
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        if right.split()[0] != "proc":
            continue
        point = _unescape(fields[4])
        if point == root or point.startswith(prefix):
            found.append("/" + point[len(prefix) :] if point != root else "/")
    found.sort(key=lambda p: (p.count("/"), p))
    kept: list[str] = []
    for point in found:
        if not any(point == k or point.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(point)
    return kept


def _fs_type(lib: ctypes.CDLL, fd: int) -> int:
    buf = ctypes.create_string_buffer(256)
    _check(lib.fstatfs(fd, buf), "fstatfs")
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _confine_and_exec(
    root_fd: int,
    memfd: int,
    argv: list[str],
    env: dict[str, str],
    cpu_seconds: int,
    path_in_ns: str,
    ns_pid: int | None,
) -> None:
    """In the forked child: build the confinement, then run the binary as pid 1 of a new pid namespace."""
    import resource

    lib = _libc()
    _check(lib.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        cap_last = int(f.read().strip() or b"40")
    if ns_pid is not None:
        ns_fd = os.open(f"/proc/{ns_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(lib.setns(ns_fd, _CLONE_NEWNS), "join the container's mount namespace")
        finally:
            os.close(ns_fd)
    _check(
        lib.unshare(_CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS), "unshare"
    )
    _check(lib.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    # The root fd names a mount of the namespace it was opened in; mounts can only be added to our own
    # copy, so reopen the (host-trusted) root path here and prove it is the same directory.
    new_root = os.open(path_in_ns, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    want, got = os.fstat(root_fd), os.fstat(new_root)
    if (want.st_dev, want.st_ino) != (got.st_dev, got.st_ino):
        raise OSError(errno_mod.ESTALE, f"{path_in_ns} is no longer the container root that was opened")
    root_real = os.readlink(f"/proc/self/fd/{new_root}")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        masks = proc_mounts_under(f.read(), root_real)
    if "/" in masks:
        raise OSError(errno_mod.EINVAL, f"the container root {root_real} is itself a procfs")
    os.fchdir(new_root)
    os.chroot(".")
    os.chdir("/")
    os.close(new_root)
    for point in masks:
        # After chroot the kernel resolves `point` inside the root; the mask hides every magic link.
        _check(
            lib.mount(
                b"gpudoctor-mask",
                os.fsencode(point),
                b"tmpfs",
                _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                b"size=4k,mode=0555",
            ),
            f"mask {point}",
        )
    for point in masks:
        fd = os.open(point, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if _fs_type(lib, fd) == _PROC_SUPER_MAGIC:
                raise OSError(errno_mod.EPERM, f"{point} is still procfs after masking")
        finally:
            os.close(fd)
    os.closerange(3, memfd)
    os.closerange(memfd + 1, 1 << 20)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    _check(lib.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    for cap in range(cap_last + 1):
        if cap not in KEEP_CAPS:
            _check(lib.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    lib.prctl(
        _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0
    )  # EINVAL before Linux 4.3: nothing to clear
    header = _CapHeader(version=_CAP_VERSION_3, pid=0)
    data = (_CapData * 2)()
    _check(lib.capget(ctypes.byref(header), data), "capget")
    for half in data:
        half.inheritable = 0
    _check(lib.capset(ctypes.byref(header), data), "capset")
    _check(lib.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    pid = os.fork()
    if pid == 0:
        try:
            lib.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
            os.execve(memfd, argv, env)
        except BaseException as exc:
            os.write(2, f"gpudoctor: cannot execute {argv[0]}: {exc}\n".encode())
        os._exit(127)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def run_confined(
    root: Root,
    binary: bytes,
    argv: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    name: str,
    path_in_ns: str,
    ns_pid: int | None = None,
) -> tuple[int, bytes]:
    """Run `binary` with `argv`/`env` confined to `root`; see the module docstring for the result.

    `path_in_ns` is the root's path in the mount namespace of `ns_pid` (None: our own namespace); the
    child reopens it there after unsharing and checks it is the same directory as `root`.
    """
    memfd = sealed_memfd(binary, name)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        for fd in (memfd, read_end, write_end):
            os.close(fd)
        raise
    if pid == 0:  # child
        try:
            os.close(read_end)
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            _confine_and_exec(root.fd, memfd, argv, env, max(1, int(timeout) + 1), path_in_ns, ns_pid)
        except BaseException as exc:
            try:
                os.write(2, f"gpudoctor: cannot confine {name} to the container root: {exc}\n".encode())
            finally:
                os._exit(SETUP_FAILED)
        os._exit(SETUP_FAILED)
    os.close(write_end)
    os.close(memfd)
    output = bytearray()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if not timed_out:
                    timed_out = True
                    os.kill(pid, _SIGKILL)  # the namespace's pid 1 dies with it (PDEATHSIG)
                    deadline = time.monotonic() + 5.0
                    continue
                break
            ready, _, _ = select.select([read_end], [], [], left)
            if not ready:
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            output += chunk
            if len(output) > _OUTPUT_LIMIT:
                del output[: len(output) - _OUTPUT_LIMIT]
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return TIMED_OUT, bytes(output)
    return os.waitstatus_to_exitcode(status), bytes(output)
