"""Bad input and faults: invalid files, unwritable targets, lock contention, a kill in the middle of apply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpudoctor.fixes.apply import LOCK_PATH, FixLock, LockedError, apply_plan
from gpudoctor.fixes.base import FileEdit, Plan
from gpudoctor.fixes.docker_runtime import DockerRuntimeFix
from gpudoctor.host.root import HostRoot
from tests.fixes.helpers import STUB, ctx_for, write_files

DAEMON_JSON = "/etc/docker/daemon.json"
OLD = '{\n  "log-driver": "journald",\n  "debug": false\n}\n'
TOOLKIT = {"/usr/bin/nvidia-container-runtime": STUB, "/usr/bin/dockerd": STUB}


def _root(tmp_path: Path, config: str = OLD) -> Path:
    return write_files(tmp_path / "root", {**TOOLKIT, DAEMON_JSON: config})


def _gpudoctor(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudoctor", *args],
        capture_output=True, text=True, timeout=120, input=stdin,
    )


def _backups(root: Path) -> list[Path]:
    base = root / "var/backups/gpudoctor"
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


# -- invalid input -------------------------------------------------------------------------------------------


def test_invalid_daemon_json_is_refused_with_line_and_column_and_left_byte_identical(tmp_path: Path) -> None:
    broken = '{\n  "log-driver": "journald",\n  "runtimes": {\n    "nvidia": {"path": "x"},\n  }\n}\n'
    root = _root(tmp_path, broken)
    target = root / DAEMON_JSON.lstrip("/")
    before = target.read_bytes()
    mtime = target.stat().st_mtime_ns
    res = _gpudoctor("fix", "docker-runtime", "--yes", "--root", str(root))
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{DAEMON_JSON}:5:3: not valid JSON" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert target.read_bytes() == before
    assert target.stat().st_mtime_ns == mtime
    assert _backups(root) == []


def test_a_file_changed_after_planning_is_not_written(tmp_path: Path) -> None:
    root = _root(tmp_path)
    fix = DockerRuntimeFix()
    plan = fix.plan(ctx_for(root))
    target = root / DAEMON_JSON.lstrip("/")
    target.write_text('{"someone": "else"}\n')
    result = fix.apply(ctx_for(root), plan)
    assert not result.ok
    assert "changed since the plan was made" in (result.error or "")
    assert target.read_text() == '{"someone": "else"}\n'


def test_an_unwritable_target_gives_a_clear_message(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    root = _root(tmp_path)
    etc_docker = root / "etc/docker"
    subprocess.run(["mount", "--bind", str(etc_docker), str(etc_docker)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(etc_docker)], check=True)
        res = _gpudoctor("fix", "docker-runtime", "--yes", "--root", str(root))
    finally:
        subprocess.run(["umount", str(etc_docker)], check=True)
    assert res.returncode == 1
    assert f"cannot write {DAEMON_JSON}: Read-only file system. The file is unchanged" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert (root / DAEMON_JSON.lstrip("/")).read_text() == OLD


def test_a_directory_where_the_file_should_be_is_refused(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", TOOLKIT)
    (root / DAEMON_JSON.lstrip("/")).mkdir(parents=True)
    res = _gpudoctor("fix", "docker-runtime", "--yes", "--root", str(root))
    assert res.returncode == 1
    assert f"{DAEMON_JSON} is not a regular file" in res.stdout


# -- the lock ------------------------------------------------------------------------------------------------


def test_a_second_run_fails_with_the_pid_that_holds_the_lock(tmp_path: Path) -> None:
    root = _root(tmp_path)
    with FixLock(HostRoot(str(root))):
        res = _gpudoctor("fix", "docker-runtime", "--yes", "--root", str(root))
    assert res.returncode == 1
    assert f"{LOCK_PATH} is locked by PID {os.getpid()}" in res.stdout
    assert (root / DAEMON_JSON.lstrip("/")).read_text() == OLD
    # The lock died with its holder's release: the same run now works.
    res = _gpudoctor("fix", "docker-runtime", "--yes", "--root", str(root))
    assert res.returncode == 0, res.stdout


def test_a_second_run_can_wait_for_the_lock(tmp_path: Path) -> None:
    root = HostRoot(str(_root(tmp_path)))
    holder = FixLock(root)
    holder.acquire()
    events: list[str] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        with FixLock(root, timeout=60):
            events.append("acquired")

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait()
    events.append("released")
    holder.release()
    thread.join()
    assert events == ["released", "acquired"]


def test_lock_without_wait_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    root = HostRoot(str(tmp_path))
    with FixLock(root), pytest.raises(LockedError, match=f"locked by PID {os.getpid()}"):
        FixLock(root).acquire()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    root = HostRoot(str(tmp_path))
    pid = os.fork()
    if pid == 0:  # the child takes the lock and dies holding it
        try:
            FixLock(root).acquire()
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    with FixLock(root):
        pass


# -- a kill in the middle of apply ---------------------------------------------------------------------------


def _apply_in_child_killed_at(root: Path, plan: Plan, stage: str) -> int:
    """Apply `plan` in a forked child that SIGKILLs itself at `stage`; return the child's wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            def hook(reached: str, _path: str) -> None:
                if reached == stage:
                    os.kill(os.getpid(), signal.SIGKILL)

            apply_plan(ctx_for(root, stage_hook=hook), plan)
        finally:
            os._exit(0)  # not reached when the hook fires
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize(
    ("stage", "expect_new"),
    [("backup-written", False), ("temp-partial", False), ("temp-written", False), ("renamed", True)],
)
def test_a_kill_during_apply_leaves_the_old_or_the_new_file_and_the_backup(
    tmp_path: Path, stage: str, expect_new: bool
) -> None:
    root = _root(tmp_path)
    target = root / DAEMON_JSON.lstrip("/")
    plan = DockerRuntimeFix().plan(ctx_for(root))
    new = plan.edits[0].after
    status = _apply_in_child_killed_at(root, plan, stage)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert target.read_text() == (new if expect_new else OLD)
    backups = _backups(root)
    assert len(backups) == 1 and backups[0].read_text() == OLD
    # The next run cleans up after the dead one and finishes the job.
    fix = DockerRuntimeFix()
    result = fix.apply(ctx_for(root), fix.plan(ctx_for(root)))
    assert result.ok, result.error
    assert target.read_text() == new
    assert [p.name for p in target.parent.iterdir()] == ["daemon.json"]


def test_a_kill_before_the_backup_is_complete_leaves_the_file_alone(tmp_path: Path) -> None:
    root = _root(tmp_path)
    plan = Plan(fix_id="t", edits=(FileEdit(path=DAEMON_JSON, before=OLD, after="{}\n"),))
    # Kill while the *backup* copy is half written: its temp name never becomes a backup file.
    pid = os.fork()
    if pid == 0:
        try:
            import gpudoctor.fixes.apply as apply_mod

            real = apply_mod._write_temp_and_rename

            def dying(*args: object, **kwargs: object) -> None:
                if "/var/backups/" in str(kwargs.get("host_path", "")):
                    os.kill(os.getpid(), signal.SIGKILL)
                real(*args, **kwargs)  # type: ignore[arg-type]

            apply_mod._write_temp_and_rename = dying  # type: ignore[assignment]
            apply_plan(ctx_for(root), plan)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert (root / DAEMON_JSON.lstrip("/")).read_text() == OLD
    assert _backups(root) == []
