"""runtime.cdi: every spec parses and matches this host's driver version, libraries and device nodes."""

from __future__ import annotations

from pathlib import Path

from gpudoctor.checks.base import CheckResult, Status
from tests.scenarios import runtime_fragments as frag
from tests.scenarios.runtime_fragments import build_host, doctor, remove

SPEC = frag.CDI_SPEC
LIB = frag.LIB_DIR


def _cdi(root: Path) -> CheckResult:
    result: CheckResult = doctor(root, "runtime.cdi")["runtime.cdi"]
    return result


def test_fresh_spec_passes(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    res = _cdi(root)
    assert res.status is Status.PASS
    assert f"{SPEC}: nvidia.com/gpu, matches the host" in res.evidence


def test_spec_for_another_driver_version_is_stale(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.cdi_spec(driver_version="535.104.05"))
    res = _cdi(root)
    assert res.status is Status.FAIL
    assert res.summary.startswith(f"CDI spec {SPEC} is stale: it names driver 535.104.05 (host: 550.54.14)")
    assert (f"{SPEC}: names driver 535.104.05; the host has 550.54.14 (/proc/driver/nvidia/version; "
            f"{LIB}/libnvidia-ml.so.550.54.14)") in res.evidence
    assert f"{SPEC}: names {LIB}/libcuda.so.535.104.05, which does not exist on this host" in res.evidence
    assert res.fixes == ("cdi-spec",)
    assert "cdi generate --output=/etc/cdi/nvidia.yaml" in (res.remedy or "")


def test_spec_naming_a_gpu_node_the_host_lacks_is_stale(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.cdi_spec(gpu_minors=(0, 1, 2)))
    res = _cdi(root)
    assert res.status is Status.FAIL
    assert 'failed to stat CDI host device "/dev/nvidia2"' in res.summary
    assert f"{SPEC}: names /dev/nvidia2, which does not exist on this host" in res.evidence


def test_spec_naming_a_missing_library_is_stale(tmp_path: Path) -> None:
    # The spec was generated while libnvidia-encode was installed; that library has been removed since.
    root = build_host(tmp_path, frag.cdi_spec(libs=("libnvidia-ml.so", "libcuda.so", "libnvidia-encode.so")))
    remove(root, f"{LIB}/libnvidia-encode.so.550.54.14")
    res = _cdi(root)
    assert res.status is Status.FAIL
    assert f"{SPEC}: names {LIB}/libnvidia-encode.so.550.54.14, which does not exist on this host" in res.evidence


def test_json_spec_in_var_run_cdi_is_read(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.cdi_spec("/var/run/cdi/nvidia.json", driver_version="535.104.05"))
    remove(root, SPEC)
    res = _cdi(root)
    assert res.status is Status.FAIL
    assert "CDI spec /var/run/cdi/nvidia.json is stale" in res.summary


def test_unparseable_spec_fails_with_position(tmp_path: Path) -> None:
    root = build_host(tmp_path, {SPEC: frag.File("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: [\n")})
    res = _cdi(root)
    assert res.status is Status.FAIL
    assert res.summary.startswith(f"CDI spec {SPEC} does not parse (line ")
    assert res.evidence[0].startswith(f"{SPEC}:4:1: invalid YAML: ")
    assert res.fixes == ("cdi-spec",)


def test_gpu_missing_from_the_spec_warns(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.cdi_spec(gpu_minors=(0,)))
    res = _cdi(root)
    assert res.status is Status.WARN
    assert "/dev/nvidia1" in res.summary
    assert "/dev/nvidia1: present on the host, in no CDI spec" in res.evidence


def test_other_vendor_spec_is_only_parsed(tmp_path: Path) -> None:
    other = {"cdiVersion": "0.5.0", "kind": "vendor.example/fpga",
             "devices": [{"name": "f0", "containerEdits": {"deviceNodes": [{"path": "/dev/fpga0"}]}}]}
    root = build_host(tmp_path, frag.daemon_json_nvidia(), {"/etc/cdi/fpga.json": frag.File(frag.json.dumps(other))})
    res = _cdi(root)
    assert res.status is Status.PASS
    assert "/etc/cdi/fpga.json: kind vendor.example/fpga (not NVIDIA; parsed fine)" in res.evidence


def test_no_specs_skips_unless_cdi_is_in_use(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.daemon_json_nvidia(cdi=False), frag.containerd_config(version=2))
    remove(root, SPEC)
    res = _cdi(root)
    assert res.status is Status.SKIP
    assert "no CDI specs in /etc/cdi or /var/run/cdi" in res.summary

    frag.write_tree(root, frag.daemon_json_nvidia(cdi=True))
    res = _cdi(root)
    assert res.status is Status.WARN
    assert "unresolvable CDI devices nvidia.com/gpu=all" in res.summary
    assert f"{frag.DAEMON_JSON}: features.cdi = true" in res.evidence
    assert res.fixes == ("cdi-spec",)


def test_spec_matching_the_libraries_on_a_half_upgraded_host_is_not_stale(tmp_path: Path) -> None:
    # Kernel module 550.90.07 still loaded, libraries already 550.54.14: driver.version_match reports the
    # mismatch; the spec matches the libraries on disk, so regenerating it would change nothing.
    root = build_host(tmp_path, frag.driver_version_file("550.90.07"))
    res = _cdi(root)
    assert res.status is Status.PASS
    assert (f"host driver: 550.90.07 (/proc/driver/nvidia/version) and libraries 550.54.14 "
            f"({LIB}/libnvidia-ml.so.550.54.14)") in res.evidence


def test_missing_node_the_driver_should_have_is_a_device_problem_not_a_stale_spec(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, "/dev/nvidia-uvm", "/dev/nvidia1")
    res = _cdi(root)
    assert res.status is Status.WARN
    assert "the spec is right, the device node is not" in res.summary
    assert f"{SPEC}: names /dev/nvidia-uvm; /dev/nvidia-uvm is missing on this host" in res.evidence
    assert f"{SPEC}: names /dev/nvidia1; /dev/nvidia1 is missing on this host" in res.evidence
    assert res.fixes == ("device-nodes",)


def test_driver_not_loaded_blocks_the_cdi_check(tmp_path: Path) -> None:
    root = build_host(tmp_path)
    remove(root, "/proc/driver/nvidia/version")
    res = _cdi(root)
    assert res.status is Status.SKIP
    assert res.summary.startswith("skipped because driver.loaded is fail")


def test_two_specs_in_one_dir_defining_the_same_devices_conflict(tmp_path: Path) -> None:
    root = build_host(tmp_path, frag.cdi_spec("/etc/cdi/nvidia-old.json"))
    res = _cdi(root)
    assert res.status is Status.FAIL
    assert res.summary.startswith("/etc/cdi/nvidia-old.json and /etc/cdi/nvidia.yaml both define nvidia.com/gpu=")
    assert "CDI refuses conflicting devices" in res.summary
    assert any(e.startswith("/etc/cdi/nvidia-old.json: defines nvidia.com/gpu=") for e in res.evidence)
