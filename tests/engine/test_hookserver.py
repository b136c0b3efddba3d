"""The hook server (gpudoctor.engine.hookserver): the shim's forked process does the createContainer work
for the relay hook entry it puts in the spec.

Unit level: the rendezvous (modes, the relay entry's shape, when the server is declined), the server's
check that the request comes from its own relay, and its exit when runc finishes without calling it.
Through the real shim and real runc: a GPU container gets its symlinks, drop-in and ld cache from the
server; a failing hook command fails the start with the hook's own message; the image's loader variables
never reach the relay (CVE-2025-23266); nothing is left in the rendezvous directory.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.edits import Hook
from gpudoctor.engine.hooks import HOOK_ENV, HOOK_TIMEOUT, entry_script
from gpudoctor.engine.hookserver import RELAY_SCRIPT, SHELL, HookServer, prepare
from gpudoctor.engine.inventory import Inventory
from gpudoctor.engine.selection import common_edits
from tests.engine.hook_kit import (
    RUNC,
    HostCanary,
    build_canary,
    file_digest,
    require_root,
    require_runc,
    runc_bundle,
)
from tests.kit.driver_root import DriverRootInfo

LIBDIR = "/usr/lib/x86_64-linux-gnu"


def _engine_hooks(inventory: Inventory) -> tuple[Hook, ...]:
    hooks = common_edits(inventory, ["utility", "compute"]).hooks
    assert len(hooks) == 1 and hooks[0].args[3] == entry_script()
    return hooks


def _prepare(tmp_path: Path, inventory: Inventory) -> HookServer:
    require_root()
    server = prepare(_engine_hooks(inventory), rootfs=str(tmp_path / "rootfs"), run_dir=str(tmp_path / "cache"))
    assert server is not None
    return server


def test_prepare_makes_a_private_rendezvous_and_the_relay_entry(tmp_path: Path, kit_inventory: Inventory) -> None:
    hooks = _engine_hooks(kit_inventory)
    server = _prepare(tmp_path, kit_inventory)
    where = Path(server.path)
    try:
        assert where.parent == tmp_path / "cache" / "hooks"
        assert stat.S_IMODE(where.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
        for name in ("request", "result"):
            st = (where / name).stat()
            assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        relay = server.relay_hook
        assert relay.hook_name == "createContainer"
        assert relay.path == SHELL
        assert relay.args[:4] == ("sh", "-c", RELAY_SCRIPT, server.path)
        # The same commands as the Python entry, after the same prefix length: `hooks create-symlinks ...`.
        assert relay.args[4:] == hooks[0].args[4:]
        assert relay.args[4:6] == ("hooks", "create-symlinks") and "update-ldcache" in relay.args
        assert relay.env == HOOK_ENV and relay.timeout == HOOK_TIMEOUT
        assert server.groups[0][0] == "create-symlinks" and server.groups[-1][0] == "update-ldcache"
    finally:
        server.discard()
    assert not where.exists()


@pytest.mark.parametrize("case", ["world-writable", "symlinked", "relative", "two-hooks", "foreign"])
def test_prepare_declines_and_the_python_hook_stays(tmp_path: Path, kit_inventory: Inventory, case: str) -> None:
    require_root()
    hooks = _engine_hooks(kit_inventory)
    run_dir = tmp_path / "cache"
    if case == "world-writable":
        run_dir.mkdir(mode=0o777)
        run_dir.chmod(0o777)
    elif case == "symlinked":
        (tmp_path / "elsewhere").mkdir(mode=0o755)
        run_dir.symlink_to(tmp_path / "elsewhere")
    elif case == "two-hooks":
        hooks = (hooks[0], hooks[0])
    elif case == "foreign":
        hooks = (Hook(hook_name="createContainer", path="/usr/bin/true", args=("true",)),)
    where = "cache" if case == "relative" else str(run_dir)
    assert prepare(hooks, rootfs=str(tmp_path / "rootfs"), run_dir=where) is None
    if case in ("world-writable", "symlinked"):
        assert not (tmp_path / "elsewhere" / "hooks").exists() and not (run_dir / "hooks").exists()


def _answer(path: str) -> list[str]:
    """Read the server's answer the way the relay does: result opened first (read-write), then lines."""
    import select

    fd = os.open(f"{path}/result", os.O_RDWR)
    try:
        data = b""
        while not data.endswith((b"ok\n", b"fail\n")):
            ready, _, _ = select.select([fd], [], [], 120)
            assert ready, f"no answer from the hook server, got {data!r} so far"
            data += os.read(fd, 4096)
    finally:
        os.close(fd)
    return data.decode().splitlines()


