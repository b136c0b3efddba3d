"""Snapshot a fake host, replay the bundle, get the same report (ids, statuses, summaries, evidence, remedies,
fixes and the host header; never durations).

Every scenario of the catalog is snapshotted offline; the live scenarios also live, with the simulated
driver's NVML answering (GPUDOCTOR_FAKE_DEV_ROOT), and replayed without it: the recorded probe stands in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.doctor import run_doctor
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from gpudoctor.report.model import Report
from gpudoctor.snapshot.collect import collect_snapshot
from gpudoctor.snapshot.replay import open_snapshot
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.builder import build_host, fake_dev_env, healthy_host
from tests.scenarios.catalog import LIVE_SCENARIOS, by_name, catalog
from tests.scenarios.hosts import (
    REPO_ROOT,
    BuiltHosts,
    built_hosts,
    mismatches,
    require_root,
    validate_report,
)
from tests.snapshot.helpers import bundle_bytes, bundle_members, differences, findings, manifest_of

pytestmark = pytest.mark.root


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> BuiltHosts:
    return built_hosts(tmp_path_factory)


def _replay(archive: Path) -> Report:
    with open_snapshot(str(archive)) as facts:
        return run_doctor(facts, options=CheckOptions(offline=facts.offline))


def _plain_run(root: Path, *, offline: bool) -> Report:
    return run_doctor(HostFacts(root=HostRoot(root, offline=offline)), options=CheckOptions(offline=offline))


@pytest.mark.parametrize("name", [s.name for s in catalog()])
def test_offline_snapshot_replays_the_same_report(name: str, hosts: BuiltHosts, tmp_path: Path) -> None:
    scenario = by_name()[name]
    root = hosts.get(scenario)
    result = collect_snapshot(tmp_path / f"{name}.tar.gz", root=str(root), offline=True)
    # Recording what the checks read must not change what they find.
    assert differences(_plain_run(root, offline=True).to_dict(), result.report.to_dict()) == []
    replay = _replay(result.path)
    assert differences(result.report.to_dict(), replay.to_dict()) == []
    checks = {c["id"]: c for c in replay.to_dict()["checks"]}
    assert mismatches(checks, expected=scenario.expected, evidence=scenario.evidence, summary=scenario.summary) == []
    assert replay.host["root"] == str(result.path)
    assert replay.host["offline"] is True
    validate_report(replay.to_dict())


@pytest.mark.parametrize("name", LIVE_SCENARIOS)
def test_live_snapshot_replays_the_recorded_nvml(name: str, hosts: BuiltHosts, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = by_name()[name]
    root = hosts.get(scenario)
    for key, value in fake_dev_env(root).items():
        monkeypatch.setenv(key, value)
    result = collect_snapshot(tmp_path / f"{name}.tar.gz", root=str(root), offline=False)
    live = _plain_run(root, offline=False)
    monkeypatch.delenv("GPUDOCTOR_FAKE_DEV_ROOT")
    # Without the fake /dev, a live NVML would now say something else: what replays is the recording.
    assert "probes/nvml.json" in bundle_members(result.path)
    replay = _replay(result.path)
    assert differences(live.to_dict(), replay.to_dict()) == []
    assert differences(result.report.to_dict(), replay.to_dict()) == []
    checks = {c["id"]: c for c in replay.to_dict()["checks"]}
    assert mismatches(checks, expected=scenario.live_expected, evidence=scenario.live_evidence) == []
    assert replay.host["offline"] is False  # the run it replays was live


def test_live_healthy_replay_names_the_gpus_nvml_saw(hosts: BuiltHosts, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = hosts.get(by_name()["healthy_2gpu"])
    for key, value in fake_dev_env(root).items():
        monkeypatch.setenv(key, value)
    result = collect_snapshot(tmp_path / "h.tar.gz", root=str(root))
    monkeypatch.delenv("GPUDOCTOR_FAKE_DEV_ROOT")
    replay = _replay(result.path)
    assert replay.host["driver_version"] == "550.54.14"
    assert [g["uuid"] for g in replay.host["gpus"]] == [g.uuid for g in by_name()["healthy_2gpu"].gpus]
    gpus = replay.by_id()["driver.gpus"]
    assert gpus.summary == "2 NVIDIA GPUs on the PCI bus, bound to nvidia; NVML sees all 2"
    recorded = json.loads(bundle_bytes(result.path)["probes/nvml.json"])
    assert recorded["status"] == "ok"


RUNTIME_VARIANTS = {
    "daemon_json_invalid": frag.daemon_json_invalid,
    "daemon_json_missing_runtime_binary": frag.daemon_json_missing_runtime_binary,
    "containerd_v3_with_dropin": frag.containerd_v3_with_dropin,
    "k3s_without_nvidia": lambda: frag.k3s_containerd(nvidia=False),
    "rpm_toolkit_with_debian_ldconfig": frag.rpm_toolkit_with_debian_ldconfig,
    "cgroup_v1_mountinfo": lambda: frag.mountinfo("v1"),
}


@pytest.mark.parametrize("variant", sorted(RUNTIME_VARIANTS))
def test_runtime_layer_findings_replay(variant: str, tmp_path: Path) -> None:
    require_root()
    root = frag.build_host(tmp_path / "host", RUNTIME_VARIANTS[variant]())
    result = collect_snapshot(tmp_path / "rt.tar.gz", root=str(root), offline=True)
    assert differences(_plain_run(root, offline=True).to_dict(), result.report.to_dict()) == []
    assert differences(result.report.to_dict(), _replay(result.path).to_dict()) == []


# -- what a replay sees ------------------------------------------------------------------------------------


def test_device_nodes_are_metadata_and_stat_as_devices(hosts: BuiltHosts, tmp_path: Path) -> None:
    result = collect_snapshot(tmp_path / "d.tar.gz", root=str(hosts.get(by_name()["device_permissions"])),
                              offline=True)
    members = bundle_members(result.path)
    assert not any(m.ischr() or m.isblk() or m.isfifo() for m in members.values())
    assert members["root/dev/nvidia0"].isreg() and members["root/dev/nvidia0"].size == 0
    entry = next(m for m in manifest_of(result.path)["members"] if m["name"] == "root/dev/nvidia0")
    assert (entry["host"]["type"], entry["host"]["major"], entry["host"]["minor"]) == ("char", 195, 0)
    with open_snapshot(str(result.path)) as facts:
        st = facts.root.stat("/dev/nvidia0")
        assert st is not None and st.st_mode & 0o170000 == 0o020000
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (195, 0)
        assert st.st_mode & 0o777 == entry["host"]["mode"]
        assert facts.root.is_char_device("/dev/nvidia0")
        assert not facts.root.is_file("/dev/nvidia0")
        # On disk it is only an empty placeholder, private to the replay.
        assert facts.root.path("/dev/nvidia0").stat().st_mode & 0o777 == 0o600


def test_times_owners_and_link_targets_are_the_hosts(hosts: BuiltHosts, tmp_path: Path) -> None:
    root = hosts.get(by_name()["healthy_2gpu"])
    result = collect_snapshot(tmp_path / "t.tar.gz", root=str(root), offline=True)
    lib = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    live = HostRoot(root)
    with open_snapshot(str(result.path)) as facts:
        for path in ("/etc/docker/daemon.json", lib, "/proc/driver/nvidia/version"):
            want, got = live.stat(path), facts.root.stat(path)
            assert want is not None and got is not None
            assert (got.st_mode, got.st_uid, got.st_gid, got.st_size, got.st_mtime, got.st_ctime) == (
                want.st_mode, want.st_uid, want.st_gid, want.st_size, want.st_mtime, want.st_ctime), path
        assert facts.root.readlink(lib) == live.readlink(lib)
        assert facts.root.resolve(lib) == live.resolve(lib)


def test_absent_paths_stay_absent_and_are_listed(hosts: BuiltHosts, tmp_path: Path) -> None:
    result = collect_snapshot(tmp_path / "a.tar.gz", root=str(hosts.get(by_name()["no_nvidia_gpu"])), offline=True)
    manifest = manifest_of(result.path)
    assert "/proc/driver/nvidia/version" in manifest["absent"]
    with open_snapshot(str(result.path)) as facts:
        assert not facts.root.exists("/proc/driver/nvidia/version")
        assert facts.root.stat("/proc/driver/nvidia/version") is None


def test_contents_are_what_the_checks_read(hosts: BuiltHosts, tmp_path: Path) -> None:
    """Files the checks read are stored whole; files they only looked at are metadata placeholders."""
    root = hosts.get(by_name()["healthy_2gpu"])
    result = collect_snapshot(tmp_path / "c.tar.gz", root=str(root), offline=True)
    data = bundle_bytes(result.path)
    assert data["root/etc/os-release"] == (root / "etc/os-release").read_bytes()
    assert data["root/proc/driver/nvidia/version"] == (root / "proc/driver/nvidia/version").read_bytes()
    entries = {m["name"]: m for m in manifest_of(result.path)["members"]}
    dockerd = entries["root/usr/bin/dockerd"]
    assert data["root/usr/bin/dockerd"] == b"" and dockerd["host"]["content"] == "none"
    assert dockerd["host"]["size"] == (root / "usr/bin/dockerd").stat().st_size
    with open_snapshot(str(result.path)) as facts:
        with pytest.raises(OSError, match="not in the snapshot"):
            facts.root.read_bytes("/usr/bin/dockerd")
        assert facts.root.is_file("/usr/bin/dockerd")


def test_a_probe_the_snapshot_lacks_is_never_run_live(hosts: BuiltHosts, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip probes/nvml.json from a live bundle: the NVML checks skip and say why; nothing loads NVML here."""
    root = hosts.get(by_name()["healthy_2gpu"])
    for key, value in fake_dev_env(root).items():
        monkeypatch.setenv(key, value)
    result = collect_snapshot(tmp_path / "p.tar.gz", root=str(root))
    stripped = tmp_path / "stripped.tar.gz"
    with tarfile.open(result.path) as src, tarfile.open(stripped, "w:gz") as dst:
        for member in src.getmembers():
            if member.name == "probes/nvml.json":
                continue
            if member.name == "manifest.json":
                manifest = json.loads(src.extractfile(member).read())  # type: ignore[union-attr]
                manifest["members"] = [m for m in manifest["members"] if m["name"] != "probes/nvml.json"]
                body = json.dumps(manifest).encode()
                member.size = len(body)
                import io

                dst.addfile(member, io.BytesIO(body))
                continue
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    import gpudoctor.host.nvml as nvml

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("a replay ran the live NVML probe")

    monkeypatch.setattr(nvml, "probe_nvml", boom)
    report = _replay(stripped).by_id()
    loaded = report["driver.loaded"]
    assert loaded.status is Status.SKIP
    assert "the snapshot has no recorded 'nvml' probe, and a replay never probes live" in loaded.summary


