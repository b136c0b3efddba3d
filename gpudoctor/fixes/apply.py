"""The machinery every fix applies with: the lock, backups, atomic writes, filesystem actions, commands.

Guarantees (issue 6, "bad input and faults"):
- One fix run at a time per root: :class:`FixLock` (``flock`` on ``/run/lock/gpudoctor.lock`` under the
  root, holding the owner's PID). A second run waits up to its timeout, then fails with "locked by PID N".
- Every file is backed up (complete and fsynced) under ``/var/backups/gpudoctor`` before it changes.
- Every write is temp file + fsync + rename + directory fsync, keeping the file's mode and owner. A run
  killed at any moment leaves the old file or the new one, never a mix; the backup stays.
- A file that changed since the plan was made is not written (the plan is stale; plan again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shlex
import stat
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from gpudoctor.fixes.base import (
    ApplyResult,
    Command,
    DeviceNode,
    FileEdit,
    FixContext,
    FixError,
    FsAction,
    OutputCallback,
    Plan,
    StageHook,
    Symlink,
)
from gpudoctor.host.root import HostRoot

LOCK_PATH = "/run/lock/gpudoctor.lock"
BACKUP_DIR = "/var/backups/gpudoctor"
_TEMP_MARK = ".gpudoctor-tmp-"


class LockedError(FixError):
    """Another fix run holds the lock."""


# -- text files ----------------------------------------------------------------------------------------------


def read_config_text(root: HostRoot, host_path: str) -> str | None:
    """The content of a config file that a fix may edit; None when it does not exist.

    Raises FixError for something that is not a readable UTF-8 regular file: gpudoctor never rewrites a
    file it could not read back exactly.
    """
    real = root.path(host_path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FixError(f"cannot read {host_path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FixError(f"{host_path} is not a regular file; gpudoctor edits only regular files")
    try:
        data = root.read_bytes(host_path, max_bytes=64 * 1024 * 1024)
    except OSError as exc:
        hint = " (run as root)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        raise FixError(f"cannot read {host_path}: {exc.strerror}{hint}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FixError(
            f"{host_path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); gpudoctor will not edit it. "
            "Fix or remove the file, then run the fix again."
        ) from None


# -- the lock ------------------------------------------------------------------------------------------------


class FixLock:
    """An exclusive lock for one fix run on one root. Use as a context manager.

    The lock is an ``flock`` on a file that holds the owner's PID, so it dies with its owner (a killed
    run never leaves a stale lock) and a second run can say who holds it.
    """

    def __init__(self, root: HostRoot, *, timeout: float = 0.0, host_path: str = LOCK_PATH) -> None:
        self.root = root
        self.timeout = timeout
        self.host_path = host_path
        self._fd: int | None = None

    def holder(self) -> int | None:
        """PID written by the current holder, or None when unknown."""
        try:
            text = self.root.path(self.host_path).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def acquire(self) -> None:
        real = self.root.path(self.host_path)
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(real, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise FixError(
                f"cannot create the lock file {self.host_path}: {exc.strerror}"
                + (" (run as root)" if exc.errno in (errno.EACCES, errno.EPERM) else "")
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid = self.holder()
                    os.close(fd)
                    who = f"PID {pid}" if pid is not None else "another process"
                    raise LockedError(
                        f"another gpudoctor fix is running: {self.host_path} is locked by {who}. "
                        "Wait for it to finish and run this again."
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FixLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- backups and atomic writes -------------------------------------------------------------------------------


def timestamp() -> str:
    """UTC timestamp for backup names, sortable and unique enough (microseconds)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale_temps(real: Path) -> list[Path]:
    """Remove temp files that a killed run left next to `real` (their writer PID is gone). Call under the lock."""
    removed: list[Path] = []
    prefix = f".{real.name}{_TEMP_MARK}"
    try:
        names = os.listdir(real.parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        try:
            os.unlink(real.parent / name)
            removed.append(real.parent / name)
        except OSError:
            pass
    return removed


def _write_temp_and_rename(
    real: Path,
    data: bytes,
    *,
    mode: int,
    owner: tuple[int, int] | None,
    host_path: str,
    stage_hook: StageHook | None,
    partial_stage: bool,
) -> None:
    # The temp name never ends like the target, so config globs (*.toml, *.conf, *.list) never pick it up.
    tmp = real.parent / f".{real.name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            half = len(data) // 2
            if partial_stage and stage_hook is not None:
                os.write(fd, data[:half])
                os.fsync(fd)
                stage_hook("temp-partial", host_path)
                rest = data[half:]
            else:
                rest = data
            view = memoryview(rest)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchmod(fd, mode)
            if owner is not None:
                # Not root: the file keeps our ownership (only root can give a file away).
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, *owner)
            os.fsync(fd)
        finally:
            os.close(fd)
        if stage_hook is not None:
            stage_hook("temp-written", host_path)
        os.rename(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if stage_hook is not None:
        stage_hook("renamed", host_path)
    _fsync_dir(real.parent)


def backup_file(root: HostRoot, host_path: str, *, stamp: str | None = None) -> str | None:
    """Copy `host_path` to ``/var/backups/gpudoctor/<path>.<timestamp>`` under the root; return its host path.

    None when the file does not exist. The copy itself is atomic, so a backup that exists is complete.
    """
    real = root.path(host_path)
    try:
        st = os.stat(real)
        data = real.read_bytes()
    except FileNotFoundError:
        return None
    resolved = root.resolve(host_path)
    backup_host = f"{BACKUP_DIR}{resolved}.{stamp or timestamp()}"
    backup_real = root.path(os.path.dirname(backup_host)) / os.path.basename(backup_host)
    backup_real.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_temp_and_rename(
        backup_real,
        data,
        mode=stat.S_IMODE(st.st_mode),
        owner=(st.st_uid, st.st_gid),
        host_path=backup_host,
        stage_hook=None,
        partial_stage=False,
    )
    return backup_host


def atomic_write(
    root: HostRoot,
    host_path: str,
    data: bytes,
    *,
    new_mode: int = 0o644,
    stage_hook: StageHook | None = None,
) -> None:
    """Replace `host_path` with `data` atomically (temp + fsync + rename + dir fsync).

    An existing file keeps its mode and owner; a symlinked path is written at its target (inside the
    root), so the link stays. Missing parent directories are created (0755).
    """
    real = _real_target(root, host_path)
    mode, owner = new_mode, None
    try:
        st = os.stat(real)
    except FileNotFoundError:
        real.parent.mkdir(parents=True, exist_ok=True)
    else:
        if not stat.S_ISREG(st.st_mode):
            raise FixError(f"{host_path} is not a regular file; gpudoctor edits only regular files")
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    cleanup_stale_temps(real)
    _write_temp_and_rename(
        real, data, mode=mode, owner=owner, host_path=host_path, stage_hook=stage_hook, partial_stage=True
    )


def _real_target(root: HostRoot, host_path: str) -> Path:
    return root.path(host_path, follow=True)


def _describe_write_error(path: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = "run gpudoctor as root (sudo), or point --root at a tree you can write"
    elif exc.errno == errno.EROFS:
        hint = "the filesystem is mounted read-only; remount it read-write or edit the file where it is writable"
    elif exc.errno == errno.ENOSPC:
        hint = "free some space and run the fix again"
    else:
        hint = "check the path and run the fix again"
    return f"cannot write {path}: {reason}. The file is unchanged; {hint}."


def write_edit(
    root: HostRoot, edit: FileEdit, *, stage_hook: StageHook | None = None, stamp: str | None = None
) -> str | None:
    """Back up and atomically write one edit; return the backup's host path (None for a new file).

    Raises FixError when the file changed since the plan, or when it cannot be written.
    """
    current = read_config_text(root, edit.path)
    if current != edit.before:
        raise FixError(
            f"{edit.path} changed since the plan was made; nothing was written. Run the fix again "
            "to plan against the current file."
        )
    try:
        backup = backup_file(root, edit.path, stamp=stamp)
    except OSError as exc:
        raise FixError(
            f"cannot back up {edit.path} under {BACKUP_DIR}: {exc.strerror}. The file is unchanged."
        ) from None
    if backup is not None and stage_hook is not None:
        stage_hook("backup-written", edit.path)
    try:
        atomic_write(root, edit.path, edit.after.encode("utf-8"), new_mode=edit.mode, stage_hook=stage_hook)
    except OSError as exc:
        raise FixError(_describe_write_error(edit.path, exc)) from None
    return backup


# -- filesystem actions (device nodes, links) ----------------------------------------------------------------


def _describe_action(action: FsAction) -> str:
    return shlex.join(action.argv)


def apply_action(root: HostRoot, action: FsAction) -> bool:
    """Create a device node or link under the root; False when it was already right (nothing done)."""
    parent = root.path(os.path.dirname(action.path))
    real = parent / os.path.basename(action.path)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if isinstance(action, DeviceNode):
            return _make_node(real, action)
        return _make_link(real, action)
    except OSError as exc:
        hint = " (creating device nodes needs root: CAP_MKNOD)" if exc.errno in (errno.EPERM, errno.EACCES) else ""
        raise FixError(f"cannot create {action.path}: {exc.strerror}{hint}") from None


def _make_node(real: Path, node: DeviceNode) -> bool:
    want = os.makedev(node.major, node.minor)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == want:
            changed = False
            if stat.S_IMODE(st.st_mode) != node.mode:
                os.chmod(real, node.mode)
                changed = True
            if (st.st_uid, st.st_gid) != (node.uid, node.gid):
                os.chown(real, node.uid, node.gid)
                changed = True
            return changed
        raise FixError(
            f"{node.path} exists but is not character device {node.major}:{node.minor}; "
            "gpudoctor will not replace it. Remove it and run the fix again."
        )
    tmp = real.parent / f".{real.name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    os.mknod(tmp, stat.S_IFCHR | 0o600, want)
    try:
        os.chown(tmp, node.uid, node.gid)
        os.chmod(tmp, node.mode)  # explicit: mknod's mode is filtered by the umask
        os.rename(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def _make_link(real: Path, link: Symlink) -> bool:
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISLNK(st.st_mode):
            raise FixError(f"{link.path} exists and is not a symlink; gpudoctor will not replace it")
        if os.readlink(real) == link.target:
            return False
    tmp = real.parent / f".{real.name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    os.symlink(link.target, tmp)
    try:
        os.rename(tmp, real)  # replaces a wrong link atomically
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


# -- commands ------------------------------------------------------------------------------------------------


def run_command(argv: tuple[str, ...], on_output: OutputCallback, *, timeout: float | None = None) -> int:
    """Run `argv`, streaming its output (stdout and stderr) to `on_output` line by line; return its status.

    ``kill -SIG PID`` is done in-process, so the reload works on a host without procps.
    """
    if len(argv) == 3 and argv[0] == "kill" and argv[1].startswith("-") and argv[2].isdigit():
        return _builtin_kill(argv, on_output)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        on_output(f"{argv[0]}: command not found")
        return 127
    except PermissionError:
        on_output(f"{argv[0]}: permission denied")
        return 126
    assert proc.stdout is not None
    start = time.monotonic()
    for line in proc.stdout:
        on_output(line.rstrip("\n"))
        if timeout is not None and time.monotonic() - start > timeout:
            proc.kill()
            on_output(f"{argv[0]}: killed after {timeout:.0f}s")
            break
    return proc.wait()


def _builtin_kill(argv: tuple[str, ...], on_output: OutputCallback) -> int:
    import signal

    name = argv[1][1:]
    try:
        sig = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except KeyError:
        on_output(f"kill: unknown signal {argv[1]}")
        return 2
    try:
        os.kill(int(argv[2]), sig)
    except ProcessLookupError:
        on_output(f"kill: ({argv[2]}) - No such process")
        return 1
    except PermissionError:
        on_output(f"kill: ({argv[2]}) - Operation not permitted (run as root)")
        return 1
    return 0


# -- apply_plan ----------------------------------------------------------------------------------------------


def _ignore(_line: str) -> None:
    pass


def apply_plan(
    ctx: FixContext,
    plan: Plan,
    on_output: OutputCallback | None = None,
    *,
    after_commands: Callable[[ApplyResult, OutputCallback], None] | None = None,
) -> ApplyResult:
    """Apply a plan: lock, then edits (backup + atomic write), filesystem actions, commands.

    Live commands are skipped (with a note) when the root is not ``/``. Commands with a `confirm`
    question, and every step of a guided plan, run only on a yes from ``ctx.confirm``. The first failing
    step stops the run; what was done so far stays done (each step is complete on its own).
    `after_commands` runs under the lock after the commands (a fix's own follow-up, e.g. waiting for a
    daemon to reload).
    """
    out = on_output or _ignore
    root = ctx.facts.root
    result = ApplyResult(fix_id=plan.fix_id, ok=True, reboot_required=plan.reboot_required)
    if plan.empty:
        result.messages.append("nothing to do: already in place")
        return result
    if plan.guided and ctx.confirm is None:
        result.ok = False
        result.error = (
            f"{plan.fix_id} is a guided fix: each step needs a person to confirm it, and --yes does not "
            f"stand in for that. Run `gpudoctor fix {plan.fix_id}` in a terminal."
        )
        return result
    stamp = timestamp()
    try:
        with FixLock(root, timeout=ctx.lock_timeout):
            for edit in plan.edits:
                # Check every file before writing any, so a stale plan changes nothing at all.
                if read_config_text(root, edit.path) != edit.before:
                    raise FixError(
                        f"{edit.path} changed since the plan was made; nothing was written. Run the fix "
                        "again to plan against the current file."
                    )
            for item in plan.ordered():
                if isinstance(item, FileEdit):
                    if plan.guided and not ctx.ask(f"Write {item.path}?"):
                        result.skipped.append(f"{item.path}: not confirmed, left unchanged")
                        out(f"skipped {item.path} (not confirmed)")
                        continue
                    backup = write_edit(root, item, stage_hook=ctx.stage_hook, stamp=stamp)
                    result.changed.append(item.path)
                    if backup is not None:
                        result.backups[item.path] = backup
                    out(f"wrote {item.path}" + (f" (backup: {backup})" if backup else " (new file)"))
                elif isinstance(item, Command):
                    if not _run_plan_command(ctx, plan, item, result, out):
                        break
                else:
                    if plan.guided and not ctx.ask(f"Run `{_describe_action(item)}`?"):
                        result.skipped.append(f"{_describe_action(item)}: not confirmed")
                        continue
                    if apply_action(root, item):
                        result.changed.append(item.path)
                        out(f"created {item.path}")
            if result.ok and after_commands is not None:
                after_commands(result, out)
    except FixError as exc:
        result.ok = False
        result.error = str(exc)
    return result


def _run_plan_command(ctx: FixContext, plan: Plan, cmd: Command, result: ApplyResult, out: OutputCallback) -> bool:
    """Run one command of a plan; False stops the plan (the command failed)."""
    shown = shlex.join(cmd.argv)
    if cmd.live and not ctx.live:
        note = f"`{shown}` skipped: live action, and --root is {ctx.facts.root.root}, not this machine's /"
        result.skipped.append(note)
        out(note)
        return True
    if cmd.confirm is not None:
        if not ctx.ask(cmd.confirm):
            note = f"`{shown}` not run: it needs your confirmation ({cmd.description}); run it yourself when ready"
            result.skipped.append(note)
            out(note)
            return True
    elif plan.guided and not ctx.ask(f"Run `{shown}`? ({cmd.description})"):
        result.skipped.append(f"`{shown}`: not confirmed")
        out(f"skipped `{shown}` (not confirmed)")
        return True
    out(f"$ {shown}")
    status = run_command(cmd.argv, out)
    result.commands_run.append(cmd.argv)
    if status != 0:
        result.ok = False
        result.error = f"`{shown}` failed with exit status {status} ({cmd.description})"
        return False
    return True
