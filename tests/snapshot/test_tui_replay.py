"""The TUI replays a bundle too (`gpudoctor --root FILE.tar.gz` on a terminal): same findings as the bundle's
report, and the header names the archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions
from gpudoctor.snapshot.collect import collect_snapshot
from gpudoctor.snapshot.replay import open_snapshot
from tests.scenarios.catalog import by_name
from tests.scenarios.hosts import built_hosts
from tests.snapshot.helpers import bundle_bytes

pytestmark = pytest.mark.root


def test_tui_shows_the_replayed_findings(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    pytest.importorskip("textual")
    from gpudoctor.tui.app import GpuDoctorApp
    from gpudoctor.tui.session import DoctorSession
    from tests.tui.helpers import run, settle

    root = built_hosts(tmp_path_factory).get(by_name()["uvm_node_missing"])
    archive = collect_snapshot(tmp_path / "uvm.tar.gz", root=str(root), offline=True).path
    recorded = {c["id"]: c for c in json.loads(bundle_bytes(archive)["report.json"])["checks"]}

    async def body() -> None:
        with open_snapshot(str(archive)) as facts:
            session = DoctorSession(facts=facts, options=CheckOptions(offline=facts.offline), root_arg=str(archive))
            app = GpuDoctorApp(session=session)
            async with app.run_test(size=(100, 30)) as pilot:
                await settle(pilot)
                shown = {cid: (r.status.value, r.summary, list(r.evidence)) for cid, r in app.results.items()}
                assert shown == {cid: (c["status"], c["summary"], c["evidence"]) for cid, c in recorded.items()}
                assert app.results["devices.uvm"].status.value == "fail"
                assert session.host_summary()["root"] == str(archive)
                # Fixing or installing on a replay would only change the extracted copy: refused, said so.
                screen = app.screen
                for key in ("f", "i"):
                    await pilot.press(key)
                    await pilot.pause()
                    assert app.screen is screen
                assert any("replay of a snapshot" in str(n.message) for n in app._notifications)

    run(body)
