"""The inventory cache: reused while the driver is unchanged, redone when it changes, ignored when untrusted."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from gpudoctor.engine import cache
from gpudoctor.engine.cache import cache_path, fingerprint, load_inventory, read_cached
from gpudoctor.engine.inventory import Inventory
from tests.kit.driver_root import DriverRootInfo

MakeKit = Callable[..., DriverRootInfo]


@pytest.fixture
def counted_discover(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts real discoveries (cache misses)."""
    from gpudoctor.engine import inventory

    calls: list[str] = []
    real = inventory.discover

    def counting(driver_root: str = "/", dev_root: str | None = None) -> Inventory:
        calls.append(driver_root)
        return real(driver_root, dev_root)

    monkeypatch.setattr(inventory, "discover", counting)
    return calls


def _load(info: DriverRootInfo, cache_dir: Path) -> Inventory:
    return load_inventory(str(info.root), str(info.root), str(cache_dir))


def test_second_load_comes_from_the_cache(
    make_kit: MakeKit, tmp_path: Path, counted_discover: list[str]
) -> None:
    info = make_kit()
    first = _load(info, tmp_path / "cache")
    second = _load(info, tmp_path / "cache")
    assert first == second and len(counted_discover) == 1
    file = Path(cache_path(str(tmp_path / "cache"), str(info.root), str(info.root)))
    assert stat.S_IMODE(file.stat().st_mode) == 0o644
    assert json.loads(file.read_text())["inventory"]["driver_version"] == info.spec.driver_version


@pytest.mark.parametrize(
    "change",
    [
        "driver upgrade",
        "module reload with a new uvm major",
        "gpu node removed",
        "ldconfig run",
    ],
)
def test_a_driver_change_invalidates_the_cache(
    make_kit: MakeKit, tmp_path: Path, counted_discover: list[str], change: str
) -> None:
    info = make_kit()
    root = info.root
    before = _load(info, tmp_path / "cache")
    if change == "driver upgrade":
        version = root / "proc/driver/nvidia/version"
        version.write_text(version.read_text().replace(info.spec.driver_version, "555.42.02"))
    elif change == "module reload with a new uvm major":
        devices = root / "proc/devices"
        devices.write_text(devices.read_text().replace("508 nvidia-uvm", "507 nvidia-uvm"))
    elif change == "gpu node removed":
        (root / "dev/nvidia1").unlink()
    else:
        cache_file = root / "etc/ld.so.cache"
        data = cache_file.read_bytes()
        cache_file.unlink()
        cache_file.write_bytes(data)
    after = _load(info, tmp_path / "cache")
    assert len(counted_discover) == 2
    if change == "gpu node removed":
        assert len(after.gpus) == len(before.gpus) - 1
    if change == "module reload with a new uvm major":
        assert after.node("nvidia-uvm") is None  # the node on disk still has 508: stale, refused


def test_an_untrusted_cache_dir_is_neither_read_nor_written(
    make_kit: MakeKit, tmp_path: Path, counted_discover: list[str]
) -> None:
    info = make_kit()
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant an inventory that mounts /etc/shadow
    _load(info, shared)
    _load(info, shared)
    assert len(counted_discover) == 2
    assert os.listdir(shared) == []


def test_a_planted_cache_file_in_a_good_dir_is_ignored_if_writable_by_others(
    make_kit: MakeKit, tmp_path: Path, counted_discover: list[str]
) -> None:
    info = make_kit()
    cache_dir = tmp_path / "cache"
    _load(info, cache_dir)
    file = Path(cache_path(str(cache_dir), str(info.root), str(info.root)))
    file.chmod(0o666)
    fp = fingerprint(str(info.root), str(info.root))
    assert read_cached(str(cache_dir), str(info.root), str(info.root), fp) is None


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"fingerprint": 1}', b"\xff" * 10])
def test_a_corrupt_cache_means_rediscovery(
    make_kit: MakeKit, tmp_path: Path, counted_discover: list[str], content: bytes
) -> None:
    info = make_kit()
    cache_dir = tmp_path / "cache"
    _load(info, cache_dir)
    Path(cache_path(str(cache_dir), str(info.root), str(info.root))).write_bytes(content)
    assert _load(info, cache_dir).gpus
    assert len(counted_discover) == 2


def test_an_unusable_cache_dir_still_works(make_kit: MakeKit, tmp_path: Path) -> None:
    info = make_kit()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _load(info, blocker / "cache").gpus
    assert cache.write_cached(str(blocker / "cache"), _load(info, tmp_path / "c"), "fp") is False


def test_cache_disabled(make_kit: MakeKit, tmp_path: Path, counted_discover: list[str]) -> None:
    info = make_kit()
    load_inventory(str(info.root), str(info.root), "")
    load_inventory(str(info.root), str(info.root), "")
    assert len(counted_discover) == 2


def test_different_roots_have_different_cache_files(make_kit: MakeKit, tmp_path: Path) -> None:
    a, b = make_kit(), make_kit()
    assert cache_path("/c", str(a.root), str(a.root)) != cache_path("/c", str(b.root), str(b.root))
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    assert _load(a, tmp_path / "cache").driver_root == str(a.root)
    assert _load(b, tmp_path / "cache").driver_root == str(b.root)


def test_roots_are_compared_normalised(
    make_kit: MakeKit, tmp_path: Path, counted_discover: list[str]
) -> None:
    info = make_kit()
    load_inventory(str(info.root) + "/", str(info.root) + "//", str(tmp_path / "cache"))
    load_inventory(str(info.root), str(info.root), str(tmp_path / "cache"))
    assert len(counted_discover) == 1
