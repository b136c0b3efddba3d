"""A real, private dockerd (with its own containerd) for tests.

Each daemon owns its data-root, exec-root, pidfile, socket and containerd, so several can run at once
(concurrent pytest runs, a system docker) without sharing state. There is no bridge and no iptables:
containers run with ``--network none``. Infrastructure settings are passed as flags, so ``daemon.json``
holds only what a test asked for (runtimes, extra keys) -- the same shape a user's file has -- and tests
may edit it and call ``reload()``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.infra.system import (
    InfraError,
    kill_and_wait,
    log_tail,
    overlay_supported,
    pids_mentioning,
    remove_tree,
    run_command,
    short_runtime_dir,
)

DOCKER_CLI = Path("/usr/bin/docker")
"""Debian's 20.10 client; /usr/local/bin/docker on the dev box is a newer CLI that we don't test against."""

# daemon.json keys that start_dockerd sets as flags; dockerd refuses a key given both ways.
FLAG_KEYS = frozenset(
    {
        "data-root",
        "exec-root",
        "pidfile",
        "hosts",
        "containerd",
        "storage-driver",
        "bridge",
        "iptables",
        "ip-masq",
        "shutdown-timeout",
    }
)

_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CLIENT_ENV_DROP = ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS")


def dockerd_binary() -> str | None:
    """Path of dockerd, or None when it is not installed."""
    return shutil.which("dockerd", path=os.environ.get("PATH", "") + ":" + _SEARCH_PATH)


def _daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":" + _SEARCH_PATH
    # A DOCKER_HOST inherited from the caller must not redirect anything dockerd spawns.
    env.pop("DOCKER_HOST", None)
    return env


def ping(sock: Path, *, timeout: float = 2.0) -> bool:
    """True when the Docker API on the unix socket answers GET /_ping with 200 OK."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 200") and data.rstrip().endswith(b"OK")


