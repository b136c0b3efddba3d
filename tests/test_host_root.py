"""HostRoot resolves host paths inside --root with chroot semantics and records what it read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpudoctor.host.root import HostRoot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("inside\n")
    (root / "etc/alternatives").mkdir(parents=True)
    os.symlink("/usr/bin/tool", root / "etc/alternatives/tool")  # absolute: must stay inside the root
    os.symlink("../../../../../../usr/bin/tool", root / "etc/climb")  # climbs above the root: clamped
    os.symlink("loop2", root / "etc/loop1")
    os.symlink("loop1", root / "etc/loop2")
    return root


def test_absolute_symlink_resolves_inside_root(tree: Path) -> None:
    root = HostRoot(tree)
    assert root.read_text("/etc/alternatives/tool") == "inside\n"
    assert root.resolve("/etc/alternatives/tool") == "/usr/bin/tool"
    assert root.readlink("/etc/alternatives/tool") == "/usr/bin/tool"


def test_dotdot_cannot_climb_out(tree: Path) -> None:
    root = HostRoot(tree)
    assert root.resolve("/etc/climb") == "/usr/bin/tool"
    assert root.resolve("/../../etc/../usr/bin/tool") == "/usr/bin/tool"
    assert root.read_text("/etc/climb") == "inside\n"


def test_symlink_loop_is_an_oserror_not_a_hang(tree: Path) -> None:
    root = HostRoot(tree)
    with pytest.raises(OSError):
        root.read_text("/etc/loop1")
    assert root.try_read_text("/etc/loop1") is None and not root.exists("/etc/loop1")


def test_reads_are_recorded_as_host_paths(tree: Path) -> None:
    root = HostRoot(tree)
    root.try_read_text("/usr/bin/tool")
    root.exists("/etc/missing")
    assert {"/usr/bin/tool", "/etc/missing"} <= root.accessed
    assert not any(p.startswith(str(tree)) for p in root.accessed)


def test_glob_and_listdir_give_host_paths(tree: Path) -> None:
    root = HostRoot(tree)
    assert root.glob("/usr/bin/*") == ["/usr/bin/tool"]
    assert root.listdir("/usr/bin") == ["tool"] and root.listdir("/nope") == []


def test_nul_paths_are_treated_as_missing(tree: Path) -> None:
    root = HostRoot(tree)
    assert root.try_read_text("/etc/\x00passwd") is None
    assert root.stat("/etc/\x00x") is None and root.lstat("/a\x00") is None
    assert root.readlink("/a\x00") is None and not root.exists("/a\x00")
    with pytest.raises(OSError):
        root.read_bytes("/a\x00b")
