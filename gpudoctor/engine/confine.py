"""Run a trusted host binary confined to an untrusted container root (the update-ldcache hook's ldconfig).

Contract: `run_confined(root, memfd, argv, env=, timeout=, name=, path_in_ns=, ns_pid=)` returns
``(exit_code, output)``: the binary in `memfd` (a `sealed_memfd` whose contents the caller has vetted as a
static ELF) runs chrooted into the `root` fd, in new mount/pid/net/ipc/uts namespaces, as pid 1 of its pid
namespace, with every procfs under the root covered by an empty read-only tmpfs, all fds closed, rlimits
set, no-new-privs, only ``CAP_DAC_OVERRIDE`` and ``CAP_FOWNER`` left in the bounding set, and a seccomp
filter that answers fsync/fdatasync without syncing (x86_64, aarch64: see `_no_sync`). `exit_code`
is the binary's exit status (128+N for signal N), `TIMED_OUT` when the deadline passed (the namespace is
killed), or `SETUP_FAILED` when the confinement itself could not be built (the output then says why;
nothing was executed). Why each step is there is explained in `gpudoctor.engine.hooks`.

One fork: this process unshares only the pid namespace *for its children*, forks (the child is pid 1 of
the new namespace and builds the rest of the confinement before it execs), and returns to its own pid
namespace at once. The system calls that ``os`` lacks go through gpudoctor.engine.libc (no ``ctypes``).

Linux only, needs root (or CAP_SYS_ADMIN in the container's user namespace). Call it from a
single-threaded process: it forks.
"""

from __future__ import annotations

import errno as errno_mod
import os
import time

from gpudoctor.engine import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from gpudoctor.engine.safepath import Root

__all__ = [
    "SETUP_FAILED",
    "TIMED_OUT",
    "Confinement",
    "prefork_confined",
    "run_confined",
    "sealed_memfd",
    "start_confined",
]

TIMED_OUT = -1
SETUP_FAILED = 125
_CANCELLED = 124

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

# fsync(2)/fdatasync(2) of the confined binary are answered "done" without touching the disk (see
# `_no_sync`): (AUDIT_ARCH, fsync, fdatasync) per machine; elsewhere the binary syncs as usual.
_SYNC_CALLS = {"x86_64": (0xC000003E, 74, 75), "aarch64": (0xC00000B7, 82, 83)}
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000  # | errno 0: the call "succeeds" without running

_PROC_SUPER_MAGIC = 0x9FA0
_MFD_EXEC = 0x0010
_F_SEAL_SEAL, _F_SEAL_SHRINK, _F_SEAL_GROW, _F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
_OUTPUT_LIMIT = 64 * 1024
_SIGKILL = 9  # the same on every Linux architecture; `import signal` would load enum (~10 ms per start)
# RLIMIT_* of asm-generic/resource.h (every architecture but alpha, mips and sparc, which use `resource`).
_GENERIC_RLIMITS = {"CPU": 0, "FSIZE": 1, "CORE": 4, "NOFILE": 7, "AS": 9}


def _no_sync() -> None:
    """A seccomp filter that skips fsync/fdatasync and reports success.

    ldconfig syncs the cache it writes (a journal commit: ~2-4 ms of every GPU container start here). The
    cache lives in the container's writable layer and the hook rebuilds it on every start, so that
    durability buys nothing. A filter can only take abilities away; every other call is allowed.
    """
    calls = _SYNC_CALLS.get(os.uname().machine)
    if calls is None:
        return
    arch, fsync, fdatasync = calls
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    libc.seccomp_filter(
        [
            (ld_w_abs, 0, 0, 4),  # A = seccomp_data.arch
            (jeq_k, 0, 3, arch),  # another ABI: allow
            (ld_w_abs, 0, 0, 0),  # A = seccomp_data.nr
            (jeq_k, 2, 0, fsync),
            (jeq_k, 1, 0, fdatasync),
            (ret_k, 0, 0, _SECCOMP_RET_ALLOW),
            (ret_k, 0, 0, _SECCOMP_RET_ERRNO),
        ]
    )


def _rlimits() -> dict[str, int]:
    if not os.uname().machine.startswith(("mips", "sparc", "alpha")):
        return _GENERIC_RLIMITS
    import resource  # an extension module: ~0.5 ms, so only where the numbers differ

    return {name: getattr(resource, f"RLIMIT_{name}") for name in _GENERIC_RLIMITS}