def test_the_server_refuses_a_process_that_is_not_its_relay(tmp_path: Path, kit_inventory: Inventory) -> None:
    """Anything but the relay of this very hook entry is refused: here the test process writes its own
    pid (its command line is pytest's). Nothing is done in any root, the answer says why, and the
    rendezvous is removed."""
    server = _prepare(tmp_path, kit_inventory)
    (tmp_path / "rootfs").mkdir()
    server.start()
    assert server.pid is not None
    fd = os.open(f"{server.path}/request", os.O_WRONLY)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    lines = _answer(server.path)
    os.waitpid(server.pid, 0)
    assert lines[-1] == "fail"
    assert f"|gpudoctor hook server: process {os.getpid()} is not this container's hook relay" in lines[0]
    assert list((tmp_path / "rootfs").iterdir()) == []
    assert not Path(server.path).exists()


def test_the_server_refuses_a_request_that_is_not_a_pid(tmp_path: Path, kit_inventory: Inventory) -> None:
    server = _prepare(tmp_path, kit_inventory)
    server.start()
    assert server.pid is not None
    fd = os.open(f"{server.path}/request", os.O_WRONLY)
    os.write(fd, b"../1\n")
    os.close(fd)
    lines = _answer(server.path)
    os.waitpid(server.pid, 0)
    assert lines == ["|gpudoctor hook server: the relay sent '../1', not a process id", "fail"]


def test_the_server_leaves_when_the_runtime_exits_without_calling_it(
    tmp_path: Path, kit_inventory: Inventory
) -> None:
    """runc failed before the hooks: the server notices its parent is gone, removes the rendezvous and
    exits (here the parent is a forked child of the test that exits at once)."""
    server = _prepare(tmp_path, kit_inventory)
    where = Path(server.path)
    child = os.fork()
    if child == 0:
        try:
            server.start()
        finally:
            os._exit(0)
    os.close(server.request_fd)
    os.close(server.dir_fd)
    os.waitpid(child, 0)
    watcher = subprocess.run(
        ["sh", "-c", 'for _ in $(seq 600); do [ -e "$1" ] || exit 0; sleep 0.1; done; exit 1', "sh", str(where)],
        check=False,
    )
    assert watcher.returncode == 0, f"{where} still exists: the server did not notice its parent exit"


# -------------------------------------------------------------------------- through the real shim and runc


class Shim:
    """gpudoctor-runtime (through entry.py, as the launcher runs it) with the real runc behind it."""

    def __init__(self, base: Path, driver_root: Path, *, cache: bool = True) -> None:
        from gpudoctor.engine.settings import Settings, render_settings

        base.mkdir(parents=True, exist_ok=True)
        self.state = base / "runc-state"
        self.cache = base / "cache"
        self.log = base / "shim.log"
        self.settings = base / "runtime.toml"
        self.settings.write_text(render_settings(Settings(runc=str(RUNC), driver_root=str(driver_root),
                                                          log_file=str(self.log),
                                                          cache_dir=str(self.cache) if cache else "")))

    def run(self, bundle: Path, cid: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-I", "-S", entry_script(), "runtime", "--root", str(self.state), "run",
                "--bundle", str(bundle), cid]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GPUDOCTOR_RUNTIME_CONFIG": str(self.settings)}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL, check=False)
        subprocess.run([str(RUNC), "--root", str(self.state), "delete", "--force", cid], capture_output=True,
                       check=False)
        return proc

    def leftovers(self) -> list[str]:
        hooks = self.cache / "hooks"
        return sorted(os.listdir(hooks)) if hooks.exists() else []

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def shim(tmp_path: Path, kit_host: DriverRootInfo) -> Shim:
    require_runc()
    return Shim(tmp_path / "shim", kit_host.root)


