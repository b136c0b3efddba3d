"""parity.nvidia_smi against real dockerds, with the simulated driver as the host's.

The host side is a fake root (tests.scenarios) whose NVML is the kit's, pointed at the root's /dev by
GPUDOCTOR_FAKE_DEV_ROOT. The container side gets real character devices (the kit's, made with mknod) and
the kit's libraries and nvidia-smi, attached by each route: gpudoctor's runtime shim, the same shim
registered under the name ``nvidia``, gpudoctor's engine as explicit --device/-v arguments, and dockerd's
own ``--gpus`` device driver (which runs a stand-in hook: there is no NVIDIA toolkit here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.checks.base import CheckResult, Status
from gpudoctor.host.facts import HostFacts
from tests.infra.dockerd import DockerDaemon
from tests.infra.image import build_image
from tests.kit import KitSpec
from tests.live.conftest import TEST_IMAGE, HookDaemon, LiveHost, PlainDaemon, kit_lib_image
from tests.live.helpers import doctor, labelled_containers, options, registered

pytestmark = [pytest.mark.docker, pytest.mark.root]

PARITY = "parity.nvidia_smi"
DAEMON = "runtime.docker_daemon"


def _parity(
    host: LiveHost, daemon: DockerDaemon, image: str = TEST_IMAGE, **kw: Any
) -> tuple[CheckResult, dict[str, CheckResult], HostFacts]:
    results, facts = doctor(host.root, options(daemon, image, **kw), PARITY, DAEMON, env=host.env)
    return results[PARITY], results, facts


def _gpu_lines(evidence: tuple[str, ...], side: str) -> list[str]:
    return [e for e in evidence if e.startswith(f"{side} GPU ")]


def test_parity_passes_through_gpudoctor_runtime(live_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    res, results, facts = _parity(live_host, kit_daemon)
    assert results[DAEMON].status is Status.PASS, results[DAEMON]
    assert res.status is Status.PASS, res
    assert "--runtime gpudoctor" in res.summary
    assert any(e.startswith("route: --runtime gpudoctor") for e in res.evidence)
    uuids = [g.uuid for g in live_host.scenario.gpus]
    host, container = _gpu_lines(res.evidence, "host"), _gpu_lines(res.evidence, "container")
    assert [u for u in uuids if any(u in line for line in host)] == uuids
    assert [u for u in uuids if any(u in line for line in container)] == uuids
    assert all("driver 550.54.14" in line for line in container)
    assert labelled_containers(kit_daemon) == []
    assert {"docker", "parity"} <= set(facts.probe_log)


def test_parity_through_a_runtime_named_nvidia(
    live_host: LiveHost, kit_daemon: DockerDaemon, kit_runtime: Path
) -> None:
    # gpudoctor's shim registered as "nvidia": what is exercised is the route choice (nvidia before gpudoctor)
    # and `--runtime nvidia -e NVIDIA_VISIBLE_DEVICES=all`, not NVIDIA's own runtime (not installed here).
    with registered(
        kit_daemon, {"nvidia": {"path": str(kit_runtime)}, "gpudoctor": {"path": str(kit_runtime)}}
    ):
        res, _, _ = _parity(live_host, kit_daemon)
    assert res.status is Status.PASS, res
    assert any(e.startswith("route: --runtime nvidia") for e in res.evidence)
    assert "--runtime nvidia -e NVIDIA_VISIBLE_DEVICES=all" in next(
        e for e in res.evidence if e.startswith("command:")
    )


def test_parity_fails_when_a_gpu_is_hidden(
    live_host: LiveHost, kit_daemon: DockerDaemon, one_gpu_runtime: Path
) -> None:
    # The runtime's driver root has only GPU 0's node, while the host has both.
    with registered(kit_daemon, {"nvidia": {"path": str(one_gpu_runtime)}}):
        res, _, _ = _parity(live_host, kit_daemon)
    hidden = live_host.scenario.gpus[1]
    assert res.status is Status.FAIL, res
    assert "1 of the host's 2 GPUs missing from the container" in res.summary
    assert f"GPU 1 ({hidden.uuid})" in res.summary
    assert len(_gpu_lines(res.evidence, "container")) == 1
    assert len(_gpu_lines(res.evidence, "host")) == 2
    assert res.remedy and "attached fewer nodes" in res.remedy


def test_parity_direct_route_without_any_runtime(live_host: LiveHost, plain_daemon: PlainDaemon) -> None:
    res, results, _ = _parity(live_host, plain_daemon.daemon)
    assert res.status is Status.PASS, res
    assert any(e.startswith("route: explicit --device/-v") for e in res.evidence)
    command = next(e for e in res.evidence if e.startswith("command:"))
    assert "--device /dev/nvidiactl:/dev/nvidiactl" in command  # host paths, as everywhere in a report
    assert str(live_host.root) not in command
    assert ":ro" in command and "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu" in command
    assert len(_gpu_lines(res.evidence, "container")) == 2
    # No GPU route in the daemon itself: the daemon check says so, without blocking this check.
    assert results[DAEMON].status is Status.WARN
    assert "cannot attach a GPU by itself" in results[DAEMON].summary


def test_no_toolkit_and_no_runtime_still_reaches_a_container(
    tmp_path: Path, plain_daemon: PlainDaemon
) -> None:
    """The whole doctor on a host without the toolkit and with nothing registered in daemon.json: the toolkit
    check fails, yet the daemon is still asked and parity runs through gpudoctor's engine directly."""
    from tests.scenarios.builder import build_host, healthy_host
    from tests.scenarios.runtime_fragments import docker_engine

    scenario = healthy_host(2, runtime=False, name="no-toolkit-no-runtime").with_tree(docker_engine())
    host = LiveHost(root=build_host(tmp_path, scenario), scenario=scenario)
    results, _ = doctor(host.root, options(plain_daemon.daemon, TEST_IMAGE), "toolkit", DAEMON, PARITY,
                        env=host.env)
    assert results["toolkit.installed"].status is Status.FAIL, results["toolkit.installed"]
    assert results[DAEMON].status is Status.WARN, results[DAEMON]
    res = results[PARITY]
    assert res.status is Status.PASS, res
    assert any(e.startswith("route: explicit --device/-v") for e in res.evidence)
    assert len(_gpu_lines(res.evidence, "container")) == len(scenario.gpus)


