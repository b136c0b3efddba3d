"""Real podman with private storage, and CDI specs installed where podman 4.3 looks for them.

Every podman command gets global flags for a private storage root (--root/--runroot/--tmpdir under one
base directory), a storage driver that works here, cgroupfs, file events and runc; CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF point at files with the same settings, so a podman spawned by code under test with
env() behaves alike. ``podman run`` also needs --ulimit nofile/nproc here: runc may not raise them to
podman's defaults in this VM ("error setting rlimit type 7: operation not permitted").
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.infra.image import DEFAULT_CHANGES, make_tarball
from tests.infra.system import (
    InfraError,
    kill_and_wait,
    overlay_supported,
    pids_mentioning,
    remove_tree,
    run_command,
)

ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")

CDI_DIR = Path("/var/run/cdi")
"""podman 4.3 reads CDI specs only from /etc/cdi and /var/run/cdi; tests use the volatile one."""

CDI_LOCK = Path("/run/lock/gpudoctor-cdi-tests.lock")


def podman_binary() -> str | None:
    """Path of podman, or None when it is not installed."""
    return shutil.which("podman", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/local/bin")


class Podman:
    """podman bound to a private storage root under base. Use start_podman(); cleanup() removes it all."""

    def __init__(self, *, binary: str, base: Path, storage_driver: str) -> None:
        self.binary = binary
        self.base = base
        self.storage_driver = storage_driver
        self.root = base / "root"
        self.runroot = base / "runroot"
        self.tmpdir = base / "tmp"
        self.containers_conf = base / "containers.conf"
        self.storage_conf = base / "storage.conf"

    def global_args(self) -> list[str]:
        """Flags put before every podman subcommand."""
        return [
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.tmpdir),
            "--storage-driver", self.storage_driver,
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--runtime", "runc",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """The caller's environment with CONTAINERS_CONF / CONTAINERS_STORAGE_CONF set to ours."""
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.containers_conf)
        env["CONTAINERS_STORAGE_CONF"] = str(self.storage_conf)
        return env

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman GLOBAL_ARGS ARGS``; raises CommandError (with output) when check and it fails."""
        return run_command(
            [self.binary, *self.global_args(), *args],
            env=self.env(),
            check=check,
            timeout=timeout,
            input=input,
        )

    def run(
        self, args: Sequence[str], *, rm: bool = True, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``podman run [--rm] --ulimit ... [--network none] ARGS``.

        --network none is added unless args choose a network themselves.
        """
        argv = ["run"]
        if rm:
            argv.append("--rm")
        for limit in ULIMITS:
            argv += ["--ulimit", limit]
        if not any(a in ("--network", "--net") or a.startswith(("--network=", "--net=")) for a in args):
            argv += ["--network", "none"]
        return self.cli(*argv, *args, check=check, timeout=timeout)

    def import_image(self, rootfs: Path, tag: str, *, changes: Iterable[str] = DEFAULT_CHANGES) -> str:
        """``podman import`` rootfs (a directory, see tests.infra.image.build_rootfs) as tag; return tag."""
        tar_path = self.base / f"import-{uuid.uuid4().hex[:8]}.tar"
        make_tarball(rootfs, tar_path)
        try:
            argv = ["import"]
            for change in changes:
                argv += ["--change", change]
            self.cli(*argv, str(tar_path), tag, timeout=300)
        finally:
            tar_path.unlink(missing_ok=True)
        return tag

    def cleanup(self) -> None:
        """Kill leftover conmon/runc processes of this storage, unmount and delete it. Idempotent."""
        if self.root.exists():
            self.cli("rm", "--all", "--force", "--time", "0", check=False, timeout=60)
        for needle in (str(self.root), str(self.runroot)):
            kill_and_wait(pids_mentioning(needle))
        for d in (self.root, self.runroot, self.tmpdir):
            remove_tree(d)


