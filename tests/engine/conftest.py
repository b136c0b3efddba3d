"""Fixtures shared by the engine tests: a simulated host driver (tests.kit plus its /proc view)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.inventory import Inventory, discover
from tests.engine.engine_kit import kit_root
from tests.kit.driver_root import DriverRootInfo
from tests.kit.spec import KitSpec


def _require_kit_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the simulated driver's device nodes need mknod (root)")
    if shutil.which("gcc") is None:
        pytest.skip("the simulated driver is built with gcc, which is not installed")


@pytest.fixture(scope="session")
def kit_host(tmp_path_factory: pytest.TempPathFactory) -> DriverRootInfo:
    """One simulated host driver for the session (2 GPUs, driver 550.54.14). Treat it as read-only."""
    _require_kit_prerequisites()
    return kit_root(tmp_path_factory.mktemp("kit-host") / "root", ipc_sockets=True)


@pytest.fixture(scope="session")
def kit_inventory(kit_host: DriverRootInfo) -> Inventory:
    return discover(str(kit_host.root))


@pytest.fixture
def make_kit(tmp_path: Path) -> Callable[..., DriverRootInfo]:
    """Build a fresh simulated driver root (for tests that change it): make_kit(spec=None, **install)."""
    _require_kit_prerequisites()
    counter = iter(range(1000))

    def make(spec: KitSpec | None = None, **install: Any) -> DriverRootInfo:
        return kit_root(tmp_path / f"kit{next(counter)}", spec, **install)

    return make
