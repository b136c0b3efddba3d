"""`gpudoctor snapshot`: options, exit codes, the bundle's layout and manifest, and the replay hooks in the core
(HostRoot.label, HostFacts.replay, the runner's handling of a probe that was not recorded)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckContext, CheckOptions, CheckSpec, Finding, Status
from gpudoctor.checks.runner import run_one
from gpudoctor.commands.snapshot import main
from gpudoctor.host.facts import HostFacts, ProbeNotRecorded
from gpudoctor.host.root import HostRoot
from gpudoctor.snapshot.collect import inside_target
from gpudoctor.snapshot.manifest import FORMAT
from gpudoctor.snapshot.recording import RecordingRoot
from gpudoctor.snapshot.replay import open_snapshot
from gpudoctor.snapshot.safety import check_link
from tests.scenarios.catalog import by_name
from tests.scenarios.hosts import BuiltHosts, built_hosts, run_gpudoctor
from tests.snapshot.helpers import bundle_bytes, bundle_members, manifest_of

pytestmark = pytest.mark.root


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> BuiltHosts:
    return built_hosts(tmp_path_factory)


@pytest.fixture(scope="module")
def healthy_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = built_hosts(tmp_path_factory).get(by_name()["healthy_2gpu"])
    archive = tmp_path_factory.mktemp("bundle") / "healthy.tar.gz"
    assert main(["-o", str(archive), "--root", str(root), "--offline"]) == 0
    return root, archive


# -- the command -------------------------------------------------------------------------------------------


def test_snapshot_prints_where_it_wrote_and_how_to_replay(hosts: BuiltHosts, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = hosts.get(by_name()["uvm_node_missing"])
    archive = tmp_path / "uvm.tgz"
    assert main(["-o", str(archive), "--root", str(root), "--offline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {archive} (")
    assert "the checks found 1 fail" in out
    assert "note: nvidia-smi -q: not run (--offline)" in out
    assert out.rstrip().endswith(f"replay it with: gpudoctor --check --root {archive}")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["uvm.tgz"]  # no temporary file left behind


def test_exit_code_is_0_even_when_checks_fail_and_replay_keeps_the_checks_exit_code(
        hosts: BuiltHosts, tmp_path: Path) -> None:
    root = hosts.get(by_name()["nvidiactl_missing"])
    made = run_gpudoctor(["snapshot", "-o", str(tmp_path / "b.tar"), "--offline"], root=root)
    assert made.returncode == 0, made.stderr
    replay = run_gpudoctor(["--check", "--json", "--root", str(tmp_path / "b.tar")])
    assert replay.returncode == 1
    checks = replay.checks()
    assert checks["devices.control"]["status"] == "fail"
    assert "/dev/nvidiactl is missing" in checks["devices.control"]["summary"]


def test_default_output_name_is_in_the_current_directory(hosts: BuiltHosts, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--root", str(hosts.get(by_name()["healthy_2gpu"])), "--offline"]) == 0
    made = list(tmp_path.iterdir())
    assert len(made) == 1 and made[0].name.startswith("gpudoctor-snapshot-") and made[0].name.endswith(".tar.gz")
    with open_snapshot(str(made[0])) as facts:
        assert facts.root.exists("/proc/driver/nvidia/version")


@pytest.mark.parametrize(("args", "text"), [
    (["-o", "{tmp}/bundle.zip"], "must end in .tar.gz, .tgz or .tar"),
    (["-o", "{tmp}/missing/bundle.tar.gz"], "no such directory for the bundle"),
    (["-o", "{tmp}"], "is a directory"),
    (["-o", "{tmp}/b.tar.gz", "--root", "{tmp}/nowhere"], "not a directory"),
    (["-o", "{tmp}/b.tar.gz", "--root", "{tmp}/old.tar.gz"], "is a snapshot archive already"),
    (["-o", "{tmp}/b.tar.gz", "--timeout", "0"], "--timeout must be positive"),
])
def test_usage_errors_exit_2_with_the_reason(args: list[str], text: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.tar.gz").write_bytes(b"")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpudoctor snapshot: ") and text in err
    assert not (tmp_path / "b.tar.gz").exists()


def test_unwritable_directory_exits_3(hosts: BuiltHosts, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*_a: object, **_k: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["-o", str(tmp_path / "b.tar.gz"), "--root", str(hosts.get(by_name()["healthy_2gpu"])),
                 "--offline"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"gpudoctor snapshot: cannot write {tmp_path / 'b.tar.gz'}: Permission denied")


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("-o FILE.tar.gz", "--root DIR", "--offline", "--docker-host URL", "--image IMAGE"):
        assert option in out


# -- the bundle ----------------------------------------------------------------------------------------------


def test_manifest_lists_every_member_with_sha256_and_source(healthy_bundle: tuple[Path, Path]) -> None:
    _root, archive = healthy_bundle
    manifest = manifest_of(archive)
    data = bundle_bytes(archive)
    members = bundle_members(archive)
    assert manifest["format"] == FORMAT
    assert manifest["source"]["offline"] is True
    listed = {m["name"]: m for m in manifest["members"]}
    assert set(listed) == set(members) - {"manifest.json"}
    assert list(members)[-1] == "manifest.json"
    for name, entry in listed.items():
        assert entry["source"], name
        if entry["type"] == "file":
            assert entry["sha256"] == hashlib.sha256(data[name]).hexdigest(), name
        if name.startswith("root/"):
            assert entry["source"]["path"] == name[len("root"):]
            assert entry["host"]["type"] in ("file", "dir", "symlink", "char", "block", "fifo", "socket")
    assert listed["report.json"]["source"] == {"command": ["gpudoctor", "--check", "--json"]}
    report = json.loads(data["report.json"])
    assert report["schema"] == "gpudoctor.report/1"


def test_members_are_owned_by_nobody_in_particular(healthy_bundle: tuple[Path, Path]) -> None:
    _root, archive = healthy_bundle
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.isreg() or m.isdir() or m.issym()
            assert not m.name.startswith("/") and ".." not in m.name.split("/")


def test_symlinks_are_stored_inside_the_bundle(healthy_bundle: tuple[Path, Path]) -> None:
    root, archive = healthy_bundle
    links = {n: m for n, m in bundle_members(archive).items() if m.issym()}
    pci = "root/sys/bus/pci/devices/0000:3b:00.0"
    assert links[pci].linkname == "../../../devices/pci0000:00/0000:3b:00.0"
    for name, member in links.items():
        check_link(name.split("/"), member.linkname)  # every stored target stays inside root/
    entries = {m["name"]: m for m in manifest_of(archive)["members"]}
    assert entries[pci]["host"]["target"] == os.readlink(root / "sys/bus/pci/devices/0000:3b:00.0")


@pytest.mark.parametrize(("link", "target", "stored"), [
    ("/etc/alternatives/x", "/usr/bin/x", "../../usr/bin/x"),
    ("/usr/lib/libcuda.so.1", "libcuda.so.550", "libcuda.so.550"),
    ("/a/l", "../../../b", "../b"),
    ("/x", "/", "."),
    ("/sys/bus/pci/devices/a", "../../../devices/pci/a", "../../../devices/pci/a"),
])
def test_link_targets_are_rewritten_to_stay_inside(link: str, target: str, stored: str) -> None:
    assert inside_target(link, target) == stored
    check_link(["root", *link.strip("/").split("/")], stored)


# -- the core hooks ----------------------------------------------------------------------------------------


def test_host_root_label_is_the_directory(tmp_path: Path) -> None:
    assert HostRoot(tmp_path).label == str(tmp_path)
    assert HostRoot("/").label == "/"


def test_replay_facts_never_run_a_live_probe(tmp_path: Path) -> None:
    facts = HostFacts(root=HostRoot(tmp_path, offline=True), recorded_probes={"a": {"v": 1}}, replay=True)

    def live() -> int:
        raise AssertionError("ran live")

    assert facts.probe("a", live, encode=lambda v: v, decode=lambda d: d["v"]) == 1
    with pytest.raises(ProbeNotRecorded, match="no recorded 'b' probe"):
        facts.probe("b", live, encode=lambda v: v, decode=lambda d: d)
    assert facts.fresh().replay is True
    plain = HostFacts(root=HostRoot(tmp_path))
    assert plain.probe("b", lambda: 7, encode=lambda v: v, decode=lambda d: d) == 7
    assert plain.probe_log == {"b": 7}


def test_runner_turns_a_missing_recording_into_a_skip(tmp_path: Path) -> None:
    facts = HostFacts(root=HostRoot(tmp_path, offline=True), replay=True)

    def needs_probe(ctx: CheckContext) -> Finding:
        ctx.host.probe("docker", lambda: 1, encode=lambda v: v, decode=lambda d: d)
        return Finding(status=Status.PASS, summary="ran")

    spec = CheckSpec(id="x.y", title="x", func=needs_probe, depends_on=(), layer="runtime", live=True)
    res = run_one(spec, CheckContext(host=facts, options=CheckOptions(), results={}), {})
    assert res.status is Status.SKIP
    assert res.summary == "needs a live probe: the snapshot has no recorded 'docker' probe, and a replay never probes live"


def test_recording_root_keeps_reads_listings_and_errors(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "a.conf").write_text("one\ntwo\n")
    root = RecordingRoot(tmp_path)
    assert root.read_text("/etc/a.conf", max_bytes=3) == "one"
    assert root.read_text("/etc/a.conf") == "one\ntwo\n"
    assert root.read_text("/etc/a.conf", max_bytes=2) == "on"
    assert root.reads() == {"/etc/a.conf": b"one\ntwo\n"}  # the longest read is kept
    assert root.listdir("/etc") == ["a.conf"]
    assert root.is_file("/etc/missing.conf") is False
    assert root.glob("/etc/*.conf") == ["/etc/a.conf"]
    with pytest.raises(IsADirectoryError):
        root.read_bytes("/etc")
    with pytest.raises(FileNotFoundError):
        root.read_bytes("/etc/nope")
    assert root.listed() == frozenset({"/etc"})
    assert set(root.read_errors()) == {"/etc"}  # a missing file is absent, not an error
    assert {"/etc/a.conf", "/etc/missing.conf", "/etc", "/etc/nope"} <= root.accessed


def test_fix_is_refused_on_a_snapshot(healthy_bundle: tuple[Path, Path]) -> None:
    """A replay is another machine's copy: a fix's commands would run here, so --fix is a usage error."""
    _root, archive = healthy_bundle
    run = run_gpudoctor(["--check", "--fix", "--yes", "--root", str(archive)])
    assert run.returncode == 2
    assert f"gpudoctor: --fix cannot be used with a snapshot ({archive})" in run.stderr
    assert run.stdout == ""
