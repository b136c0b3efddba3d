"""Live runs (no --offline) against fake roots whose libnvidia-ml is the kit's compiled fake NVML.

gpudoctor loads NVML from the root's own driver libraries in a child process, exactly as on a real host;
the fake library finds the scenario's device nodes through GPUDOCTOR_FAKE_DEV_ROOT. The NVML errors it
returns (DriverNotLoaded, LibRmVersionMismatch, NoPermission, a hang, a crash) must become the findings
issue 3 names, and a healthy host's GPUs must appear in the report with their UUIDs and driver version.
"""

from __future__ import annotations

import pytest

from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.doctor import run_doctor
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from gpudoctor.report.model import EXIT_ERROR
from tests.kit import DEFAULT_GPUS, KitSpec
from tests.scenarios.builder import Scenario, build_host, fake_dev_env, healthy_host
from tests.scenarios.catalog import LIVE_SCENARIOS, by_name
from tests.scenarios.hosts import (
    BuiltHosts,
    built_hosts,
    mismatches,
    require_root,
    run_gpudoctor,
    validate_report,
)

pytestmark = pytest.mark.root  # fake hosts have device nodes (mknod)


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> BuiltHosts:
    return built_hosts(tmp_path_factory)


@pytest.mark.parametrize("name", LIVE_SCENARIOS)
def test_live_findings(name: str, hosts: BuiltHosts) -> None:
    scenario = by_name()[name]
    assert scenario.live_expected, f"{name} is run live but states no live expectations"
    run = run_gpudoctor(["--check", "--json"], root=hosts.get(scenario), live=True)
    assert "Traceback" not in run.stderr
    validate_report(run.report)
    assert run.report["host"]["offline"] is False
    assert mismatches(run.checks(), expected=scenario.live_expected, evidence=scenario.live_evidence) == []


def test_live_healthy_host_reports_nvml_gpus(hosts: BuiltHosts) -> None:
    run = run_gpudoctor(["--check", "--json"], root=hosts.get(by_name()["healthy_2gpu"]), live=True)
    host = run.report["host"]
    assert host["driver_version"] == "550.54.14"
    assert [(g["index"], g["uuid"], g["name"], g["minor"], g["pci_bus_id"]) for g in host["gpus"]] == [
        (g.index, g.uuid, g.name, g.minor, g.pci_bus_id) for g in DEFAULT_GPUS
    ]
    checks = run.checks()
    assert checks["driver.gpus"]["summary"] == "2 NVIDIA GPUs on the PCI bus, bound to nvidia; NVML sees all 2"
    assert run.returncode == 0


def test_live_gpu_missing_from_nvml_is_named(hosts: BuiltHosts) -> None:
    run = run_gpudoctor(["--check", "--json"], root=hosts.get(by_name()["gpu_missing_from_nvml"]), live=True)
    gpus = run.checks()["driver.gpus"]
    assert "NVML does not see GPU 0000:86:00.0" in gpus["summary"]
    assert "/sys/bus/pci/devices/0000:86:00.0: NVIDIA 0x10de:0x2330 class 0x030200, driver nvidia" in gpus["evidence"]
    assert [g["uuid"] for g in run.report["host"]["gpus"]] == [DEFAULT_GPUS[0].uuid]


def test_live_driver_not_loaded_points_at_nvidiactl(hosts: BuiltHosts) -> None:
    run = run_gpudoctor(["--check", "--json"], root=hosts.get(by_name()["nvidiactl_missing"]), live=True)
    loaded = run.checks()["driver.loaded"]
    assert "NVML reports DriverNotLoaded because /dev/nvidiactl is missing" in loaded["summary"]
    assert "device-nodes" in loaded["fixes"]
    # NVML did not answer, so the header falls back to the kernel module's view.
    assert run.report["host"]["driver_version"] == "550.54.14"
    assert len(run.report["host"]["gpus"]) == 2


def test_live_version_mismatch_names_both_sides(hosts: BuiltHosts) -> None:
    run = run_gpudoctor(["--check", "--json"], root=hosts.get(by_name()["version_mismatch"]), live=True)
    vm = run.checks()["driver.version_match"]
    assert vm["status"] == "fail"
    assert "kernel module 550.54.14, libnvidia-ml.so.1 550.90.07" in vm["summary"]
    assert any("Driver/library version mismatch" in line or "lib_rm_version_mismatch" in line
               for line in vm["evidence"])


def test_recorded_probe_replays_the_live_findings(hosts: BuiltHosts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot's recorded NVML result stands in for the live probe: same findings, offline."""
    root = hosts.get(by_name()["version_mismatch"])
    for key, value in fake_dev_env(root).items():
        monkeypatch.setenv(key, value)
    live_facts = HostFacts(root=HostRoot(root))
    live = run_doctor(live_facts, options=CheckOptions()).by_id()
    recorded = live_facts.probe_log["nvml"]
    assert recorded["status"] == "lib_rm_version_mismatch"
    monkeypatch.delenv("GPUDOCTOR_FAKE_DEV_ROOT")
    replay_facts = HostFacts(root=HostRoot(root, offline=True), recorded_probes={"nvml": recorded})
    replay = run_doctor(replay_facts, options=CheckOptions(offline=True)).by_id()
    for cid in ("driver.loaded", "driver.version_match", "driver.gpus", "devices.permissions"):
        assert (replay[cid].status, replay[cid].summary) == (live[cid].status, live[cid].summary)


def test_damaged_recorded_probe_is_a_finding_not_a_crash(hosts: BuiltHosts) -> None:
    root = hosts.get(by_name()["healthy_2gpu"])
    facts = HostFacts(root=HostRoot(root, offline=True), recorded_probes={"nvml": {"status": "exploded"}})
    res = run_doctor(facts, options=CheckOptions(offline=True)).by_id()
    assert res["driver.loaded"].status is Status.FAIL
    assert "recorded NVML probe is damaged" in res["driver.loaded"].summary


def _broken_nvml(name: str, **switch: bool) -> Scenario:
    return healthy_host(2, name=name).with_driver(KitSpec(driver_version="550.54.14", gpus=DEFAULT_GPUS, **switch))


@pytest.mark.parametrize(("name", "switch", "text"), [
    ("nvml_hangs", {"hang_on_init": True}, "NVML did not answer in time"),
    ("nvml_crashes", {"crash_on_init": True}, "NVML crashed the process that loaded it"),
])
def test_hanging_or_crashing_nvml_is_an_error_result(name: str, switch: dict[str, bool], text: str,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    require_root()
    root = build_host(tmp_path_factory.mktemp(name), _broken_nvml(name, **switch))
    run = run_gpudoctor(["--check", "--json", "--timeout", "2"], root=root, live=True)
    validate_report(run.report)
    checks = run.checks()
    vm = checks["driver.version_match"]
    assert vm["status"] == "error"
    assert vm["summary"].startswith(text)
    assert vm["remedy"]
    # Only one check carries it; the file-based checks still ran and passed.
    assert [cid for cid, c in checks.items() if c["status"] == "error"] == ["driver.version_match"]
    for cid in ("driver.loaded", "modules.nvidia", "devices.control", "devices.gpus", "devices.uvm"):
        assert checks[cid]["status"] == "pass", (cid, checks[cid]["summary"])
    assert run.returncode == EXIT_ERROR
