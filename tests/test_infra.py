"""The test infrastructure itself, against real dockerd, containerd, runc and podman."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.dockerd import DockerDaemon, start_dockerd
from tests.infra.image import build_image, host_glibc, import_image
from tests.infra.podman import Podman, cdi_spec_installed, unique_cdi_kind
from tests.infra.system import CommandError, InfraError, mounts_under, pid_alive, pids_mentioning

RUNC = shutil.which("runc") or "/usr/sbin/runc"


@pytest.fixture(scope="module")
def hello_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dynamically linked C program (built by gcc) that prints its first argument."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("hello")
    (d / "hello.c").write_text(
        '#include <stdio.h>\nint main(int c, char **v) { printf("glibc says %s\\n", c > 1 ? v[1] : "-"); }\n'
    )
    subprocess.run([gcc, "-o", str(d / "hello"), str(d / "hello.c")], check=True, capture_output=True)
    return d / "hello"


# -- docker ------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_container_runs_without_network(dockerd: DockerDaemon, test_image: str) -> None:
    token = uuid.uuid4().hex
    res = dockerd.run(test_image, "sh", "-c", f"echo {token}; ls /sys/class/net")
    lines = res.stdout.split()
    assert lines[0] == token
    assert lines[1:] == ["lo"]


@pytest.mark.docker
def test_private_daemon_layout(dockerd: DockerDaemon) -> None:
    info = dockerd.info()
    assert info["DockerRootDir"] == str(dockerd.data_root)
    assert info["Driver"] == dockerd.storage_driver
    assert dockerd.pidfile.read_text().strip() == str(dockerd.pid)
    # Its containerd is its own: the socket lives under the daemon's exec-root.
    assert dockerd.containerd_address.is_socket()
    assert dockerd.containerd_address.is_relative_to(dockerd.exec_root)
    assert dockerd.host == f"unix://{dockerd.exec_root}/docker.sock"
    assert dockerd.env()["DOCKER_HOST"] == dockerd.host


@pytest.mark.docker
def test_test_image_has_glibc_and_nothing_nvidia(dockerd: DockerDaemon, test_image: str) -> None:
    triplet, interp, _ = host_glibc()
    res = dockerd.run(
        test_image,
        "sh",
        "-c",
        f"readlink -f {interp}; stat -c %s /etc/ld.so.cache; ls /usr/lib/{triplet}; "
        "find / -xdev -iname '*nvidia*' -o -iname '*cuda*' | wc -l",
    )
    resolved, cache_size, *libs, nvidia_count = res.stdout.split()
    assert resolved == f"/usr/lib/{triplet}/{Path(interp).name}"
    assert cache_size == "0"
    assert "libc.so.6" in libs
    assert nvidia_count == "0"


@pytest.mark.docker
def test_image_variants(dockerd: DockerDaemon, hello_binary: Path, tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:12]
    tag = f"gpudoctor-test/variant-{token}:1"
    build_image(
        dockerd,
        tmp_path,
        tag,
        extra_files={"/usr/local/bin/hello": hello_binary, "/etc/gd-note": token.encode()},
        symlinks={"/usr/lib/gd-link": "/etc/gd-note"},
        env={"LD_PRELOAD": "/usr/lib/missing-preload.so"},
    )
    try:
        res = dockerd.run(
            tag, "sh", "-c", "hello $(cat /usr/lib/gd-link); readlink /usr/lib/gd-link; echo $LD_PRELOAD"
        )
        assert res.stdout.splitlines() == [
            f"glibc says {token}",
            "/etc/gd-note",
            "/usr/lib/missing-preload.so",
        ]
        # The dynamic loader really saw the image's LD_PRELOAD.
        assert "missing-preload.so" in res.stderr and "cannot be preloaded" in res.stderr
        config = json.loads(dockerd.cli("image", "inspect", tag, "--format", "{{json .Config}}").stdout)
        assert config["Cmd"] == ["sh"]
    finally:
        dockerd.cli("rmi", tag)


@pytest.mark.docker
def test_session_daemon_registers_gpudoctor_runtime(dockerd: DockerDaemon) -> None:
    shim = shutil.which("gpudoctor-runtime")
    if shim is None:
        pytest.skip("gpudoctor-runtime is not on PATH (pip install -e . puts it there)")
    runtimes = dockerd.info()["Runtimes"]
    assert runtimes["gpudoctor"]["path"] == os.path.abspath(shim)
    assert dockerd.read_config()["runtimes"]["gpudoctor"] == {"path": os.path.abspath(shim)}


@pytest.fixture
def own_dockerd(tmp_path: Path) -> Iterator[DockerDaemon]:
    """A daemon of the test's own (its daemon.json gets edited), with runtime gd-first = runc."""
    d = start_dockerd(tmp_path / "d", runtimes={"gd-first": {"path": RUNC}})
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.docker
def test_daemon_json_runtime_and_sighup_reload(own_dockerd: DockerDaemon, test_rootfs: Path) -> None:
    d = own_dockerd
    assert d.info()["Runtimes"]["gd-first"] == {"path": RUNC}
    assert "gd-second" not in d.info()["Runtimes"]
    config = d.read_config()
    config["runtimes"]["gd-second"] = {"path": RUNC, "runtimeArgs": ["--debug"]}
    d.write_config(config)
    pid = d.pid
    d.reload()
    assert d.pid == pid and d.running()
    assert d.info()["Runtimes"]["gd-second"] == {"path": RUNC, "runtimeArgs": ["--debug"]}
    # The reloaded runtime is usable, not just listed.
    image = import_image(d, test_rootfs, "gpudoctor-test/reload:1")
    assert d.run(image, "sh", "-c", "echo via-second", runtime="gd-second").stdout.strip() == "via-second"
    cid = d.cli("run", "-d", "--network", "none", "--runtime", "gd-second", image, "true").stdout.strip()
    d.cli("wait", cid)
    assert d.cli("inspect", "--format", "{{.HostConfig.Runtime}}", cid).stdout.strip() == "gd-second"
    d.cli("rm", cid)