def podman_run(
    podman: Podman, args: Sequence[str], *, rm: bool = True, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Same as podman.run(args, ...)."""
    return podman.run(args, rm=rm, check=check, timeout=timeout)


def start_podman(base: Path, *, storage_driver: str | None = None) -> Podman:
    """Prepare private podman storage under base and prove it with ``podman info``.

    storage_driver defaults to overlay when overlayfs works on base's filesystem, else vfs.
    """
    binary = podman_binary()
    if binary is None:
        raise InfraError("podman is not installed (apt-get install podman)")
    if os.geteuid() != 0:
        raise InfraError("the podman fixture runs rootful podman and needs root")
    if shutil.which("runc") is None and not Path("/usr/sbin/runc").exists():
        raise InfraError("runc is not installed (apt-get install runc)")
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    driver = storage_driver or ("overlay" if overlay_supported(base) else "vfs")
    pm = Podman(binary=binary, base=base, storage_driver=driver)
    for d in (pm.root, pm.runroot, pm.tmpdir):
        d.mkdir(exist_ok=True)
    pm.storage_conf.write_text(
        "[storage]\n"
        f"driver = {json.dumps(driver)}\n"
        f"graphroot = {json.dumps(str(pm.root))}\n"
        f"runroot = {json.dumps(str(pm.runroot))}\n",
        encoding="utf-8",
    )
    pm.containers_conf.write_text(
        "[containers]\n"
        f"default_ulimits = {json.dumps(list(ULIMITS))}\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f"tmp_dir = {json.dumps(str(pm.tmpdir))}\n",
        encoding="utf-8",
    )
    try:
        info: dict[str, Any] = json.loads(pm.cli("info", "--format", "json").stdout)
    except (InfraError, subprocess.SubprocessError, ValueError) as exc:
        pm.cleanup()
        raise InfraError(f"podman does not work with storage under {base}: {exc}") from exc
    actual = info.get("store", {}).get("graphDriverName")
    if actual != driver:
        pm.cleanup()
        raise InfraError(f"podman uses storage driver {actual!r}, expected {driver!r}")
    return pm


def unique_cdi_kind(vendor: str = "gpudoctor.test") -> str:
    """A CDI kind no other test (or concurrent run) uses, e.g. ``gpudoctor.test/t1a2b3c4d``."""
    return f"{vendor}/t{uuid.uuid4().hex[:9]}"


def _spec_text(spec: str | Path | Mapping[str, Any]) -> tuple[str, str]:
    """(text, suffix) for a spec given as a dict, a file, or JSON/YAML text."""
    if isinstance(spec, Mapping):
        return json.dumps(spec, indent=2) + "\n", ".json"
    if isinstance(spec, Path):
        suffix = spec.suffix if spec.suffix in (".json", ".yaml") else ".yaml"
        return spec.read_text(encoding="utf-8"), suffix
    try:
        json.loads(spec)
    except ValueError:
        return spec, ".yaml"
    return spec, ".json"


@contextmanager
def cdi_spec_installed(
    spec: str | Path | Mapping[str, Any], *, directory: Path = CDI_DIR, lock: bool = True
) -> Iterator[Path]:
    """Install spec under a unique file name in directory for the with-block; always remove it.

    With lock (the default) an exclusive flock on CDI_LOCK is held meanwhile, so tests in concurrent runs
    that define the same device names (e.g. nvidia.com/gpu=all) never see each other's specs -- the CDI
    registry drops devices defined twice. Yields the installed file's path.
    """
    text, suffix = _spec_text(spec)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"gpudoctor-test-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}"
    lock_fh = None
    if lock:
        CDI_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock_fh = open(CDI_LOCK, "a")  # noqa: SIM115 -- held for the whole with-block
        fcntl.flock(lock_fh, fcntl.LOCK_EX)
    try:
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        yield path
    finally:
        path.unlink(missing_ok=True)
        if lock_fh is not None:
            fcntl.flock(lock_fh, fcntl.LOCK_UN)
            lock_fh.close()
