"""runtime.docker_config: daemon.json as dockerd reads it, and the unit flags that change what it reads."""

from __future__ import annotations

from pathlib import Path

from gpudoctor.checks.base import Status
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.runtime_fragments import build_host, doctor, remove

DJ = frag.DAEMON_JSON


def test_healthy_daemon_json_lists_the_gpu_routes(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.PASS
    assert res.summary == f"{DJ} is valid; GPU routes: --gpus, --runtime nvidia"
    assert f"{DJ}: runtimes.nvidia: path = 'nvidia-container-runtime'" in res.evidence
    assert "nvidia-container-runtime: /usr/bin/nvidia-container-runtime" in res.evidence


def test_invalid_json_gives_line_and_column_and_no_fix(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_invalid())
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert f"{DJ} cannot be used at line 4, column 9: invalid JSON: Expecting ',' delimiter" in res.summary
    assert res.evidence == (f"{DJ}:4:9: invalid JSON: Expecting ',' delimiter",)
    assert "python3 -m json.tool /etc/docker/daemon.json" in (res.remedy or "")
    # gpudoctor's docker-runtime fix refuses a file it cannot parse, so it is not offered.
    assert res.fixes == ()


def test_top_level_array_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path, {DJ: frag.File('["runtimes"]\n')})
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert any("top level must be a JSON object" in e for e in res.evidence)


def test_runtime_whose_binary_is_missing_fails_naming_path_and_error(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_missing_runtime_binary())
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert "Docker runtime 'nvidia-legacy' points to /usr/bin/nvidia-container-runtime.legacy, which is missing" in (
        res.summary
    )
    assert "fork/exec /usr/bin/nvidia-container-runtime.legacy: no such file or directory" in res.summary
    assert f"{DJ}: runtimes.nvidia-legacy: path = '/usr/bin/nvidia-container-runtime.legacy'" in res.evidence
    assert "/usr/bin/nvidia-container-runtime.legacy: not present" in res.evidence
    assert res.fixes == ("docker-runtime",)


def test_relative_runtime_name_is_looked_up_on_the_path(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_nvidia())
    remove(root, "/usr/bin/nvidia-container-runtime")
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert 'exec: "nvidia-container-runtime": executable file not found in $PATH' in res.summary
    assert "nvidia-container-runtime: not found in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin" in (
        res.evidence
    )
    frag.write_tree(root, {"/usr/local/sbin/nvidia-container-runtime": frag.executable()})
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.PASS
    assert "nvidia-container-runtime: /usr/local/sbin/nvidia-container-runtime" in res.evidence


def test_default_runtime_that_is_not_registered_fails(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_default_unregistered())
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert "default-runtime 'nvidia' is not a registered runtime" in res.summary
    assert "specified default runtime 'nvidia' does not exist" in res.summary
    assert f"{DJ}: default-runtime = 'nvidia'" in res.evidence
    assert res.fixes == ("docker-runtime",)
    assert "nvidia-ctk runtime configure --runtime=docker --set-as-default" in (res.remedy or "")


def test_default_runtime_nvidia_registered_passes(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_nvidia(default="nvidia"))
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.PASS
    assert f"{DJ}: default-runtime = 'nvidia'" in res.evidence


def test_no_nvidia_runtime_is_fine_when_the_hook_exists(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json({"log-driver": "json-file"}))
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.PASS
    assert res.summary == f"{DJ} is valid; GPU routes: --gpus"
    assert any(e.startswith("`--runtime nvidia` is not registered (not needed for `--gpus`)") for e in res.evidence)


def test_no_daemon_json_uses_defaults(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, DJ)
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.PASS
    assert "`docker run --gpus` works through the toolkit hook" in res.summary
    assert f"{DJ}: not present (Docker's defaults apply)" in res.evidence


def test_docker_not_installed_skips(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, DJ, "/usr/bin/dockerd")
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.SKIP
    assert "Docker is not installed" in res.summary


_UNIT = "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n"


def test_setting_in_both_daemon_json_and_unit_flags_fails(tmp_path: Path) -> None:
    root = build_host(
        tmp_path,
        {"/lib/systemd/system/docker.service": frag.File(_UNIT)},
        frag.daemon_json_nvidia(hosts=["unix:///var/run/docker.sock"]),
    )
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert "'hosts' is set both in /etc/docker/daemon.json and as --host" in res.summary
    assert "/lib/systemd/system/docker.service: ExecStart=/usr/bin/dockerd -H fd:// " \
           "--containerd=/run/containerd/containerd.sock" in res.evidence


def test_add_runtime_in_a_dropin_is_checked_and_config_file_flag_is_followed(tmp_path: Path) -> None:
    dropin = (
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/bin/dockerd --config-file=/etc/docker/gpu.json "
        "--add-runtime=nv=/opt/nvidia/nvidia-container-runtime\n"
    )
    root = build_host(
        tmp_path,
        {"/lib/systemd/system/docker.service": frag.File(_UNIT),
         "/etc/systemd/system/docker.service.d/override.conf": frag.File(dropin),
         "/etc/docker/gpu.json": frag.File('{"default-runtime": "nv"}\n')},
        frag.daemon_json_invalid(),  # not the file dockerd reads here
    )
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.FAIL
    assert "Docker runtime 'nv' points to /opt/nvidia/nvidia-container-runtime, which is missing" in res.summary
    assert "every container (it is the default runtime)" in res.summary
    assert ("/etc/systemd/system/docker.service.d/override.conf: --add-runtime nv=/opt/nvidia/nvidia-container-runtime:"
            " path = '/opt/nvidia/nvidia-container-runtime'") in res.evidence
    assert "/etc/docker/gpu.json: default-runtime = 'nv'" in res.evidence


def test_duplicate_runtimes_block_warns_that_the_first_is_ignored(tmp_path: Path) -> None:
    text = (
        '{\n  "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},\n'
        '  "log-driver": "json-file",\n'
        '  "runtimes": {"gpudoctor": {"path": "/usr/local/bin/gpudoctor-runtime"}}\n}\n'
    )
    root = build_host(tmp_path, {DJ: frag.File(text), "/usr/local/bin/gpudoctor-runtime": frag.executable()})
    res = doctor(root, "runtime.docker_config")["runtime.docker_config"]
    assert res.status is Status.WARN
    assert res.summary.startswith(f"{DJ} sets runtimes twice: dockerd keeps only the last one")
    assert f"{DJ}: duplicate key runtimes" in res.evidence
    # What dockerd really sees: only the gpudoctor runtime.
    assert f"{DJ}: runtimes.gpudoctor: path = '/usr/local/bin/gpudoctor-runtime'" in res.evidence
    assert not any("runtimes.nvidia" in e for e in res.evidence)