@pytest.mark.docker
def test_reload_reports_rejected_config(own_dockerd: DockerDaemon) -> None:
    d = own_dockerd
    d.config_path.write_text('{"runtimes": {"gd-broken": ')  # truncated JSON
    with pytest.raises(InfraError, match="rejected"):
        d.reload()
    assert d.running()
    runtimes = d.info()["Runtimes"]
    assert "gd-first" in runtimes and "gd-broken" not in runtimes


@pytest.mark.docker
def test_two_daemons_are_isolated_and_stop_cleans_up(tmp_path: Path, test_rootfs: Path) -> None:
    a = start_dockerd(tmp_path / "a")
    try:
        b = start_dockerd(tmp_path / "b")
    except BaseException:
        a.stop()
        raise
    try:
        assert a.containerd_address != b.containerd_address
        import_image(a, test_rootfs, "gpudoctor-test/only-in-a:1")
        assert a.cli("images", "-q", "gpudoctor-test/only-in-a:1").stdout.strip()
        assert not b.cli("images", "-q", "gpudoctor-test/only-in-a:1").stdout.strip()
        # A running container leaves a shim, runc state and mounts behind unless stop() handles them.
        cid = a.cli(
            "run", "-d", "--network", "none", "gpudoctor-test/only-in-a:1", "sleep", "600"
        ).stdout.strip()
        assert a.cli("inspect", "--format", "{{.State.Running}}", cid).stdout.strip() == "true"
        assert pids_mentioning(str(a.containerd_address))
        pids = [a.pid, a.containerd_pid]
    finally:
        a.stop()
    try:
        assert not [p for p in pids if pid_alive(p)]
        assert not pids_mentioning(str(a.containerd_address))
        assert not mounts_under(tmp_path / "a")
        assert not a.data_root.exists() and not a.exec_root.exists()
        assert b.running()
    finally:
        b.stop()


@pytest.mark.docker
def test_start_failure_raises_with_log_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(InfraError) as err:
        start_dockerd(tmp_path / "bad", extra_config={"gd-not-an-option": True})
    assert "gd-not-an-option" in str(err.value)  # dockerd's own complaint, from its log
    assert not (tmp_path / "bad" / "data").exists()
    assert not mounts_under(tmp_path / "bad")


def test_flag_keys_are_refused_in_extra_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data-root"):
        start_dockerd(tmp_path / "x", extra_config={"data-root": "/elsewhere"})


