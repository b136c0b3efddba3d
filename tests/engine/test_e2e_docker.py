"""End to end in a real dockerd: ``docker run --runtime gpudoctor-e2e`` against a simulated host driver.

The host driver is a kit driver root in a temporary directory (libraries, nvidia-smi, device nodes with
real majors, ld.so.cache, and its /proc view). The runtime is registered the way install registers it: a
generated sh launcher, here with a runtime.toml that points driver_root at the kit root. It is added to the
session daemon's daemon.json and picked up with a SIGHUP reload, so the shared daemon's environment stays
untouched and no restart is needed; the module restores daemon.json afterwards.

To see what each side of the shim saw, a recorder sits before and after it:
dockerd -> recorder(before) -> launcher -> shim -> recorder(after) -> runc. On ``create`` each recorder logs
the sha256 of ``config.json`` and keeps a copy, so "the spec is unchanged" is a byte comparison of what
dockerd wrote and what runc ran.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.launcher import write_launcher
from gpudoctor.engine.settings import Settings, render_settings
from tests.engine.engine_kit import CONTAINER_PROBE, probe_nodes, probe_smi
from tests.infra.dockerd import DockerDaemon
from tests.kit.driver_root import DriverRootInfo

pytestmark = [pytest.mark.docker, pytest.mark.root]

RUNTIME = "gpudoctor-e2e"

RECORDER = """#!/bin/sh
# Test recorder: on create, log "<tag> <container id> <sha256 of config.json>" and keep a copy; then exec.
out={out}
bundle=.
take=
id=
create=
for a do
    if [ -n "$take" ]; then bundle=$a; take=; continue; fi
    case $a in
        --bundle|-b) take=1 ;;
        --bundle=*|-b=*) bundle=${{a#*=}} ;;
        create) create=1 ;;
    esac
    id=$a
done
if [ -n "$create" ]; then
    sum=$(sha256sum "$bundle/config.json" | cut -d' ' -f1)
    echo "{tag} $id $sum" >> "$out/sums"
    cp "$bundle/config.json" "$out/{tag}-$id.json"
fi
exec {next} "$@"
"""


class GpuDocker:
    """The registered runtime plus what the recorders saw."""

    def __init__(self, daemon: DockerDaemon, image: str, kit: DriverRootInfo, base: Path) -> None:
        self.daemon = daemon
        self.image = image
        self.kit = kit
        self.base = base
        self.records = base / "records"

    def run(
        self, visible: str | None, script: str = CONTAINER_PROBE, *, check: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], str]:
        """docker run the probe with NVIDIA_VISIBLE_DEVICES=visible (None: unset); returns (result, id)."""
        cidfile = self.base / f"cid-{uuid.uuid4().hex[:8]}"
        options = ["--cidfile", str(cidfile)]
        if visible is not None:
            options += ["-e", f"NVIDIA_VISIBLE_DEVICES={visible}"]
        done = self.daemon.run(self.image, "sh", "-c", script, runtime=RUNTIME, options=options, check=check)
        cid = cidfile.read_text().strip() if cidfile.exists() else ""
        return done, cid

    def sums(self, cid: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in (self.records / "sums").read_text().splitlines():
            tag, rec_id, digest = line.split()
            if rec_id == cid:
                out[tag] = digest
        return out

    def spec_runc_ran(self, cid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.records / f"after-{cid}.json").read_text())
        return data


@pytest.fixture(scope="module")
def gpu_docker(
    dockerd: DockerDaemon, test_image: str, kit_host: DriverRootInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GpuDocker]:
    base = tmp_path_factory.mktemp("gpu-docker")
    records = base / "records"
    records.mkdir()
    settings = base / "runtime.toml"
    after = base / "recorder-after"
    after.write_text(RECORDER.format(out=records, tag="after", next="/usr/sbin/runc"))
    settings.write_text(
        render_settings(
            Settings(runc=str(after), driver_root=str(kit_host.root), log_file=str(base / "shim.log"),
                     cache_dir=str(base / "cache"))
        )
    )  # fmt: skip
    launcher = base / "gpudoctor-runtime"
    write_launcher(str(launcher), runc=str(after), config=str(settings))
    before = base / "recorder-before"
    before.write_text(RECORDER.format(out=records, tag="before", next=launcher))
    for script in (after, before):
        script.chmod(0o755)
    original = dockerd.read_config()
    runtimes = {**original.get("runtimes", {}), RUNTIME: {"path": str(before)}}
    dockerd.write_config({**original, "runtimes": runtimes})
    dockerd.reload()
    try:
        yield GpuDocker(dockerd, test_image, kit_host, base)
    finally:
        dockerd.write_config(original)
        dockerd.reload()


def _smi_lines(kit: DriverRootInfo, indices: list[int]) -> list[str]:
    """What nvidia-smi -L prints for these host GPUs, numbered as the container sees them."""
    return [
        f"GPU {n}: {kit.spec.gpus[i].name} (UUID: {kit.spec.gpus[i].uuid})" for n, i in enumerate(indices)
    ]


def test_all_gpus(gpu_docker: GpuDocker) -> None:
    done, cid = gpu_docker.run("all")
    kit = gpu_docker.kit
    uvm = kit.device_nodes["/dev/nvidia-uvm"][0]
    assert probe_nodes(done.stdout) == {
        "/dev/nvidia0": (195, 0), "/dev/nvidia1": (195, 1), "/dev/nvidiactl": (195, 255),
        "/dev/nvidia-uvm": (uvm, 0), "/dev/nvidia-uvm-tools": (uvm, 1),
    }  # fmt: skip
    assert probe_smi(done.stdout) == _smi_lines(kit, [0, 1])
    assert "smi-end 0" in done.stdout
    # Driver files are read-only bind mounts: writing fails inside the container.
    assert "readonly /usr/bin/nvidia-smi" in done.stdout
    assert f"readonly /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{kit.spec.driver_version}" in done.stdout
    assert "writable" not in done.stdout
    mount = next(line for line in done.stdout.splitlines() if line.startswith("mount "))
    assert re.search(r" ro,nosuid,nodev[, ]", mount), mount
    sums = gpu_docker.sums(cid)
    assert sums["before"] != sums["after"]
    spec = gpu_docker.spec_runc_ran(cid)
    hooks = spec["hooks"]["createContainer"]
    assert [h["args"][4:6] for h in hooks] == [["hooks", "create-symlinks"]]
    assert hooks[0]["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]


def test_one_gpu_by_index_and_the_device_cgroup(gpu_docker: GpuDocker) -> None:
    probe = CONTAINER_PROBE + (
        "cat /dev/nvidia0 2>&1 | sed 's/^/open0 /'\n"
        "mknod /tmp/other c 195 1 && cat /tmp/other 2>&1 | sed 's/^/open1 /'\n"
    )
    done, _ = gpu_docker.run("0", probe)
    nodes = probe_nodes(done.stdout)
    assert nodes["/dev/nvidia0"] == (195, 0) and "/dev/nvidia1" not in nodes
    assert probe_smi(done.stdout) == _smi_lines(gpu_docker.kit, [0])
    # The cgroup allows the attached GPU (no driver here: ENXIO) and denies the other one even when the
    # container makes its own node for it (EPERM).
    assert "open0 cat: can't open '/dev/nvidia0': No such device or address" in done.stdout
    assert "open1 cat: can't open '/tmp/other': Operation not permitted" in done.stdout


def test_one_gpu_by_uuid(gpu_docker: GpuDocker) -> None:
    done, _ = gpu_docker.run(gpu_docker.kit.spec.gpus[1].uuid)
    nodes = probe_nodes(done.stdout)
    assert nodes["/dev/nvidia1"] == (195, 1) and "/dev/nvidia0" not in nodes
    assert probe_smi(done.stdout) == _smi_lines(gpu_docker.kit, [1])


def test_none_gives_the_driver_without_gpus(gpu_docker: GpuDocker) -> None:
    done, _ = gpu_docker.run("none")
    nodes = probe_nodes(done.stdout)
    assert "/dev/nvidiactl" in nodes
    assert not [n for n in nodes if n[len("/dev/nvidia") :].isdigit()]
    assert probe_smi(done.stdout) == ["No devices were found"]
    assert "readonly /usr/bin/nvidia-smi" in done.stdout


@pytest.mark.parametrize("visible", ["void", None])
def test_void_and_unset_leave_the_spec_byte_identical(gpu_docker: GpuDocker, visible: str | None) -> None:
    done, cid = gpu_docker.run(visible)
    assert probe_nodes(done.stdout) == {}
    assert "nvidia-smi: not found" in done.stdout
    sums = gpu_docker.sums(cid)
    assert sums["before"] == sums["after"]


def test_a_hostile_value_stops_the_container_with_a_clear_message(gpu_docker: GpuDocker) -> None:
    done, cid = gpu_docker.run("../../dev/sda", check=False)
    assert done.returncode == 125
    assert "gpudoctor-runtime: NVIDIA_VISIBLE_DEVICES: '../../dev/sda' is not a GPU index" in done.stderr
    assert "after" not in gpu_docker.sums(cid)  # runc never ran
