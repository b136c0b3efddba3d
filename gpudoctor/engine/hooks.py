"""OCI ``createContainer`` hooks: ``create-symlinks`` and ``update-ldcache``, and the hook entries that run them.

The hook entry (what the emitters put in ``config.json`` / a CDI spec)
----------------------------------------------------------------------
`hook_entry(kind, args)` (defined in the ctypes-free gpudoctor.engine.hookspec, re-exported here) is the
single source of truth. It returns::

    {"path": PY,
     "args": [PY, "-I", "-S", "<dir>/gpudoctor/engine/entry.py", "hook", KIND, "--opt=value", ...],
     "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"],
     "timeout": 30}

* ``env`` is always explicit. runc <= 1.2 runs createContainer hooks from ``runc init`` after it has
  copied the *container's* environment into its own; a hook without ``env`` inherits it, so an image's
  ``ENV LD_PRELOAD=/proc/self/cwd/x.so`` runs as host root before pivot_root (CVE-2025-23266,
  "NVIDIAScape"; the cwd of a createContainer hook is the container rootfs). Docker 20.10's runc 1.1 here
  reproduces it; ``tests/engine/test_attacks.py`` proves both the attack and that these entries stop it.
* ``-I`` drops ``PYTHON*`` variables, the user site and, crucially, the script dir/cwd from ``sys.path``
  (the cwd is the untrusted rootfs); ``-S`` skips site-packages (~60 ms per start). ``entry.py`` (written
  by the engine) puts the directory holding the ``gpudoctor`` package on ``sys.path`` and calls
  ``gpudoctor.commands.hook.main(argv)``. ``python -I -m gpudoctor.commands.hook KIND ...`` is the same.
* Options are ``--opt=value`` single argv elements, so no value can be read as an option.

The runtime shim (gpudoctor-runtime) does not start this entry for Docker's GPU containers: it swaps it for
the *relay* entry of gpudoctor.engine.hookserver (``/bin/sh``, the same commands, the same explicit
``env`` and ``timeout``), and a process it forked before exec'ing runc runs these same commands through
`run` with the root located from outside the container's mount namespace (the placement described at the
end of this docstring), which saves a Python start on every GPU container start. CDI specs and every other
emitter keep the entry above.

The hooks
---------
``create-symlinks --link=TARGET::LINK ...``
    For each pair, makes LINK (an absolute container path) a symlink with text TARGET (``ln -sfn``),
    creating parent dirs, all through `gpudoctor.engine.safepath` (openat2 ``RESOLVE_IN_ROOT``).
``update-ldcache --folder=DIR ... [--ldconfig=/host/path]``
    Writes ``/etc/ld.so.conf.d/00-gpudoctor.conf`` (the folders) through safepath, then runs the **host's**
    ldconfig (never the image's) confined to the container root. Design, because ``ldconfig -r ROOT`` is
    not safe: glibc's ``-r`` canonicalises paths in user space (``chroot_canon``) and then opens the
    *strings* from the host's view, so an image that races a symlink into ``/etc`` or a lib dir redirects
    the cache write to the host (the CVE-2025-23267 pattern). Instead:

    1. the hook copies the host ldconfig into a memfd (in the kernel, ``sendfile``), seals it
       (``F_SEAL_WRITE|GROW|SHRINK|SEAL``) so no container process can reach or rewrite the host binary
       through ``/proc/<pid>/exe`` (CVE-2019-5736 / CVE-2024-0135), and only then verifies that the sealed
       copy, the bytes that will run, is a *static* ELF (a dynamic one would load the image's ``ld.so``
       once chrooted; Ubuntu's ``/sbin/ldconfig`` shell wrapper is skipped for ``ldconfig.real``);
    2. it forks a child into a new pid namespace (it unshares ``NEWPID`` for its children only and returns
       to its own namespace right after the fork: the child is pid 1 there). The child (joins the
       container's mount namespace first when the hook runs outside it, through an fd on it when the hook
       server holds one), then ``unshare(NEWNS|NEWNET|NEWIPC|NEWUTS)`` and makes every mount private;
       reopens the root's host-trusted path in this private copy (an fd from before the unshare names the
       old namespace's mounts, which cannot be masked) and checks it is the same inode as the safepath root
       fd; then ``fchdir`` + ``chroot(".")``: from here the *kernel* resolves every path ldconfig opens
       inside the root;
    3. covers every procfs mounted under the root (runc has already mounted the container's ``/proc``)
       with an empty read-only tmpfs, because magic links such as ``/proc/1/root`` are the one way a
       chrooted path walk still leads to the host; verifies with fstatfs that no procfs is left;
    4. closes every fd, sets rlimits (CPU, file size, address space, fds), ``PR_SET_NO_NEW_PRIVS``, drops
       all capabilities but ``CAP_DAC_OVERRIDE``/``CAP_FOWNER`` from the bounding set (no ``CAP_SYS_CHROOT``,
       ``CAP_SYS_ADMIN``, ``CAP_DAC_READ_SEARCH``: no chroot or ``open_by_handle_at`` escape even for a
       compromised ldconfig), clears inheritable/ambient caps, then waits for the hook's go-ahead and
       ``fexecve``s the memfd as pid 1 of the new pid namespace with ``PR_SET_PDEATHSIG``;
    5. the hook waits with a deadline and kills the whole namespace on timeout (a FIFO named
       ``/etc/ld.so.conf`` or in an included dir would otherwise hang the container start).

    The child is forked before the drop-in is written, so it builds its confinement while the hook runs
    `preflight` and writes the drop-in; it executes nothing until both succeeded (otherwise it is told to
    exit). `preflight` refuses (fast, with a message) the layouts that would hang ldconfig:
    ``/etc/ld.so.conf`` or an ``ld.so.conf.d/*.conf`` that is a FIFO or device, and a ``lib*.so*`` symlink
    to a FIFO in a scanned dir (ldconfig skips a bare FIFO entry by its d_type, but follows a symlink to
    one and blocks in open(2)). The environment of ldconfig is ``LC_ALL=C`` and ``PATH`` only. The folders are also given on
    ldconfig's command line, so the cache is right even when the image's ``/etc/ld.so.conf`` does not
    include ``ld.so.conf.d``.

Both hooks read the OCI state from stdin (bounded, with a deadline), validate it like
``state-schema.json`` (``ociVersion``, ``id``, ``status``, ``bundle`` required; ``pid`` >= 0), read
``<bundle>/config.json`` strictly (no duplicate keys, no NaN, bounded size and nesting) for ``root.path``,
and open the root: in the container's mount namespace (runc's createContainer) that path as is; from
another mount namespace (a createRuntime/prestart placement) through ``/proc/<pid>/root``, so the
container's own mounts are seen. A hook whose pid namespace lies below the one of ``/proc`` (runc's
createContainer: the state's ``pid`` is 1, the container's own numbering) never looks that pid up in
``/proc``, where it would name the host's pid 1. The hook server instead passes the location it derived from its verified
relay (``/proc/<relay>/root`` + the rootfs, held open, and an fd on the relay's mount namespace). They
``chdir("/")`` first and refuse to run with ``LD_PRELOAD``, ``LD_AUDIT`` or ``LD_LIBRARY_PATH`` in their
environment (a sign the entry lost its ``env``). System calls that ``os`` lacks (openat2, mount, unshare,
setns, prctl, capset) go through gpudoctor.engine.libc, which binds them with ``_ctypes`` directly:
``import ctypes`` alone would cost ~8 ms on every start.
"""