@pytest.mark.docker
def test_cli_errors_carry_output(dockerd: DockerDaemon) -> None:
    with pytest.raises(CommandError) as err:
        dockerd.cli("image", "inspect", "gpudoctor-test/no-such-image:0")
    assert "No such image" in str(err.value)


# -- podman ------------------------------------------------------------------------------------------


@pytest.mark.podman
def test_podman_runs_container(podman: Podman, podman_test_image: str) -> None:
    token = uuid.uuid4().hex
    res = podman.run([podman_test_image, "sh", "-c", f"echo {token}; ls /sys/class/net; ulimit -n"])
    assert res.stdout.split() == [token, "lo", "1024"]
    assert podman.storage_driver in podman.cli("info", "--format", "{{.Store.GraphDriverName}}").stdout


def _cdi_spec(kind: str, *, inject: Path, hook_out: Path, marker: str) -> dict[str, object]:
    return {
        "cdiVersion": "0.5.0",
        "kind": kind,
        "devices": [
            {
                "name": "dev0",
                "containerEdits": {
                    "env": [f"GD_CDI_MARK={marker}"],
                    "deviceNodes": [{"path": "/dev/gd-null", "hostPath": "/dev/null"}],
                    "mounts": [
                        {
                            "hostPath": str(inject),
                            "containerPath": "/etc/gd-injected",
                            "options": ["ro", "nosuid", "nodev", "bind"],
                        }
                    ],
                    "hooks": [
                        {
                            "hookName": "createRuntime",
                            "path": "/bin/sh",
                            "args": ["sh", "-c", f"cat > {hook_out}"],
                        }
                    ],
                },
            }
        ],
        "containerEdits": {"env": ["GD_CDI_COMMON=1"]},
    }


@pytest.mark.podman
def test_podman_cdi_spec_injects_edits(podman: Podman, podman_test_image: str, tmp_path: Path) -> None:
    kind = unique_cdi_kind()
    marker = uuid.uuid4().hex
    inject = tmp_path / "injected.txt"
    inject.write_text(f"content-{marker}\n")
    hook_out = tmp_path / "hook-state.json"
    spec = _cdi_spec(kind, inject=inject, hook_out=hook_out, marker=marker)
    script = (
        "echo $GD_CDI_MARK $GD_CDI_COMMON; cat /etc/gd-injected; stat -c '%F %t:%T' /dev/gd-null; "
        "echo x > /dev/gd-null && echo writable; grep ' /etc/gd-injected ' /proc/self/mountinfo | cut -d' ' -f6"
    )
    with cdi_spec_installed(spec) as path:
        assert path.parent == Path("/var/run/cdi") and path.suffix == ".json"
        res = podman.run(["--device", f"{kind}=dev0", podman_test_image, "sh", "-c", script])
    assert not path.exists()
    lines = res.stdout.splitlines()
    assert lines[0] == f"{marker} 1"
    assert lines[1] == f"content-{marker}"
    assert lines[2] == "character special file 1:3"
    assert lines[3] == "writable"
    assert lines[4].split(",")[0] == "ro"
    state = json.loads(hook_out.read_text())
    assert state["status"] == "creating" and state["pid"] > 0
    # Once removed, the device no longer resolves.
    gone = podman.run(["--device", f"{kind}=dev0", podman_test_image, "true"], check=False)
    assert gone.returncode != 0
    assert f"{kind}=dev0" in gone.stderr


@pytest.mark.podman
def test_cdi_yaml_spec_and_removal_on_error(podman: Podman, podman_test_image: str) -> None:
    kind = unique_cdi_kind()
    yaml_spec = f"cdiVersion: 0.5.0\nkind: {kind}\ndevices:\n- name: ydev\n  containerEdits:\n    env: [GD_YAML=yes]\n"
    with pytest.raises(RuntimeError, match="boom"), cdi_spec_installed(yaml_spec) as path:
        assert path.suffix == ".yaml"
        res = podman.run(["--device", f"{kind}=ydev", podman_test_image, "sh", "-c", "echo $GD_YAML"])
        assert res.stdout.strip() == "yes"
        raise RuntimeError("boom")
    assert not path.exists()