def test_parity_gpus_route_runs_the_toolkit_hook(toolkit_host: LiveHost, hook_daemon: HookDaemon) -> None:
    # The files say the toolkit is installed; dockerd's PATH cannot be read from the fake root, so `--gpus` is
    # tried. This dockerd has the (stand-in) hook on its PATH, accepts `--gpus all` and runs the hook, which
    # attaches nothing: the check must say that nvidia-smi is not in the container.
    before = hook_daemon.marker.read_text() if hook_daemon.marker.exists() else ""
    res, _, _ = _parity(toolkit_host, hook_daemon.daemon)
    assert any(e.startswith("route: --gpus all") for e in res.evidence), res
    assert res.status is Status.FAIL
    assert "nvidia-smi is not in the container (--gpus all)" in res.summary
    calls = hook_daemon.marker.read_text()[len(before) :]
    assert "prestart" in calls  # dockerd's nvidia device driver really ran the hook
    assert labelled_containers(hook_daemon.daemon) == []


def test_parity_gpus_refused_falls_back_and_fails(toolkit_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    # The toolkit is installed on disk, but this dockerd never had the hook on its PATH: `--gpus` is refused
    # with the real error, the comparison goes on through gpudoctor's runtime, and the check fails (C1).
    res, _, _ = _parity(toolkit_host, kit_daemon)
    assert res.status is Status.FAIL, res
    assert 'could not select device driver "" with capabilities: [[gpu]]' in res.summary
    assert any(e.startswith("first tried: --gpus all") for e in res.evidence)
    assert any(e.startswith("route: --runtime gpudoctor") for e in res.evidence)
    assert len(_gpu_lines(res.evidence, "container")) == 2
    assert res.remedy and "restart docker" in res.remedy


def test_parity_fails_when_the_image_carries_a_mismatched_libnvidia_ml(
    live_host: LiveHost, kit_daemon: DockerDaemon, tmp_path: Path
) -> None:
    # A newer libnvidia-ml baked into the image wins the ld cache; against the 550 kernel module it fails init.
    image = kit_lib_image(
        kit_daemon,
        tmp_path,
        "gpudoctor-live/baked-mismatch:1",
        KitSpec(driver_version="565.57.01", rm_mismatch=True),
    )
    res, _, _ = _parity(live_host, kit_daemon, image)
    assert res.status is Status.FAIL, res
    assert "Driver/library version mismatch" in res.summary
    assert "565.57" in res.summary and "550.54.14" in res.summary
    assert res.remedy and "without driver packages" in res.remedy


def test_parity_fails_when_the_image_nvml_reports_another_driver(
    live_host: LiveHost, kit_daemon: DockerDaemon, tmp_path: Path
) -> None:
    image = kit_lib_image(
        kit_daemon, tmp_path, "gpudoctor-live/baked-other:1", KitSpec(driver_version="565.57.01")
    )
    res, _, _ = _parity(live_host, kit_daemon, image)
    assert res.status is Status.FAIL, res
    assert "reports driver 565.57.01, the host's is 550.54.14" in res.summary
    assert "carries its own libnvidia-ml" in res.summary


def test_missing_image_is_skip_with_the_pull_command(live_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    res, _, _ = _parity(live_host, kit_daemon, "nvidia/cuda:12.4.1-base-ubuntu22.04")
    assert res.status is Status.SKIP
    assert "nvidia/cuda:12.4.1-base-ubuntu22.04 is not present" in res.summary
    assert res.remedy and "`docker pull nvidia/cuda:12.4.1-base-ubuntu22.04`" in res.remedy
    assert labelled_containers(kit_daemon) == []


def _sleepy_image(daemon: DockerDaemon, tmp: Path) -> str:
    # Without `utility` the runtime attaches no nvidia-smi, so the image's own one runs: it never returns.
    script = tmp / "sleepy-nvidia-smi"
    script.write_text("#!/bin/sh\nexec sleep 600\n")
    script.chmod(0o755)
    return build_image(
        daemon,
        tmp,
        "gpudoctor-live/sleepy-smi:1",
        extra_files={"/usr/bin/nvidia-smi": script},
        changes=["ENV NVIDIA_DRIVER_CAPABILITIES=compute"],
    )


def test_timeout_kills_and_removes_the_container(
    live_host: LiveHost, kit_daemon: DockerDaemon, tmp_path: Path
) -> None:
    image = _sleepy_image(kit_daemon, tmp_path)
    res, _, _ = _parity(live_host, kit_daemon, image, timeout=3.0)
    assert res.status is Status.FAIL, res
    assert "did not finish within 3s" in res.summary and "removed" in res.summary
    assert labelled_containers(kit_daemon) == []


def test_ctrl_c_removes_the_container(live_host: LiveHost, kit_daemon: DockerDaemon, tmp_path: Path) -> None:
    image = _sleepy_image(kit_daemon, tmp_path)
    env = {**os.environ, **live_host.env}
    argv = [
        sys.executable,
        "-m",
        "gpudoctor",
        "--check",
        "--json",
        "--root",
        str(live_host.root),
        "--docker-host",
        kit_daemon.host,
        "--image",
        image,
        "--timeout",
        "300",
        "--only",
        PARITY,
    ]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 120
        while not labelled_containers(kit_daemon):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the parity container never appeared"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert labelled_containers(kit_daemon) == []


def test_cli_json_on_a_healthy_host_shows_route_and_both_gpu_lists(
    live_host: LiveHost, kit_daemon: DockerDaemon
) -> None:
    env = {**os.environ, **live_host.env}
    argv = [
        sys.executable,
        "-m",
        "gpudoctor",
        "--check",
        "--json",
        "--root",
        str(live_host.root),
        "--docker-host",
        kit_daemon.host,
        "--image",
        TEST_IMAGE,
    ]
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2]
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    parity = checks[PARITY]
    assert parity["status"] == "pass", parity
    assert any(e.startswith("route: --runtime gpudoctor") for e in parity["evidence"])
    for g in live_host.scenario.gpus:
        assert any(e.startswith("host GPU ") and g.uuid in e for e in parity["evidence"])
        assert any(e.startswith("container GPU ") and g.uuid in e for e in parity["evidence"])
    assert checks[DAEMON]["status"] == "pass", checks[DAEMON]
    validate = pytest.importorskip("jsonschema").validate
    from importlib.resources import files

    validate(report, json.loads(files("gpudoctor.report").joinpath("schema.json").read_text()))


def test_recorded_probes_replay_without_a_daemon(live_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    live, _, facts = _parity(live_host, kit_daemon)
    recorded = json.loads(json.dumps(facts.probe_log))  # what a snapshot stores
    results, _ = doctor(
        live_host.root,
        options(None, TEST_IMAGE, docker_host="unix:///nonexistent/docker.sock"),
        PARITY,
        env=live_host.env,
        recorded=recorded,
    )
    replay = results[PARITY]
    assert (replay.status, replay.summary) == (live.status, live.summary)
    assert [e for e in replay.evidence if "GPU" in e] == [e for e in live.evidence if "GPU" in e]


def test_pull_is_attempted_only_with_pull(live_host: LiveHost, kit_daemon: DockerDaemon) -> None:
    # No registry is reachable from the test machine: the pull really runs and fails, and says so.
    image = "localhost:1/gpudoctor/absent:1"
    res, _, _ = _parity(live_host, kit_daemon, image, pull=True)
    assert res.status is Status.SKIP, res
    assert res.summary.startswith(f"could not pull {image}: ")
    res, _, _ = _parity(live_host, kit_daemon, image)
    assert "gpudoctor pulls only with --pull" in res.summary


def test_image_without_utility_capability_is_explained(
    live_host: LiveHost, kit_daemon: DockerDaemon, tmp_path: Path
) -> None:
    image = build_image(
        kit_daemon,
        tmp_path,
        "gpudoctor-live/compute-only:1",
        changes=["ENV NVIDIA_DRIVER_CAPABILITIES=compute"],
    )
    res, _, _ = _parity(live_host, kit_daemon, image)
    assert res.status is Status.FAIL, res
    assert "nvidia-smi is not in the container (--runtime gpudoctor)" in res.summary
    assert res.remedy and "NVIDIA_DRIVER_CAPABILITIES=compute, without `utility`" in res.remedy


def test_host_baseline_falls_back_to_proc_when_nvml_is_unusable(
    live_host: LiveHost, kit_daemon: DockerDaemon
) -> None:
    # Without GPUDOCTOR_FAKE_DEV_ROOT the host-side fake NVML looks at this machine's /dev: no nvidiactl.
    env = {k: v for k, v in os.environ.items() if k != "GPUDOCTOR_FAKE_DEV_ROOT"}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        results, _ = doctor(live_host.root, options(kit_daemon, TEST_IMAGE), PARITY)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    res = results[PARITY]
    assert res.status is Status.PASS, res
    head = next(e for e in res.evidence if e.startswith("host: "))
    assert "from /proc/driver/nvidia/gpus (host NVML: driver_not_loaded" in head


def test_device_cgroup_denial_points_to_the_cgroup_check(
    live_host: LiveHost, kit_daemon: DockerDaemon
) -> None:
    # Real output first: the kit's nvidia-smi with the GPU nodes bind-mounted instead of passed with --device,
    # so the device cgroup has no rule for them and open() fails with EPERM, as after a systemd daemon-reload.
    root = live_host.root
    lib = "/usr/lib/x86_64-linux-gnu"
    binds = [f"{root}/dev/{n}:/dev/{n}" for n in ("nvidiactl", "nvidia0", "nvidia1")]
    binds += [
        f"{root}{lib}/libnvidia-ml.so.550.54.14:{lib}/libnvidia-ml.so.1:ro",
        f"{root}/usr/bin/nvidia-smi:/usr/bin/nvidia-smi:ro",
    ]
    opts = [a for b in binds for a in ("-v", b)]
    out = kit_daemon.run(
        TEST_IMAGE,
        "nvidia-smi",
        "--query-gpu=uuid,name,driver_version",
        "--format=csv,noheader",
        options=opts,
        check=False,
    )
    assert out.stdout.strip() == "Failed to initialize NVML: Unknown Error", out
    # Then the check's reading of exactly that run, replayed as a snapshot would record it.
    from gpudoctor.host.parity_probe import Attempt, ParityRun

    run = ParityRun(
        image=TEST_IMAGE,
        status="ran",
        attempts=(
            Attempt(
                route="runtime-gpudoctor",
                runtime="gpudoctor",
                why="registered in the daemon",
                command="docker run ...",
                started=True,
                exit_code=out.returncode,
                stdout=out.stdout,
                stderr=out.stderr,
            ),
        ),
    )
    _, _, facts = _parity(live_host, kit_daemon)
    recorded = {"docker": facts.probe_log["docker"], "parity": run.to_dict()}
    results, _ = doctor(
        live_host.root,
        options(kit_daemon, TEST_IMAGE),
        PARITY,
        "runtime.cgroups",
        env=live_host.env,
        recorded=recorded,
    )
    res = results[PARITY]
    assert res.status is Status.FAIL
    assert "`Failed to initialize NVML: Unknown Error` in the container" in res.summary
    assert "device cgroup" in res.summary
    assert res.remedy and "runtime.cgroups" in res.remedy and res.fixes == ("cgroup-driver",)