def sealed_memfd(source: bytes | int, name: str, *, limit: int = 1 << 30) -> int:
    """A memfd holding `source` (bytes, or what the fd `source` holds from offset 0 to its end), sealed
    against any change (write, grow, shrink, new seals). The caller owns (closes) the result.

    An fd is copied in the kernel (sendfile); more than `limit` bytes from it is an OSError(EFBIG)."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create(f"gpudoctor-{name}", flags | _MFD_EXEC)
    except OSError as exc:
        if exc.errno != errno_mod.EINVAL:  # MFD_EXEC is new in Linux 6.3
            raise
        fd = os.memfd_create(f"gpudoctor-{name}", flags)
    try:
        if isinstance(source, int):
            offset = 0
            while sent := os.sendfile(fd, source, offset, limit + 1 - offset):
                offset += sent
                if offset > limit:
                    raise OSError(errno_mod.EFBIG, f"larger than {limit} bytes")
        else:
            view = memoryview(source)
            while view:
                view = view[os.write(fd, view) :]
        libc.add_seals(fd, _F_SEAL_SEAL | _F_SEAL_SHRINK | _F_SEAL_GROW | _F_SEAL_WRITE)
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


_TARGET_FIELDS = 8


def _read_target(go_fd: int) -> tuple[list[bytes], bytes] | None:
    """The target `Confinement.enter` sent (its NUL-terminated fields) and any bytes after it; None on EOF."""
    data = b""
    while data.count(b"\0") < _TARGET_FIELDS:
        try:
            chunk = os.read(go_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    fields = data.split(b"\0", _TARGET_FIELDS)
    return fields[:_TARGET_FIELDS], fields[_TARGET_FIELDS]


def _reopen(path: str, flags: int, dev: int, ino: int, what: str) -> int:
    """Open `path` (a /proc/<parent>/fd/N link) and check it is still the object the parent sent."""
    fd = os.open(path, flags | os.O_CLOEXEC)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (dev, ino):
        os.close(fd)
        raise OSError(errno_mod.ESTALE, f"{what} changed before the confinement got it")
    return fd


def _confine_and_exec(
    parent: int,
    memfd: int,
    argv: list[str],
    env: dict[str, str],
    cpu_seconds: int,
    go_fd: int,
) -> None:
    """In the forked child, pid 1 of its new pid namespace: prepare what does not depend on the container,
    wait for the target on `go_fd`, build the confinement, wait for the go byte (EOF: cancelled), then exec
    the binary."""
    if libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL) != 0:
        raise OSError(libc.errno(), "prctl(PR_SET_PDEATHSIG)")
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        cap_last = int(f.read().strip() or b"40")
    libc.unshare(_CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS)
    target = _read_target(go_fd)
    if target is None:
        os._exit(_CANCELLED)
    fields, rest = target
    root_no, root_dev, root_ino, ns_kind, ns_no, ns_dev, ns_ino = (f.decode() for f in fields[:7])
    path_in_ns = os.fsdecode(fields[7])
    # The parent's fds, reopened through procfs (this process was forked before they existed) and checked
    # against the identities the parent sent.
    root_fd = _reopen(
        f"/proc/{parent}/fd/{root_no}", os.O_PATH | os.O_DIRECTORY, int(root_dev), int(root_ino),
        "the container root",
    )  # fmt: skip
    if ns_kind in ("fd", "pid"):
        ns_path = f"/proc/{parent}/fd/{ns_no}" if ns_kind == "fd" else f"/proc/{ns_no}/ns/mnt"
        if ns_kind == "fd":
            ns = _reopen(ns_path, os.O_RDONLY, int(ns_dev), int(ns_ino), "the container's mount namespace")
        else:
            ns = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(ns, _CLONE_NEWNS, what="join the container's mount namespace")
        finally:
            os.close(ns)
    libc.unshare(_CLONE_NEWNS)
    libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None, what="make mounts private")
    # The root fd names a mount of the namespace it was opened in; mounts can only be added to our own
    # copy, so reopen the (host-trusted) root path here and prove it is the same directory.
    new_root = os.open(path_in_ns, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    want, got = os.fstat(root_fd), os.fstat(new_root)
    if (want.st_dev, want.st_ino) != (got.st_dev, got.st_ino):
        raise OSError(errno_mod.ESTALE, f"{path_in_ns} is no longer the container root that was opened")
    root_real = os.readlink(f"/proc/self/fd/{new_root}")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        masks = proc_mounts_under(info.read(), root_real)
    if "/" in masks:
        raise OSError(errno_mod.EINVAL, f"the container root {root_real} is itself a procfs")
    os.fchdir(new_root)
    os.chroot(".")
    os.chdir("/")
    os.close(new_root)
    os.close(root_fd)
    for point in masks:
        # After chroot the kernel resolves `point` inside the root; the mask hides every magic link.
        libc.mount(
            b"gpudoctor-mask",
            os.fsencode(point),
            b"tmpfs",
            _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
            b"size=4k,mode=0555",
            what=f"mask {point}",
        )
    for point in masks:
        fd = os.open(point, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if libc.fstatfs_type(fd) == _PROC_SUPER_MAGIC:
                raise OSError(errno_mod.EPERM, f"{point} is still procfs after masking")
        finally:
            os.close(fd)
    low = 3
    for keep in sorted((memfd, go_fd)):
        os.closerange(low, keep)
        low = keep + 1
    os.closerange(low, 1 << 20)
    rl = _rlimits()
    libc.setrlimit(rl["CORE"], 0, 0)
    libc.setrlimit(rl["CPU"], cpu_seconds, cpu_seconds)
    libc.setrlimit(rl["FSIZE"], 256 << 20, 256 << 20)
    libc.setrlimit(rl["NOFILE"], 1024, 1024)
    libc.setrlimit(rl["AS"], 8 << 30, 8 << 30)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise OSError(libc.errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    for cap in range(cap_last + 1):
        if cap not in KEEP_CAPS and libc.prctl(_PR_CAPBSET_DROP, cap) != 0:
            raise OSError(libc.errno(), f"drop capability {cap}")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)  # EINVAL before Linux 4.3: nothing to clear
    libc.capset_clear_inheritable()
    if libc.prctl(_PR_SET_DUMPABLE, 0) != 0:
        raise OSError(libc.errno(), "prctl(PR_SET_DUMPABLE)")
    _no_sync()
    go = rest[:1]
    while not go:
        try:
            go = os.read(go_fd, 1)
        except InterruptedError:
            continue
        if not go:
            os._exit(_CANCELLED)
    os.close(go_fd)
    os.execve(memfd, argv, env)


def _fork_into_new_pid_namespace() -> int:
    """fork(), the child being pid 1 of a new pid namespace; this process's own namespaces stay as they were.

    unshare(CLONE_NEWPID) only changes where this process's *next* child goes; setns back to our own pid
    namespace right after the fork restores that, so later forks (and callers that are long-lived
    processes) are unaffected. One fork instead of an intermediate process that forks pid 1 saves a
    Python fork, exit and wait on every GPU container start.
    """
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.unshare(_CLONE_NEWPID, what="unshare(CLONE_NEWPID)")
        try:
            pid = os.fork()
        except BaseException:
            libc.setns(own, _CLONE_NEWPID, what="return to our pid namespace")
            raise
        if pid:
            try:
                libc.setns(own, _CLONE_NEWPID, what="return to our pid namespace")
            except OSError:
                os.kill(pid, _SIGKILL)
                os.waitpid(pid, 0)
                raise
        return pid
    finally:
        os.close(own)


class Confinement:
    """A forked child that is told its container root by `enter`, builds its confinement at once, and
    execs the binary only when `run` says so.

    Made by `prefork_confined` (before the root is known: the hook server forks it while it waits for the
    container) or `start_confined` (fork and enter). The caller can do other work meanwhile (the hooks write
    the symlinks and the ld.so.conf.d drop-in while the child sets up namespaces, the chroot and the
    masks); then exactly one of `run` (exec, wait, collect) or `cancel` (the child exits without executing
    anything).
    """

    __slots__ = ("pid", "name", "argv", "timeout", "_out", "_go", "_entered")

    def __init__(self, *, pid: int, name: str, argv: list[str], timeout: float, out: int, go: int) -> None:
        self.pid = pid
        self.name = name
        self.argv = argv
        self.timeout = timeout
        self._out = out
        self._go = go
        self._entered = False

    def enter(
        self, root: Root | int, *, path_in_ns: str, ns_pid: int | None = None, ns_fd: int | None = None
    ) -> None:
        """Send the child its target: `root` (a Root or its fd, kept open by the caller until `run` or
        `cancel`), the root's path in the mount namespace of `ns_fd` / `ns_pid` (None: ours). The child
        reopens both through ``/proc/<this pid>/fd`` and checks they are the same objects."""
        root_fd = root if isinstance(root, int) else root.fd
        rst = os.fstat(root_fd)
        if ns_fd is not None:
            nst = os.fstat(ns_fd)
            ns: list[object] = ["fd", ns_fd, nst.st_dev, nst.st_ino]
        elif ns_pid is not None:
            ns = ["pid", ns_pid, 0, 0]
        else:
            ns = ["none", 0, 0, 0]
        fields = [str(v).encode() for v in (root_fd, rst.st_dev, rst.st_ino, *ns)] + [os.fsencode(path_in_ns)]
        if any(b"\0" in f for f in fields):
            raise ValueError("a path with a NUL byte cannot be a container root")
        try:  # noqa: SIM105 - contextlib costs import time on every container start
            os.write(self._go, b"".join(f + b"\0" for f in fields))
        except BrokenPipeError:
            pass  # the child is gone: run() reports its output
        self._entered = True

    def run(self) -> tuple[int, bytes]:
        """Let the child exec and wait for it: ``(exit_code, output)`` as described in the module docstring."""
        if not self._entered:
            raise RuntimeError("Confinement.run before enter")
        try:
            os.write(self._go, b"x")
        except BrokenPipeError:
            pass  # setup failed and the child is gone: its output says why
        finally:
            os.close(self._go)
            self._go = -1
        output = bytearray()
        deadline = time.monotonic() + self.timeout
        timed_out = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    if not timed_out:
                        timed_out = True
                        # pid 1: the kernel kills the rest of its namespace with it
                        os.kill(self.pid, _SIGKILL)
                        deadline = time.monotonic() + 5.0
                        continue
                    break
                if not libc.wait_readable(self._out, left):
                    continue
                chunk = os.read(self._out, 65536)
                if not chunk:
                    break
                output += chunk
                if len(output) > _OUTPUT_LIMIT:
                    del output[: len(output) - _OUTPUT_LIMIT]
        finally:
            os.close(self._out)
            self._out = -1
        _, status = os.waitpid(self.pid, 0)
        if timed_out:
            return TIMED_OUT, bytes(output)
        code = os.waitstatus_to_exitcode(status)
        return (code if code >= 0 else 128 - code), bytes(output)

    def cancel(self) -> None:
        """Stop the child before it executes anything, and reap it."""
        if self._go < 0:
            return
        os.close(self._go)
        self._go = -1
        os.close(self._out)
        self._out = -1
        os.waitpid(self.pid, 0)


def prefork_confined(
    memfd: int, argv: list[str], *, env: dict[str, str], timeout: float, name: str
) -> Confinement:
    """Fork the confined child for the binary in `memfd` (a sealed_memfd, left open for the caller to close)
    with `argv`/`env`, before the container root is known; `Confinement.enter` names it, `run` execs.

    The child does what does not depend on the container at once (pid namespace, death signal, new network,
    IPC and UTS namespaces) and then waits. `timeout` counts from `run`.
    """
    # Our pid as /proc numbers it, which is not os.getpid() when this process is in a pid namespace below
    # procfs's (a createContainer hook in the container's): the child finds our fds under /proc/<it>/fd.
    parent = int(os.readlink("/proc/self"))
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _fork_into_new_pid_namespace()
    except BaseException:
        for fd in (out_r, out_w, go_r, go_w):
            os.close(fd)
        raise
    if pid == 0:  # child: pid 1 of the new pid namespace
        try:
            os.close(out_r)
            os.close(go_w)
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            _confine_and_exec(parent, memfd, argv, env, max(1, int(timeout) + 1), go_r)
        except BaseException as exc:
            try:
                os.write(2, f"gpudoctor: cannot confine {name} to the container root: {exc}\n".encode())
            finally:
                os._exit(SETUP_FAILED)
        os._exit(SETUP_FAILED)
    os.close(out_w)
    os.close(go_r)
    return Confinement(pid=pid, name=name, argv=list(argv), timeout=timeout, out=out_r, go=go_w)


def start_confined(
    root: Root | int,
    memfd: int,
    argv: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    name: str,
    path_in_ns: str,
    ns_pid: int | None = None,
    ns_fd: int | None = None,
) -> Confinement:
    """`prefork_confined` and `Confinement.enter` in one: the child starts building its confinement for
    `root` now and execs when the result's `run` is called.

    `path_in_ns` is the root's path in the mount namespace of `ns_pid` (None: our own namespace), or of
    the namespace fd `ns_fd` when that is given; the child reopens it there after unsharing and checks it
    is the same directory as `root`. `timeout` counts from `run`.
    """
    confinement = prefork_confined(memfd, argv, env=env, timeout=timeout, name=name)
    try:
        confinement.enter(root, path_in_ns=path_in_ns, ns_pid=ns_pid, ns_fd=ns_fd)
    except BaseException:
        confinement.cancel()
        raise
    return confinement


def run_confined(
    root: Root,
    memfd: int,
    argv: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    name: str,
    path_in_ns: str,
    ns_pid: int | None = None,
    ns_fd: int | None = None,
) -> tuple[int, bytes]:
    """`start_confined` and `Confinement.run` in one: run the binary confined to `root` and wait for it."""
    return start_confined(
        root,
        memfd,
        argv,
        env=env,
        timeout=timeout,
        name=name,
        path_in_ns=path_in_ns,
        ns_pid=ns_pid,
        ns_fd=ns_fd,
    ).run()