# -- the same findings on another machine ------------------------------------------------------------------


def test_bundle_replays_elsewhere_after_the_host_is_gone(tmp_path: Path) -> None:
    """Snapshot live through the CLI, delete the host, move the bundle, replay from another cwd and TMPDIR."""
    require_root()
    root = build_host(tmp_path / "hosts", healthy_host(2, name="moving"))
    env = {**os.environ, **fake_dev_env(root)}
    env.pop("DOCKER_HOST", None)
    made = subprocess.run([sys.executable, "-m", "gpudoctor", "snapshot", "-o", str(tmp_path / "bundle.tar.gz"),
                           "--root", str(root)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert f"wrote {tmp_path / 'bundle.tar.gz'}" in made.stdout
    live = subprocess.run([sys.executable, "-m", "gpudoctor", "--check", "--json", "--root", str(root)], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    shutil.rmtree(tmp_path / "hosts")

    elsewhere = tmp_path / "laptop"
    (elsewhere / "tmp").mkdir(parents=True)
    shutil.copy2(tmp_path / "bundle.tar.gz", elsewhere / "from-user.tgz")
    (tmp_path / "bundle.tar.gz").unlink()
    other_env = {k: v for k, v in os.environ.items() if k not in ("GPUDOCTOR_FAKE_DEV_ROOT", "DOCKER_HOST")}
    other_env.update(TMPDIR=str(elsewhere / "tmp"), PYTHONPATH=str(REPO_ROOT))
    replay = subprocess.run([sys.executable, "-m", "gpudoctor", "--check", "--json", "--root", "from-user.tgz"],
                            env=other_env, cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert replay.returncode == live.returncode, replay.stderr
    live_report, replay_report = json.loads(live.stdout), json.loads(replay.stdout)
    assert differences(live_report, replay_report) == []
    assert replay_report["host"]["root"] == str(elsewhere / "from-user.tgz")
    assert findings(replay_report)[0][1] == "pass"
    # The private extraction directory is gone.
    assert list((elsewhere / "tmp").iterdir()) == []


def test_snapshot_of_this_machine_replays(tmp_path: Path) -> None:
    """The live root `/` (no GPU here): /proc and /sys contents are stored as read, and replay the same."""
    result = collect_snapshot(tmp_path / "self.tar.gz", root="/", offline=False)
    replay = _replay(result.path)
    # Every check, the live daemon ones included: their endpoint and process lookups are recorded probes.
    assert differences(result.report.to_dict(), replay.to_dict()) == []
    data = bundle_bytes(result.path)
    assert data["root/proc/version"] == Path("/proc/version").read_bytes()
    entry = next(m for m in manifest_of(result.path)["members"] if m["name"] == "root/proc/version")
    assert entry["source"] == {"path": "/proc/version", "read": "contents as the checks read them (virtual file)"}
    assert entry["host"]["content"] == "full"