from __future__ import annotations

import errno as errno_mod
import os
import stat as stat_mod
import sys
import time

from gpudoctor.engine import libc
from gpudoctor.engine.hookspec import (
    HOOK_ENV,
    HOOK_KINDS,
    HOOK_TIMEOUT,
    check_container_abspath,
    check_target,
    create_symlinks_hook,
    entry_script,
    hook_entry,
    update_ldcache_hook,
    validate_folder,
)
from gpudoctor.engine.safepath import Root, SafePathError

TYPE_CHECKING = False  # typing/collections.abc cost import time on every container start
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from gpudoctor.engine.confine import Confinement

__all__ = [
    "DROPIN_PATH",
    "HOOK_ENV",
    "HOOK_KINDS",
    "HOOK_TIMEOUT",
    "ContainerState",
    "HookError",
    "RootLocation",
    "container_root_path",
    "create_symlinks",
    "create_symlinks_hook",
    "entry_script",
    "hook_entry",
    "locate_container_root",
    "open_container_root",
    "open_host_ldconfig",
    "parse_json_strict",
    "preflight",
    "parse_link_spec",
    "read_state",
    "update_ldcache",
    "update_ldcache_hook",
    "validate_folder",
]

LDCONFIG_TIMEOUT = 20.0
DROPIN_PATH = "/etc/ld.so.conf.d/00-gpudoctor.conf"

STATE_LIMIT = 1 << 20
CONFIG_LIMIT = 64 << 20
STDIN_DEADLINE = 10.0
_LDCONFIG_CANDIDATES = (
    "/sbin/ldconfig.real",
    "/sbin/ldconfig",
    "/usr/sbin/ldconfig.real",
    "/usr/sbin/ldconfig",
)
_LDCONFIG_MAX = 64 << 20
_DANGEROUS_ENV = ("LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH")
_STATUSES = ("creating", "created", "running", "stopped")


class HookError(Exception):
    """A hook failed; the message says what, with the evidence, and is printed as is."""


# -- hook entries (what the emitters call) -------------------------------------------------------------------