def _socket_accepts(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            conn.connect(str(sock))
        return True
    except OSError:
        return False


class DockerDaemon:
    """A running private dockerd. Use start_dockerd() to make one; stop() always cleans up."""

    def __init__(
        self,
        *,
        base: Path,
        data_root: Path,
        exec_root: Path,
        extra_dirs: list[Path],
        config_path: Path,
        log_path: Path,
        containerd_log_path: Path,
        containerd_address: Path,
        storage_driver: str,
        runtimes: dict[str, dict[str, Any]],
    ) -> None:
        self.base = base
        self.data_root = data_root
        self.exec_root = exec_root
        self.config_path = config_path
        self.log_path = log_path
        self.containerd_log_path = containerd_log_path
        self.containerd_address = containerd_address
        self.storage_driver = storage_driver
        self.runtimes = runtimes
        self.socket_path = exec_root / "docker.sock"
        self.pidfile = exec_root / "docker.pid"
        self.host = f"unix://{self.socket_path}"
        self._extra_dirs = extra_dirs
        self._dockerd: subprocess.Popen[bytes] | None = None
        self._containerd: subprocess.Popen[bytes] | None = None

    # -- process state -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """PID of dockerd."""
        if self._dockerd is None:
            raise InfraError("dockerd is not running")
        return self._dockerd.pid

    @property
    def containerd_pid(self) -> int:
        """PID of this daemon's own containerd."""
        if self._containerd is None:
            raise InfraError("containerd is not running")
        return self._containerd.pid

    def running(self) -> bool:
        """True while dockerd is alive and answers /_ping."""
        return self._dockerd is not None and self._dockerd.poll() is None and ping(self.socket_path)

    # -- client side ---------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The caller's environment pointed at this daemon (DOCKER_HOST, a private DOCKER_CONFIG)."""
        env = dict(os.environ)
        for key in _CLIENT_ENV_DROP:
            env.pop(key, None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.base / "client-config")
        return env

    def cli(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 120.0,
        input: str | None = None,
        stdin: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run /usr/bin/docker against this daemon; raises CommandError (with output) if check fails."""
        if not DOCKER_CLI.exists():
            raise InfraError(f"{DOCKER_CLI} is missing: install Debian's docker.io package")
        return run_command(
            [str(DOCKER_CLI), *args], env=self.env(), check=check, timeout=timeout, input=input, stdin=stdin
        )

    def run(
        self,
        image: str,
        *command: str,
        runtime: str | None = None,
        options: tuple[str, ...] | list[str] = (),
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """``docker run --rm --network none [--runtime R] OPTIONS IMAGE COMMAND...``."""
        argv = ["run", "--rm", "--network", "none"]
        if runtime is not None:
            argv += ["--runtime", runtime]
        argv += [*options, image, *command]
        return self.cli(*argv, check=check, timeout=timeout)

    def info(self) -> dict[str, Any]:
        """``docker info`` as a dict."""
        out = self.cli("info", "--format", "{{json .}}").stdout
        data: dict[str, Any] = json.loads(out)
        return data

    # -- configuration -------------------------------------------------------------------------------

    def read_config(self) -> dict[str, Any]:
        """The current daemon.json ({} when absent)."""
        if not self.config_path.exists():
            return {}
        data: dict[str, Any] = json.loads(self.config_path.read_text(encoding="utf-8"))
        return data

    def write_config(self, config: dict[str, Any]) -> None:
        """Atomically replace daemon.json (takes effect on reload())."""
        clash = sorted(FLAG_KEYS & config.keys())
        if clash:
            raise ValueError(f"daemon.json keys {clash} are set as dockerd flags by the fixture")
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.config_path)

    def log_offset(self) -> int:
        """Current size of dockerd's log; pass it to wait_for_reload() after sending SIGHUP yourself."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def wait_for_reload(self, offset: int, *, timeout: float = 30.0) -> str:
        """Wait until dockerd logs the outcome of a reload after offset; return the success line.

        Raises InfraError with dockerd's own error line when it rejected the new configuration.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                new = fh.read().decode("utf-8", "replace")
            for line in new.splitlines():
                if "Reloaded configuration" in line:
                    return line
                if (
                    "Error reconfiguring the daemon" in line
                    or "unable to configure the Docker daemon" in line
                ):
                    raise InfraError(f"dockerd rejected {self.config_path} on reload: {line}")
            if self._dockerd is not None and self._dockerd.poll() is not None:
                raise InfraError(f"dockerd exited during reload:\n{log_tail(self.log_path)}")
            time.sleep(0.05)
        raise InfraError(f"dockerd logged no reload outcome within {timeout}s:\n{log_tail(self.log_path)}")

    def reload(self, *, timeout: float = 30.0) -> str:
        """SIGHUP dockerd and wait until it has reloaded daemon.json (see wait_for_reload)."""
        offset = self.log_offset()
        os.kill(self.pid, signal.SIGHUP)
        return self.wait_for_reload(offset, timeout=timeout)

    # -- lifecycle -----------------------------------------------------------------------------------

    def _spawn(self) -> None:
        dockerd = dockerd_binary()
        if dockerd is None:
            raise InfraError("dockerd is not installed (apt-get install docker.io)")
        containerd = shutil.which("containerd", path=_daemon_env()["PATH"])
        if containerd is None:
            raise InfraError("containerd is not installed (apt-get install containerd)")
        ctr_state = self.exec_root / "containerd"
        ctr_state.mkdir(parents=True, exist_ok=True)
        ctr_config = self.base / "containerd.toml"
        ctr_config.write_text(
            _containerd_toml(
                root=self.data_root / "containerd", state=ctr_state, address=self.containerd_address
            ),
            encoding="utf-8",
        )
        with open(self.containerd_log_path, "ab") as log:
            self._containerd = subprocess.Popen(
                [containerd, "--config", str(ctr_config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_daemon_env(),
                start_new_session=True,
            )
        self._wait(
            lambda: _socket_accepts(self.containerd_address),
            proc=self._containerd,
            what="containerd",
            log=self.containerd_log_path,
            timeout=60.0,
        )
        argv = [
            dockerd,
            "--config-file", str(self.config_path),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--host", self.host,
            "--containerd", str(self.containerd_address),
            "--storage-driver", self.storage_driver,
            "--bridge", "none",
            "--iptables=false",
            "--ip-masq=false",
            "--shutdown-timeout", "3",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._dockerd = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_daemon_env(),
                start_new_session=True,
            )
        self._wait(
            lambda: ping(self.socket_path),
            proc=self._dockerd,
            what="dockerd",
            log=self.log_path,
            timeout=120.0,
        )

    def _wait(
        self,
        ready: Any,
        *,
        proc: subprocess.Popen[bytes],
        what: str,
        log: Path,
        timeout: float,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise InfraError(
                    f"{what} exited with status {proc.returncode} while starting:\n{log_tail(log)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise InfraError(f"{what} was not ready within {timeout:.0f}s:\n{log_tail(log)}")

    def stop(self) -> None:
        """Stop dockerd, containerd and their shims; unmount and delete the daemon's state. Idempotent."""
        errors: list[str] = []
        for proc, grace in ((self._dockerd, 30.0), (self._containerd, 10.0)):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        # Shims and runc processes detach from the process groups above; they name our paths in argv.
        for needle in (str(self.containerd_address), str(self.exec_root) + "/", str(self.data_root) + "/"):
            kill_and_wait(pids_mentioning(needle))
        for d in (self.data_root, self.exec_root, *self._extra_dirs):
            try:
                remove_tree(d)
            except InfraError as exc:
                errors.append(str(exc))
        self._dockerd = None
        self._containerd = None
        if errors:
            raise InfraError("; ".join(errors))

    def __enter__(self) -> DockerDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _containerd_toml(*, root: Path, state: Path, address: Path) -> str:
    # Plugins dockerd never uses are disabled so they neither log noise nor touch host paths.
    return f"""version = 2
root = {json.dumps(str(root))}
state = {json.dumps(str(state))}
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = {json.dumps(str(address))}

[ttrpc]
  address = {json.dumps(str(address) + ".ttrpc")}

[plugins."io.containerd.internal.v1.opt"]
  path = {json.dumps(str(root / "opt"))}
"""


def detect_storage_driver(data_root: Path) -> str:
    """overlay2 when overlayfs works on data_root's filesystem, else vfs."""
    return "overlay2" if overlay_supported(data_root) else "vfs"


def start_dockerd(
    base: Path,
    *,
    runtimes: dict[str, dict[str, Any]] | None = None,
    extra_config: dict[str, Any] | None = None,
    storage_driver: str | None = None,
) -> DockerDaemon:
    """Start a private dockerd under base and wait until it answers /_ping.

    runtimes becomes daemon.json's "runtimes"; extra_config is merged into daemon.json and must not use
    the keys in FLAG_KEYS. storage_driver defaults to what detect_storage_driver() finds. On failure
    everything started is stopped and InfraError carries the daemons' log tails.
    """
    config: dict[str, Any] = dict(extra_config or {})
    if runtimes:
        config["runtimes"] = runtimes
    clash = sorted(FLAG_KEYS & config.keys())
    if clash:
        raise ValueError(f"extra_config keys {clash} are set as dockerd flags by the fixture")
    if os.geteuid() != 0:
        raise InfraError("a private dockerd needs root")
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    data_root = base / "data"
    data_root.mkdir(exist_ok=True)
    exec_root, separate = short_runtime_dir(base / "run", "gd-dockerd-")
    (base / "client-config").mkdir(exist_ok=True)
    config_path = base / "daemon.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    daemon = DockerDaemon(
        base=base,
        data_root=data_root,
        exec_root=exec_root,
        extra_dirs=[],
        config_path=config_path,
        log_path=base / "dockerd.log",
        containerd_log_path=base / "containerd.log",
        containerd_address=exec_root / "containerd" / "containerd.sock",
        storage_driver=storage_driver or detect_storage_driver(data_root),
        runtimes=dict(runtimes or {}),
    )
    try:
        daemon._spawn()
        actual = daemon.info().get("Driver")
        if actual != daemon.storage_driver:
            raise InfraError(f"dockerd uses storage driver {actual!r}, expected {daemon.storage_driver!r}")
    except BaseException as exc:
        tails = (
            f"--- dockerd log ({daemon.log_path}) ---\n{log_tail(daemon.log_path)}\n"
            f"--- containerd log ({daemon.containerd_log_path}) ---\n{log_tail(daemon.containerd_log_path)}"
        )
        try:
            daemon.stop()
        finally:
            if separate:
                shutil.rmtree(exec_root, ignore_errors=True)
        if isinstance(exc, InfraError | OSError | subprocess.SubprocessError):
            raise InfraError(f"could not start dockerd under {base}: {exc}\n{tails}") from exc
        raise
    return daemon
