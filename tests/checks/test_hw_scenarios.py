"""Every driver/module/device failure mode, end to end: `gpudoctor --check --json --offline --root T`.

Each scenario (tests/scenarios/catalog.py) is built once per session. The same root is checked through a
real process and in-process through run_doctor; both must give the scenario's exact statuses, the evidence
line that names the deciding file and value, and JSON that validates against the shipped schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.doctor import run_doctor
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from gpudoctor.report.model import EXIT_FAILED, EXIT_OK
from tests.scenarios.builder import ALL_HW_CHECKS, Scenario
from tests.scenarios.catalog import by_name, catalog
from tests.scenarios.hosts import BuiltHosts, built_hosts, mismatches, run_gpudoctor, validate_report

SCENARIOS = catalog()

pytestmark = pytest.mark.root  # fake hosts have device nodes (mknod)


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> BuiltHosts:
    return built_hosts(tmp_path_factory)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_offline_report_in_a_process(scenario: Scenario, hosts: BuiltHosts) -> None:
    root = hosts.get(scenario)
    run = run_gpudoctor(["--check", "--json", "--offline"], root=root)
    assert "Traceback" not in run.stderr
    report = run.report
    validate_report(report)
    checks = run.checks()
    assert set(ALL_HW_CHECKS) <= set(checks)
    assert scenario.expected.keys() == set(ALL_HW_CHECKS), "a scenario states every hardware-layer check"
    assert mismatches(checks, expected=scenario.expected, evidence=scenario.evidence,
                      summary=scenario.summary) == []
    failing = any(c["status"] == "fail" for c in checks.values())
    errored = any(c["status"] == "error" for c in checks.values())
    assert not errored
    assert run.returncode == (EXIT_FAILED if failing else EXIT_OK)
    assert report["host"]["offline"] is True


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_offline_report_in_process_matches(scenario: Scenario, hosts: BuiltHosts) -> None:
    root = hosts.get(scenario)
    facts = HostFacts(root=HostRoot(root, offline=True))
    report = run_doctor(facts, options=CheckOptions(offline=True))
    checks = {r.id: r.to_dict() for r in report.checks}
    assert mismatches(checks, expected=scenario.expected, evidence=scenario.evidence,
                      summary=scenario.summary) == []
    validate_report(report.to_dict())
    for cid in ALL_HW_CHECKS:
        res = report.by_id()[cid]
        # Evidence names host paths as the host sees them, never the --root prefix.
        assert not any(str(root) in line for line in res.evidence), (cid, res.evidence)
        # Whatever did not pass says why and what to do.
        if res.status in (Status.FAIL, Status.WARN):
            assert res.remedy, f"{cid} is {res.status} without a remedy"
            assert res.evidence, f"{cid} is {res.status} without evidence"
        if res.status is Status.SKIP:
            assert res.summary, f"{cid} skipped without a reason"


# The fix-up each failure points to (issue 6 ids), where one exists.
FIXES = [
    ("module_not_loaded", "driver.loaded", "load-modules"),
    ("nouveau_owns_gpu", "driver.nouveau", "nouveau-blacklist"),
    ("nouveau_owns_gpu", "driver.loaded", "nouveau-blacklist"),
    ("uvm_not_loaded", "modules.nvidia_uvm", "load-modules"),
    ("uvm_node_missing", "devices.uvm", "device-nodes"),
    ("nvidiactl_missing", "devices.control", "device-nodes"),
    ("gpu_node_missing", "devices.gpus", "device-nodes"),
]


@pytest.mark.parametrize(("name", "check_id", "fix_id"), FIXES)
def test_failures_name_their_fix(name: str, check_id: str, fix_id: str, hosts: BuiltHosts) -> None:
    root = hosts.get(by_name()[name])
    report = run_doctor(HostFacts(root=HostRoot(root, offline=True)), options=CheckOptions(offline=True))
    assert fix_id in report.by_id()[check_id].fixes


@pytest.mark.parametrize(("name", "fixes"), [
    ("module_not_loaded", ("load-modules",)),
    ("nvidia_blacklisted", ("load-modules",)),  # a blacklist stops autoloading, not an explicit modprobe
    ("nouveau_owns_gpu", ("nouveau-blacklist",)),
    ("module_missing_for_kernel", ()),
    ("secure_boot_blocks_module", ()),
])
def test_load_modules_is_offered_only_where_modprobe_can_work(name: str, fixes: tuple[str, ...],
                                                              hosts: BuiltHosts) -> None:
    root = hosts.get(by_name()[name])
    res = run_doctor(HostFacts(root=HostRoot(root, offline=True)), options=CheckOptions(offline=True)).by_id()
    assert res["driver.loaded"].fixes == fixes


def test_secure_boot_does_not_offer_a_plain_modprobe(hosts: BuiltHosts) -> None:
    """With Secure Boot refusing the module, `modprobe` cannot help; the remedy is about signing."""
    root = hosts.get(by_name()["secure_boot_blocks_module"])
    res = run_doctor(HostFacts(root=HostRoot(root, offline=True)), options=CheckOptions(offline=True)).by_id()
    loaded = res["driver.loaded"]
    assert "load-modules" not in loaded.fixes
    assert loaded.remedy is not None and "mokutil" in loaded.remedy
    assert "/sys/kernel/security/lockdown: [integrity]" in loaded.evidence


def test_skips_carry_the_blocking_reason(hosts: BuiltHosts) -> None:
    root = hosts.get(by_name()["module_not_loaded"])
    res = run_doctor(HostFacts(root=HostRoot(root, offline=True)), options=CheckOptions(offline=True)).by_id()
    assert res["modules.nvidia"].summary.startswith("skipped because driver.loaded is fail: the NVIDIA kernel module")
    assert "driver.loaded is fail" in res["devices.control"].summary
    assert res["driver.version_match"].summary.startswith("skipped because driver.loaded is fail")


def test_no_gpu_host_skips_the_entry_points_with_driver_gpus_reason(hosts: BuiltHosts) -> None:
    """driver.loaded/driver.installed have no runner dependency (they also serve WSL2), but still skip."""
    root = hosts.get(by_name()["no_nvidia_gpu"])
    res = run_doctor(HostFacts(root=HostRoot(root, offline=True)), options=CheckOptions(offline=True)).by_id()
    for cid in ("driver.loaded", "driver.installed"):
        assert res[cid].summary == "skipped because driver.gpus is fail: no NVIDIA GPU on the PCI bus"
    # Checks above the driver (the toolkit's) skip through driver.installed.
    assert res["toolkit.installed"].status is Status.SKIP


def test_host_summary_from_proc_offline(hosts: BuiltHosts) -> None:
    sc = by_name()["healthy_2gpu"]
    run = run_gpudoctor(["--check", "--json", "--offline"], root=hosts.get(sc))
    host = run.report["host"]
    assert host["driver_version"] == "550.54.14"
    assert host["kernel"] == "6.5.0-27-generic"
    assert host["wsl"] is False
    assert host["os"]["id"] == "ubuntu"
    assert [(g["index"], g["uuid"], g["minor"], g["pci_bus_id"]) for g in host["gpus"]] == [
        (g.index, g.uuid, g.minor, g.pci_bus_id) for g in sc.gpus
    ]


def test_host_summary_on_wsl2(hosts: BuiltHosts) -> None:
    run = run_gpudoctor(["--check", "--json", "--offline"], root=hosts.get(by_name()["wsl2"]))
    host = run.report["host"]
    assert host["wsl"] is True
    assert host["kernel"] == "5.15.146.1-microsoft-standard-WSL2"
    assert host["driver_version"] is None and host["gpus"] == []


def test_only_a_group_reports_that_group_but_runs_its_dependencies(hosts: BuiltHosts) -> None:
    root: Path = hosts.get(by_name()["uvm_not_loaded"])
    run = run_gpudoctor(["--check", "--json", "--offline", "--only", "devices"], root=root)
    checks = run.checks()
    assert sorted(checks) == ["devices.control", "devices.gpus", "devices.permissions", "devices.uvm"]
    assert checks["devices.uvm"]["summary"].startswith("skipped because modules.nvidia_uvm is fail")
    assert run.returncode == EXIT_OK  # modules.nvidia_uvm failed but was not asked for