def parse_link_spec(spec: str) -> tuple[str, str]:
    """Split ``TARGET::LINK``; HookError when it is not exactly two valid parts."""
    parts = spec.split("::")
    if len(parts) != 2:
        raise HookError(f"invalid --link {spec!r}: expected TARGET::LINK with exactly one '::'")
    target, link = parts
    try:
        check_target(target)
        check_container_abspath(link, "link path")
    except ValueError as exc:
        raise HookError(f"invalid --link {spec!r}: {exc}") from None
    return target, link


# -- strict JSON ---------------------------------------------------------------------------------------------


class _JSONReject(ValueError):
    pass


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if key in out:
            raise _JSONReject(f"duplicate key {key!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _JSONReject(f"{name} is not a JSON value")


def parse_json_strict(data: bytes, *, what: str) -> Any:
    """Parse JSON the way a careful Go reader would, rejecting what Python alone accepts.

    Refused with a HookError naming `what`: invalid UTF-8, a BOM, duplicate keys, NaN/Infinity, nesting
    deeper than the interpreter's recursion limit, lone surrogates.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        raise HookError(f"{what}: starts with a byte order mark; JSON must not")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HookError(f"{what}: is not valid UTF-8 (byte {exc.start})") from None
    from gpudoctor.engine import fastjson  # json itself imports re: ~12 ms on every container start

    try:
        value = fastjson.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _JSONReject as exc:
        raise HookError(f"{what}: is ambiguous JSON: {exc}") from None
    except RecursionError:
        raise HookError(f"{what}: is nested too deeply to be a real document") from None
    except ValueError as exc:
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        where = f" (line {line}, column {column})" if line is not None else ""
        raise HookError(f"{what}: is not valid JSON: {getattr(exc, 'msg', exc)}{where}") from None
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise HookError(f"{what} must be a string, got {type(value).__name__}")
    if "\0" in value:
        raise HookError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HookError(f"{what} contains a lone surrogate (invalid Unicode)") from None
    return value


# -- the OCI state and the container root ---------------------------------------------------------------------


class ContainerState:
    """The OCI state a runtime passes to a hook on stdin (state-schema.json)."""

    __slots__ = ("oci_version", "id", "status", "pid", "bundle", "annotations")

    def __init__(
        self,
        *,
        oci_version: str,
        id: str,
        status: str,
        pid: int | None,
        bundle: str,
        annotations: dict[str, str],
    ) -> None:
        self.oci_version = oci_version
        self.id = id
        self.status = status
        self.pid = pid
        self.bundle = bundle
        self.annotations = annotations

    @classmethod
    def from_json(cls, data: bytes) -> ContainerState:
        """Validate the state document; HookError with the field at fault otherwise."""
        doc = parse_json_strict(data, what="the OCI state on stdin")
        if not isinstance(doc, dict):
            raise HookError("the OCI state on stdin must be a JSON object")
        for key in ("ociVersion", "id", "status", "bundle"):
            if key not in doc:
                raise HookError(f"the OCI state on stdin has no {key!r} (required by the runtime spec)")
        oci_version = _string(doc["ociVersion"], "state.ociVersion")
        cid = _string(doc["id"], "state.id")
        status = _string(doc["status"], "state.status")
        if status not in _STATUSES:
            raise HookError(f"state.status is {status!r}; expected one of {', '.join(_STATUSES)}")
        bundle = _string(doc["bundle"], "state.bundle")
        if not bundle.startswith("/"):
            raise HookError(f"state.bundle {bundle!r} is not an absolute path")
        pid = doc.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid < 0 or pid > 2**31):
            raise HookError(f"state.pid {pid!r} is not a process id (an integer >= 0)")
        annotations = doc.get("annotations", {})
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise HookError("state.annotations must be an object of strings")
        return cls(
            oci_version=oci_version, id=cid, status=status, pid=pid, bundle=bundle, annotations=annotations
        )


def read_state(fd: int = 0, *, limit: int = STATE_LIMIT, deadline: float = STDIN_DEADLINE) -> ContainerState:
    """Read and validate the OCI state from `fd` (stdin): at most `limit` bytes within `deadline` s."""
    if os.isatty(fd):
        raise HookError(
            "expected the OCI state JSON on stdin; this command is run by the container "
            "runtime as a createContainer hook"
        )
    end = time.monotonic() + deadline
    chunks: list[bytes] = []
    size = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise HookError(
                f"the OCI state on stdin was not complete within {deadline:g} s (stdin was never closed)"
            )
        if not libc.wait_readable(fd, left):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise HookError(f"the OCI state on stdin is larger than {limit} bytes")
        chunks.append(chunk)
    return ContainerState.from_json(b"".join(chunks))


def _open_host_file(path: str, *, limit: int) -> tuple[int, os.stat_result]:
    """(fd, fstat) of a regular host file of at most `limit` bytes; HookError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise HookError(f"cannot read {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise HookError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise HookError(f"{path} is {st.st_size} bytes; refusing to read more than {limit}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_all(fd: int, path: str, *, limit: int) -> bytes:
    chunks = []
    size = 0
    while chunk := os.read(fd, 1 << 20):
        size += len(chunk)
        if size > limit:
            raise HookError(f"{path} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# config.json identity (path, dev, inode, size, mtime) -> the root path it names: `entry.py hooks` runs
# create-symlinks and update-ldcache in one process, and the second need not parse the same file again.
_rootfs_seen: dict[tuple[str, int, int, int, int], str] = {}


def _config_rootfs(bundle: str) -> str:
    cfg_path = os.path.join(bundle, "config.json")
    fd, st = _open_host_file(cfg_path, limit=CONFIG_LIMIT)
    try:
        key = (cfg_path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        rootfs = _rootfs_seen.get(key)
        if rootfs is None:
            rootfs = _rootfs_from_config(_read_all(fd, cfg_path, limit=CONFIG_LIMIT), cfg_path, bundle)
            _rootfs_seen.clear()
            _rootfs_seen[key] = rootfs
        return rootfs
    finally:
        os.close(fd)


def _rootfs_from_config(data: bytes, cfg_path: str, bundle: str) -> str:
    cfg = parse_json_strict(data, what=cfg_path)
    if not isinstance(cfg, dict):
        raise HookError(f"{cfg_path}: the top level must be a JSON object")
    root = cfg.get("root")
    if not isinstance(root, dict) or "path" not in root:
        raise HookError(f"{cfg_path}: has no root.path, so the container root is unknown")
    path = _string(root["path"], f"{cfg_path}: root.path")
    if not path:
        raise HookError(f"{cfg_path}: root.path is empty")
    return os.path.normpath(os.path.join(bundle, path))


def _same_mount_ns(pid: int) -> bool | None:
    try:
        mine = os.stat("/proc/self/ns/mnt")
        theirs = os.stat(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


class RootLocation:
    """Where the container root is: `open_path` to open from here; `path_in_ns` is its path inside the
    mount namespace of `ns_pid` (None: the hook's own namespace), for the confined ldconfig child.
    `ns_fd`, when given, is an open fd on that mount namespace (used instead of ``/proc/<ns_pid>/ns/mnt``,
    so a pid that is reused meanwhile cannot redirect the child)."""

    __slots__ = ("open_path", "path_in_ns", "ns_pid", "ns_fd")

    def __init__(self, *, open_path: str, path_in_ns: str, ns_pid: int | None, ns_fd: int | None = None) -> None:
        self.open_path = open_path
        self.path_in_ns = path_in_ns
        self.ns_pid = ns_pid
        self.ns_fd = ns_fd

    def __repr__(self) -> str:
        return (
            f"RootLocation(open_path={self.open_path!r}, path_in_ns={self.path_in_ns!r}, ns_pid={self.ns_pid}, "
            f"ns_fd={self.ns_fd})"
        )


def _pid_ns_nested() -> bool:
    """True when this process lives in a pid namespace below the one of the procfs at /proc.

    Then a pid from the OCI state names a process of *our* namespace (runc's createContainer state says
    ``"pid": 1``: runc init, as the container sees it), which /proc would read as some other process
    (the host's pid 1), so the state's pid must not be looked up there.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return len(line.split()) > 2
    except OSError:
        pass
    return False


def locate_container_root(state: ContainerState) -> RootLocation:
    """Find the container root of `state` (see the module docstring)."""
    rootfs = _config_rootfs(state.bundle)
    if not state.pid or _pid_ns_nested() or _same_mount_ns(state.pid) is not False:
        # No usable pid, or a createContainer hook inside the container's namespaces: the root path as is.
        return RootLocation(open_path=rootfs, path_in_ns=rootfs, ns_pid=None)
    # We are outside the container's mount namespace: go through the init process's root so that the
    # container's own mounts are visible. Before pivot_root its root is the host's "/", after it the rootfs.
    proc_root = f"/proc/{state.pid}/root"
    try:
        theirs = os.stat(proc_root)
        ours = os.stat("/")
    except OSError as exc:
        raise HookError(f"cannot reach the container's root through {proc_root}: {exc.strerror}") from None
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        return RootLocation(open_path=proc_root + rootfs, path_in_ns=rootfs, ns_pid=state.pid)
    return RootLocation(open_path=proc_root, path_in_ns="/", ns_pid=state.pid)


def container_root_path(state: ContainerState) -> str:
    """The host path to open as the container root."""
    return locate_container_root(state).open_path


def _root_for(at: RootLocation | None, stdin_fd: int, resolver: str) -> tuple[Root, RootLocation]:
    if at is None:
        return open_container_root(read_state(stdin_fd), backend=resolver)
    try:
        return Root.open(at.open_path, backend=resolver), at
    except SafePathError as exc:
        raise HookError(str(exc)) from None


def open_container_root(state: ContainerState, *, backend: str = "auto") -> tuple[Root, RootLocation]:
    """Open the container root of `state` for safepath work; also says where it is."""
    where = locate_container_root(state)
    try:
        return Root.open(where.open_path, backend=backend), where
    except SafePathError as exc:
        raise HookError(str(exc)) from None


# -- create-symlinks -----------------------------------------------------------------------------------------


def create_symlinks(root: Root, links: Sequence[tuple[str, str]]) -> list[str]:
    """Create each (target, link) inside `root`; returns the links that were created or changed."""
    changed = []
    for target, link in links:
        try:
            if root.symlink(target, link):
                changed.append(link)
        except SafePathError as exc:
            raise HookError(f"cannot create the symlink {link} -> {target} in the container: {exc}") from None
    return changed


# -- update-ldcache ------------------------------------------------------------------------------------------


def _elf_is_static(fd: int, path: str) -> None:
    """HookError unless the file in `fd` is an ELF executable without PT_INTERP (a static binary).

    Read with pread from the sealed memfd that will be executed, so what is checked is what runs.
    """
    head = os.pread(fd, 64, 0)
    if head[:2] == b"#!":
        raise HookError(f"the host ldconfig {path} is a script; it would run the image's shell once chrooted")
    if len(head) < 64 or head[:4] != b"\x7fELF":
        raise HookError(f"the host ldconfig {path} is not an ELF binary")
    cls, order = head[4], head[5]
    if order not in (1, 2) or cls not in (1, 2):
        raise HookError(f"the host ldconfig {path} has an unknown ELF header")
    little = order == 1

    def field(data: bytes, offset: int, size: int) -> int:
        return int.from_bytes(data[offset : offset + size], "little" if little else "big")

    if cls == 2:
        phoff, phentsize, phnum = field(head, 0x20, 8), field(head, 0x36, 2), field(head, 0x38, 2)
    else:
        phoff, phentsize, phnum = field(head, 0x1C, 4), field(head, 0x2A, 2), field(head, 0x2C, 2)
    if phentsize * phnum > 1 << 20:
        raise HookError(f"the host ldconfig {path} has an unusual ELF program header table")
    table = os.pread(fd, phentsize * phnum, phoff) if phnum else b""
    for i in range(phnum):
        off = i * phentsize
        if off + 4 > len(table):
            raise HookError(f"the host ldconfig {path} has a truncated ELF header")
        if field(table, off, 4) == 3:  # PT_INTERP
            raise HookError(
                f"the host ldconfig {path} is dynamically linked; chrooted into the container it "
                "would load the image's ld.so. Point --ldconfig at a static ldconfig"
            )


def open_host_ldconfig(explicit: str | None = None) -> tuple[str, int]:
    """(path, sealed memfd with a copy) of the host's static ldconfig; HookError when there is none.

    The copy is sealed first and then checked, so the binary that runs is the one that was vetted even if
    the host file changes meanwhile. The caller closes the memfd.
    """
    from gpudoctor.engine.confine import sealed_memfd

    candidates = [explicit] if explicit else list(_LDCONFIG_CANDIDATES)
    errors = []
    for path in candidates:
        if not path.startswith("/"):
            raise HookError(f"--ldconfig must be an absolute host path, got {path!r}")
        try:
            fd, _ = _open_host_file(path, limit=_LDCONFIG_MAX)
        except HookError as exc:
            errors.append(str(exc))
            continue
        try:
            memfd = sealed_memfd(fd, "ldconfig", limit=_LDCONFIG_MAX)
        except OSError as exc:
            raise HookError(f"cannot copy the host ldconfig {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        try:
            if explicit is None and os.pread(memfd, 2, 0) == b"#!":
                errors.append(f"{path} is a script wrapper")
                os.close(memfd)
                continue
            _elf_is_static(memfd, path)
        except BaseException:
            os.close(memfd)
            raise
        return path, memfd
    raise HookError("no usable host ldconfig: " + "; ".join(errors))


# Directories ldconfig always scans (glibc's trusted dirs on the common layouts).
_TRUSTED_DIRS = (
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
)
_PREFLIGHT_MAX_DIRS = 256


def _conf_dirs(text: str) -> list[str]:
    """The directories named by an ld.so.conf text (``include``/``hwcap`` lines are not followed)."""
    dirs = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("include", "hwcap")):
            continue
        for item in line.replace(",", " ").replace(":", " ").replace("\t", " ").split():
            if item.startswith("/"):
                dirs.append(item.split("=", 1)[0])
    return dirs


def _check_regular(root: Root, path: str) -> bool:
    """True when `path` is a regular file in the root, False when absent; HookError for anything else."""
    try:
        st = root.stat(path)
    except SafePathError as exc:
        if exc.errno in (errno_mod.ENOENT, errno_mod.ENOTDIR):
            return False
        raise HookError(f"refusing to run ldconfig: {exc}") from None
    if not stat_mod.S_ISREG(st.st_mode):
        raise HookError(
            f"refusing to run ldconfig: {path} in the container is {_kind_of(st.st_mode)}, "
            "not a regular file (ldconfig would block on it or read a device)"
        )
    return True


def _kind_of(mode: int) -> str:
    if stat_mod.S_ISFIFO(mode):
        return "a FIFO"
    if stat_mod.S_ISSOCK(mode):
        return "a socket"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "a device node"
    if stat_mod.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def preflight(root: Root, folders: Sequence[str]) -> None:
    """Refuse, with a clear message, the image layouts that would hang or mislead ldconfig.

    ldconfig blocks forever in open(2) on a FIFO named ``/etc/ld.so.conf`` (or an included ``*.conf``) and
    on a ``lib*.so*`` *symlink* that leads to a FIFO (a bare FIFO entry is skipped by its d_type). Those
    are checked here for the config files, the folders, the trusted dirs and the dirs the config names.
    A container that races a FIFO in after this check only costs the ldconfig deadline.
    """
    texts = []
    if _check_regular(root, "/etc/ld.so.conf"):
        texts.append(root.read_file("/etc/ld.so.conf").decode("utf-8", "replace"))
    try:
        conf_d = root.scandir("/etc/ld.so.conf.d", limit=10_000)
    except SafePathError as exc:
        if exc.errno not in (errno_mod.ENOENT, errno_mod.ENOTDIR):
            raise HookError(f"cannot use /etc/ld.so.conf.d in the container: {exc}") from None
        conf_d = []
    for name, _ in sorted(conf_d):
        if name.endswith(".conf") and _check_regular(root, f"/etc/ld.so.conf.d/{name}"):
            texts.append(root.read_file(f"/etc/ld.so.conf.d/{name}").decode("utf-8", "replace"))
    dirs = list(dict.fromkeys([*folders, *_TRUSTED_DIRS, *(d for t in texts for d in _conf_dirs(t))]))
    seen: set[tuple[int, int]] = set()
    for directory in dirs[:_PREFLIGHT_MAX_DIRS]:
        try:
            st = root.stat(directory)
            if (st.st_dev, st.st_ino) in seen:
                continue  # the same dir by another name (/lib -> usr/lib): its entries were checked
            seen.add((st.st_dev, st.st_ino))
            entries = root.scandir(directory)
        except SafePathError:
            continue  # absent or unusable: ldconfig skips it too (and runs confined either way)
        for name, is_link in entries:
            if is_link and ".so" in name and not name.startswith("."):
                path = f"{directory.rstrip('/')}/{name}"
                try:
                    st = root.stat(path)
                except SafePathError:
                    continue  # dangling or refused link: ldconfig's stat fails and it moves on
                if not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)):
                    raise HookError(
                        f"refusing to run ldconfig: {path} in the container is a symlink to "
                        f"{_kind_of(st.st_mode)} (ldconfig would block on it)"
                    )


def update_ldcache(
    root: Root,
    folders: Sequence[str],
    *,
    ldconfig: str | None = None,
    timeout: float = LDCONFIG_TIMEOUT,
    where: RootLocation | None = None,
    ldconfig_memfd: tuple[str, int] | None = None,
    confinement: Confinement | None = None,
) -> None:
    """Write the ld.so.conf.d drop-in and run the host ldconfig confined to `root` (module docstring).

    `where` says how the confined child finds the root again in its own mount namespace; by default
    `root` was opened from its path in the caller's namespace. `ldconfig_memfd` is (path, sealed memfd)
    from `open_host_ldconfig`, used instead of opening `ldconfig` here; the caller closes it.
    `confinement` is the ldconfig child for that memfd and `folders`, from `prefork_ldconfig` and already
    told this root (``enter``: the hook server does that while it makes the symlinks); it is run here, or
    cancelled when anything before fails. Without one, `start_ldconfig` forks it here, before preflight
    and the drop-in, which then overlap with its setup.
    """
    if where is None:
        where = RootLocation(open_path=root.path, path_in_ns=root.path, ns_pid=None)
    try:
        for folder in folders:
            try:
                validate_folder(folder)
            except ValueError as exc:
                raise HookError(f"invalid --folder: {exc}") from None
    except BaseException:
        if confinement is not None:
            confinement.cancel()
        raise
    if ldconfig_memfd is not None:
        _update_ldcache(root, folders, *ldconfig_memfd, timeout=timeout, where=where, confinement=confinement)
        return
    if confinement is not None:
        confinement.cancel()  # started for a memfd this call does not have
    path, memfd = open_host_ldconfig(ldconfig)
    try:
        _update_ldcache(root, folders, path, memfd, timeout=timeout, where=where)
    finally:
        os.close(memfd)


def ldconfig_argv(folders: Sequence[str]) -> list[str]:
    """ldconfig's argv for the drop-in's folders (also named on the command line: module docstring)."""
    return ["ldconfig", *dict.fromkeys(folders)]


LDCONFIG_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def prefork_ldconfig(memfd: int, folders: Sequence[str], *, timeout: float) -> Confinement:
    """The confined host ldconfig child for `folders`, forked before the container root is known
    (gpudoctor.engine.confine.prefork_confined): tell it the root with ``enter``, then hand it to
    `update_ldcache` as `confinement`. The hook server forks it while it waits for the container."""
    from gpudoctor.engine import confine

    return confine.prefork_confined(
        memfd, ldconfig_argv(folders), env=LDCONFIG_ENV, timeout=timeout, name="ldconfig"
    )


def start_ldconfig(
    root: Root | int, memfd: int, folders: Sequence[str], *, timeout: float, where: RootLocation
) -> Confinement:
    """`prefork_ldconfig` told `root` (the Root, or its fd, that `where` locates) at once: it builds its
    confinement now and execs when the result's ``run`` is called, so the caller can make the symlinks,
    run `preflight` and write the drop-in meanwhile."""
    confinement = prefork_ldconfig(memfd, folders, timeout=timeout)
    try:
        confinement.enter(root, path_in_ns=where.path_in_ns, ns_pid=where.ns_pid, ns_fd=where.ns_fd)
    except BaseException:
        confinement.cancel()
        raise
    return confinement


def _update_ldcache(
    root: Root,
    folders: Sequence[str],
    path: str,
    memfd: int,
    *,
    timeout: float,
    where: RootLocation,
    confinement: Confinement | None = None,
) -> None:
    from gpudoctor.engine import confine

    if confinement is None:
        confinement = start_ldconfig(root, memfd, folders, timeout=timeout, where=where)
    try:
        if confinement.argv != ldconfig_argv(folders):
            raise HookError("internal error: the prepared ldconfig run is for other folders")
        try:
            preflight(root, folders)
        except SafePathError as exc:
            raise HookError(f"refusing to run ldconfig: {exc}") from None
        if folders:
            content = "# written by gpudoctor hook update-ldcache (driver libraries mounted by gpudoctor)\n"
            content += "".join(f"{f}\n" for f in dict.fromkeys(folders))
            try:
                # No fsync: the drop-in lives as long as the container's root, and the hook rewrites it on
                # every start; ldconfig itself syncs the cache it writes.
                root.write_file(DROPIN_PATH, content.encode(), durable=False)
            except SafePathError as exc:
                raise HookError(f"cannot write {DROPIN_PATH} in the container: {exc}") from None
    except BaseException:
        confinement.cancel()
        raise
    code, output = confinement.run()
    if code == confine.TIMED_OUT:
        raise HookError(
            f"the host ldconfig ({path}) did not finish within {timeout:g} s inside the container "
            "root (a FIFO or a huge include list in the image's ld.so config?); it was killed"
        )
    if code == confine.SETUP_FAILED:
        raise HookError(
            "could not confine the host ldconfig to the container root, so it was not run: "
            + output.decode("utf-8", "replace").strip()[-2000:]
        )
    if code != 0:
        tail = output.decode("utf-8", "replace").strip()[-2000:]
        raise HookError(
            f"the host ldconfig ({path}) failed inside the container root (exit status {code})"
            + (f":\n{tail}" if tail else "")
        )


# -- command line --------------------------------------------------------------------------------------------

USAGE = """\
usage: gpudoctor hook create-symlinks --link=TARGET::LINK [--link=...]
       gpudoctor hook update-ldcache [--folder=DIR ...] [--ldconfig=HOST_PATH]

OCI createContainer hooks. The runtime passes the container state as JSON on stdin; the hooks work
inside the container root only (openat2 RESOLVE_IN_ROOT, or an equivalent fd walk).

  create-symlinks  make LINK (absolute container path) a symlink to TARGET, like `ln -sfn`
  update-ldcache   add DIRs to /etc/ld.so.conf.d/00-gpudoctor.conf and rebuild the ld cache with the
                   host's static ldconfig, chrooted into the container root in new namespaces

common options:
  --resolver=auto|openat2|walk   path resolution backend (default auto: openat2 when available)
  --timeout=SEC                  update-ldcache: deadline for ldconfig (default 20)
"""

_OPTIONS: dict[str, dict[str, bool]] = {
    # option -> repeatable?
    "create-symlinks": {"link": True, "resolver": False},
    "update-ldcache": {"folder": True, "ldconfig": False, "resolver": False, "timeout": False},
}


class UsageError(Exception):
    pass


def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, list[str]]]:
    """(kind, {option: [values]}); accepts ``--opt=value`` and ``--opt value``. UsageError otherwise."""
    if not argv:
        raise UsageError("missing hook name (create-symlinks or update-ldcache)")
    kind = argv[0]
    if kind not in _OPTIONS:
        raise UsageError(f"unknown hook {kind!r} (expected create-symlinks or update-ldcache)")
    allowed = _OPTIONS[kind]
    values: dict[str, list[str]] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument {arg!r}")
        name, eq, value = arg[2:].partition("=")
        if name not in allowed:
            raise UsageError(f"{kind}: unknown option --{name}")
        if not eq:
            if i >= len(argv):
                raise UsageError(f"{kind}: --{name} needs a value")
            value = argv[i]
            i += 1
        if name in values and not allowed[name]:
            raise UsageError(f"{kind}: --{name} given twice")
        values.setdefault(name, []).append(value)
    return kind, values


def run(
    argv: Sequence[str],
    *,
    stdin_fd: int = 0,
    at: RootLocation | None = None,
    ldconfig_memfd: tuple[str, int] | None = None,
    confinement: Confinement | None = None,
) -> int:
    """Run a hook; prints errors to stderr and returns the exit status (0, 1 failure, 2 usage).

    The OCI state is read from `stdin_fd`, unless `at` already says where the container root is (the
    hook server, gpudoctor.engine.hookserver). `ldconfig_memfd` is a host ldconfig the caller has already
    opened with `open_host_ldconfig` (path, sealed memfd); it is used as is and left open. `confinement`
    (update-ldcache only): see `update_ldcache`; it is run or cancelled whatever happens.
    """
    try:
        return _run(argv, stdin_fd=stdin_fd, at=at, ldconfig_memfd=ldconfig_memfd, confinement=confinement)
    finally:
        if confinement is not None:
            confinement.cancel()  # a no-op once it ran


def ldcache_options(opts: dict[str, list[str]]) -> tuple[list[str], float, str | None]:
    """(folders, ldconfig deadline, --ldconfig) of parsed update-ldcache options; UsageError if invalid."""
    timeout = LDCONFIG_TIMEOUT
    if "timeout" in opts:
        try:
            timeout = float(opts["timeout"][0])
        except ValueError:
            raise UsageError(f"--timeout must be a number of seconds, not {opts['timeout'][0]!r}") from None
        if not 0 < timeout <= 3600:
            raise UsageError("--timeout must be between 0 and 3600 seconds")
    return opts.get("folder", []), timeout, opts.get("ldconfig", [None])[0]


def _run(
    argv: Sequence[str],
    *,
    stdin_fd: int,
    at: RootLocation | None,
    ldconfig_memfd: tuple[str, int] | None,
    confinement: Confinement | None,
) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(USAGE)
        return 0
    try:
        kind, opts = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"gpudoctor hook: {exc}\n{USAGE}")
        return 2
    prefix = f"gpudoctor hook {kind}"
    try:
        os.chdir("/")  # a createContainer hook starts with cwd = the untrusted rootfs
        leaked = [k for k in _DANGEROUS_ENV if k in os.environ]
        if leaked:
            raise HookError(
                f"refusing to run: {', '.join(leaked)} is set in the hook's environment, so its OCI hook entry "
                "has no explicit env and the runtime passed the container's environment through "
                "(CVE-2025-23266). Regenerate the spec with gpudoctor (every entry carries env)"
            )
        resolver = opts.get("resolver", ["auto"])[0]
        if resolver not in ("auto", "openat2", "walk"):
            raise UsageError(f"--resolver must be auto, openat2 or walk, not {resolver!r}")
        if kind == "create-symlinks":
            links = [parse_link_spec(s) for s in opts.get("link", [])]
            root, _ = _root_for(at, stdin_fd, resolver)
            with root:
                create_symlinks(root, links)
        else:
            folders, timeout, ldconfig = ldcache_options(opts)
            root, where = _root_for(at, stdin_fd, resolver)
            with root:
                update_ldcache(
                    root,
                    folders,
                    ldconfig=ldconfig,
                    timeout=timeout,
                    where=where,
                    ldconfig_memfd=ldconfig_memfd,
                    confinement=confinement,
                )
    except UsageError as exc:
        sys.stderr.write(f"{prefix}: {exc}\n")
        return 2
    except HookError as exc:
        sys.stderr.write(f"{prefix}: error: {exc}\n")
        return 1
    except SafePathError as exc:
        sys.stderr.write(f"{prefix}: error: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{prefix}: error: {exc}\n")
        return 1
    except Exception as exc:  # a bug must fail the start with a message, never a traceback
        sys.stderr.write(f"{prefix}: internal error ({type(exc).__name__}: {exc}); the container was not "
                         "started\n")
        return 1
    return 0