def test_a_gpu_container_gets_its_hook_work_from_the_server(tmp_path: Path, shim: Shim,
                                                           kit_host: DriverRootInfo) -> None:
    version = kit_host.spec.driver_version
    bundle = runc_bundle(tmp_path / "bundle", env=["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0"],
                         args=["/bin/sh", "-c", f"readlink {LIBDIR}/libnvidia-ml.so.1; readlink {LIBDIR}/libcuda.so;"
                               " cat /etc/ld.so.conf.d/00-gpudoctor.conf"])
    host_cache = file_digest(Path("/etc/ld.so.cache"))
    proc = shim.run(bundle.path, "gd-server")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"libnvidia-ml.so.{version}", "libcuda.so.1",
        "# written by gpudoctor hook update-ldcache (driver libraries mounted by gpudoctor)", LIBDIR,
    ]  # fmt: skip
    cache = (bundle.rootfs / "etc" / "ld.so.cache").read_bytes()
    assert f"{LIBDIR}/libnvidia-ml.so.1".encode() in cache
    [hook] = json.loads((bundle.path / "config.json").read_text())["hooks"]["createContainer"]
    assert hook["path"] == SHELL and hook["args"][4:6] == ["hooks", "create-symlinks"]
    assert hook["env"] == list(HOOK_ENV)
    assert [r.get("hooks") for r in shim.records()] == ["server"]
    assert shim.leftovers() == []
    assert file_digest(Path("/etc/ld.so.cache")) == host_cache


def test_a_failing_hook_command_fails_the_start_with_its_own_message(tmp_path: Path, shim: Shim) -> None:
    bundle = runc_bundle(tmp_path / "bundle", env=["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0"])
    lib = bundle.rootfs / LIBDIR.lstrip("/")
    lib.mkdir(parents=True)
    os.mkfifo(lib / "libcuda.so")
    proc = shim.run(bundle.path, "gd-server-fail")
    assert proc.returncode != 0
    assert (f"gpudoctor hook create-symlinks: error: cannot create the symlink {LIBDIR}/libcuda.so -> "
            f"libcuda.so.1 in the container: {LIBDIR}/libcuda.so: is a FIFO; refusing to replace it with a "
            "symlink") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert stat.S_ISFIFO((lib / "libcuda.so").lstat().st_mode)
    assert not (bundle.rootfs / "etc" / "ld.so.cache").exists()  # the chain stopped at the first failure
    assert shim.leftovers() == []


def test_image_loader_variables_never_reach_the_relay(tmp_path: Path, shim: Shim) -> None:
    """CVE-2025-23266 against the relay (a dynamically linked shell run by runc init, cwd = the rootfs):
    its entry carries an explicit env, so the image's LD_PRELOAD/LD_AUDIT canary never loads."""
    marker = tmp_path / "owned"
    canary = build_canary(tmp_path, marker)
    host = HostCanary.create(tmp_path / "host")
    bundle = runc_bundle(tmp_path / "bundle", env=[
        "PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0",
        "LD_PRELOAD=/proc/self/cwd/canary.so", "LD_AUDIT=/proc/self/cwd/canary.so",
    ])  # fmt: skip
    shutil.copy(canary, bundle.rootfs / "canary.so")
    with host:
        proc = shim.run(bundle.path, "gd-server-nvidiascape")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "the image's loader variables reached the relay running as host root"
    [hook] = json.loads((bundle.path / "config.json").read_text())["hooks"]["createContainer"]
    assert hook["path"] == SHELL and hook["env"] == list(HOOK_ENV)
    host.assert_untouched()


def test_without_a_private_directory_the_python_hook_stays(tmp_path: Path, kit_host: DriverRootInfo) -> None:
    """No cache dir (so no place for a root-only rendezvous): the spec keeps the Python hook entry, which
    does the same work."""
    require_runc()
    shim = Shim(tmp_path / "shim", kit_host.root, cache=False)
    bundle = runc_bundle(tmp_path / "bundle", env=["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0"],
                         args=["/bin/sh", "-c", f"readlink {LIBDIR}/libcuda.so"])
    proc = shim.run(bundle.path, "gd-no-server")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "libcuda.so.1\n"
    [hook] = json.loads((bundle.path / "config.json").read_text())["hooks"]["createContainer"]
    assert hook["path"] == sys.executable and hook["args"][3] == entry_script()
    assert hook["args"][4:6] == ["hooks", "create-symlinks"] and hook["env"] == list(HOOK_ENV)
    assert [r.get("hooks") for r in shim.records()] == ["process"]
