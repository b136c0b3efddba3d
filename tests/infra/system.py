"""Host-side helpers shared by the docker and podman test fixtures.

Everything here acts only on paths and processes that a fixture created itself: mounts under its own
directories, processes whose command line names its own sockets or storage roots.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# AF_UNIX paths are limited to 108 bytes; containerd and dockerd derive longer socket paths from their
# state directories, so those directories must stay well under the limit.
MAX_RUNTIME_DIR_LEN = 48

_MNT_DETACH = 2


class InfraError(RuntimeError):
    """A test fixture could not set up real infrastructure; the message says what and why."""


def overlay_supported(workdir: Path) -> bool:
    """True when the kernel can mount overlayfs with upper/work dirs on the filesystem holding workdir.

    dockerd's overlay2 and podman's overlay drivers need exactly this; it fails e.g. when workdir itself is
    on overlayfs (a container's root) or the kernel lacks the module.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix="ovl-probe-", dir=workdir))
    try:
        for name in ("lower", "upper", "work", "merged"):
            (probe / name).mkdir()
        (probe / "lower" / "f").write_text("x")
        opts = f"lowerdir={probe / 'lower'},upperdir={probe / 'upper'},workdir={probe / 'work'}"
        res = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(probe / "merged")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if res.returncode != 0:
            return False
        try:
            ok = (probe / "merged" / "f").read_text() == "x"
        finally:
            _umount(probe / "merged")
        return ok
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def short_runtime_dir(preferred: Path, prefix: str) -> tuple[Path, bool]:
    """Return (dir, created_separately) for sockets: preferred if short enough, else a fresh /tmp dir."""
    if len(str(preferred)) <= MAX_RUNTIME_DIR_LEN:
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred, False
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), True


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _umount(path: Path) -> None:
    # Lazy unmount: a mount may still be busy for a moment after its last process is killed.
    if _libc().umount2(os.fsencode(str(path)), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point (any more); ENOENT: already gone
            raise OSError(err, f"umount2({path}) failed: {os.strerror(err)}")


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path (from /proc/self/mountinfo), deepest first."""
    root = str(path.resolve())
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            mnt = _unescape_mountinfo(line.split()[4])
            if mnt == root or mnt.startswith(root + "/"):
                found.append(Path(mnt))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Detach every mount at or below path (repeats while unmounting uncovers more)."""
    if not path.exists():
        return
    for _ in range(5):
        mounts = mounts_under(path)
        if not mounts:
            return
        for mnt in mounts:
            _umount(mnt)


def pids_mentioning(needle: str) -> list[int]:
    """PIDs (other than ours) whose command line contains needle, e.g. a fixture's own socket path."""
    own = os.getpid()
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry))
    return pids


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_and_wait(pids: list[int], *, grace: float = 5.0) -> None:
    """SIGTERM the given pids, then SIGKILL whatever is left after grace seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        if not any(pid_alive(p) for p in pids):
            return


def remove_tree(path: Path) -> None:
    """Unmount anything below path, then delete it; raise InfraError if it cannot be removed."""
    if not path.exists():
        return
    unmount_under(path)
    try:
        shutil.rmtree(path)
    except OSError:
        # A lazily detached mount can keep a directory busy for a moment; one retry is enough here.
        time.sleep(0.5)
        unmount_under(path)
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise InfraError(f"could not remove {path}: {exc}") from exc


def log_tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class CommandError(subprocess.CalledProcessError):
    """A fixture command failed; str() shows the command, exit status and both output streams."""

    def __str__(self) -> str:
        cmd = " ".join(str(c) for c in self.cmd) if isinstance(self.cmd, list | tuple) else str(self.cmd)
        return (
            f"command failed with exit status {self.returncode}: {cmd}\n"
            f"--- stdout ---\n{_text(self.stdout)}\n--- stderr ---\n{_text(self.stderr)}"
        )


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace").rstrip()
    return data.rstrip()


def run_command(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120.0,
    input: str | None = None,
    stdin: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv with text output captured; raise CommandError (with the output) when check and it fails.

    stdin, when given, is a file streamed to the command (e.g. a tarball); input is text for it.
    """
    if stdin is not None:
        with open(stdin, "rb") as fh:
            res = subprocess.run(argv, env=env, stdin=fh, capture_output=True, timeout=timeout)
        done = subprocess.CompletedProcess(
            res.args, res.returncode, _text(res.stdout) + "\n", _text(res.stderr) + "\n"
        )
    else:
        done = subprocess.run(
            argv,
            env=env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if check and done.returncode != 0:
        raise CommandError(done.returncode, argv, done.stdout, done.stderr)
    return done
