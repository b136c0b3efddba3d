"""The TUI's confirmed image pull, with Pilot against a real dockerd (the session's ``dockerd`` fixture)
and the live checks' healthy fake host (its NVML is the simulated driver's).

The image is on a registry nobody serves (``localhost:1``): a pull really reaches the daemon and really
fails, with the daemon's own error. dockerd logs every pull it is asked for (``Attempting next endpoint
for pull``, then ``Handler for POST .../images/create returned error``), so its log is the witness that
no pull happened before the person said yes.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from gpudoctor.checks.base import CheckOptions, Status
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from gpudoctor.tui.app import GpuDoctorApp
from gpudoctor.tui.pull import PARITY, MissingImage, missing_image
from gpudoctor.tui.screens.confirm import ConfirmModal
from gpudoctor.tui.screens.main import MainScreen
from gpudoctor.tui.session import DoctorSession
from tests.infra.dockerd import DockerDaemon
from tests.live.conftest import LiveHost, live_host  # noqa: F401  (the live checks' fixture, reused)
from tests.live.helpers import doctor, environ
from tests.tui.helpers import demo_app, idle, run, settle, static_text, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.root]

ABSENT = "localhost:1/gpudoctor/absent:1"  # nothing listens there: a pull fails at once, on this machine
ONLY = ("driver.installed", "runtime.docker_daemon", PARITY)
PULL_LOGGED = ("images/create", "Attempting next endpoint for pull")
SIZE = (100, 30)


def _session(
    host: LiveHost, docker_host: str, *, recorded: dict[str, Any] | None = None, replay: bool = False
) -> DoctorSession:
    facts = HostFacts(root=HostRoot(host.root), docker_host=docker_host, recorded_probes=recorded, replay=replay)
    options = CheckOptions(docker_host=docker_host, image=ABSENT, timeout=30.0)
    return DoctorSession(facts=facts, options=options, only=ONLY, root_arg=str(host.root))


def _log_since(daemon: DockerDaemon, offset: int) -> str:
    with open(daemon.log_path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def _pulls(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(mark in line for mark in PULL_LOGGED)]


def _pull_shown(app: GpuDoctorApp) -> bool:
    binding = app.screen.active_bindings.get("p")
    return binding is not None and binding.enabled and binding.binding.action == "pull"


def _palette(app: GpuDoctorApp) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


def _notes(app: GpuDoctorApp) -> list[tuple[str, str]]:
    return [(n.severity, n.message) for n in app._notifications]


async def _select_parity(pilot: Pilot[Any], app: GpuDoctorApp) -> str:
    app.main_screen.select_check(PARITY)
    await idle(pilot)
    return static_text(app, "#detail-body")


def test_pull_happens_only_after_yes_and_shows_the_daemons_error(
    live_host: LiveHost,  # noqa: F811
    dockerd: DockerDaemon,
) -> None:
    app = GpuDoctorApp(session=_session(live_host, dockerd.host))
    offset = dockerd.log_offset()

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            before = app.results[PARITY]
            assert before.status is Status.SKIP, before
            assert f"the image {ABSENT} is not present in the daemon" in before.summary
            assert app.missing_image() == MissingImage(image=ABSENT, daemon=dockerd.host)
            assert _pull_shown(app)
            assert f"Pull {ABSENT}" in _palette(app)

            # No: the question names the image and the daemon; nothing is pulled, nothing re-runs.
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "the pull question")
            question = static_text(app, "#question")
            assert ABSENT in question and dockerd.host in question
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")
            await idle(pilot)
            assert _pulls(_log_since(dockerd, offset)) == [], "a pull reached dockerd without a yes"
            assert app.runs_finished == 1 and app.results[PARITY] is before
            assert not app.session.options.pull

            # Yes: parity re-runs with pull on, the daemon really tries, and its error is shown in place.
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), "the pull question")
            await pilot.press("y")
            await settle(pilot, runs=2)
            after = app.results[PARITY]
            assert after.status is Status.SKIP, after
            assert after.summary.startswith(f"could not pull {ABSENT}: ")
            assert "connection refused" in after.summary  # the daemon's words, not gpudoctor's
            assert f"could not pull {ABSENT}" in await _select_parity(pilot, app)
            assert any(
                sev == "error" and f"could not pull {ABSENT}" in msg and "connection refused" in msg
                for sev, msg in _notes(app)
            ), _notes(app)
            assert not app.session.options.pull  # the yes was for that run only
            # A failed pull is not a missing image any more: no second offer until a re-run finds it missing.
            assert app.missing_image() is None and not _pull_shown(app)
            assert not any(t.startswith("Pull ") for t in _palette(app))

    with environ(live_host.env):
        run(body)
    pulls = _pulls(_log_since(dockerd, offset))
    assert any("POST" in line and "images/create" in line for line in pulls), pulls
    assert all("localhost:1" in line for line in pulls), pulls


def test_a_replay_refuses_to_pull(live_host: LiveHost, dockerd: DockerDaemon) -> None:  # noqa: F811
    # What a snapshot of this host records; replayed, parity says the image is missing just the same.
    opts = CheckOptions(docker_host=dockerd.host, image=ABSENT, timeout=30.0)
    live, facts = doctor(live_host.root, opts, *ONLY, env=live_host.env)
    assert missing_image(live[PARITY]) is not None
    app = GpuDoctorApp(session=_session(live_host, dockerd.host, recorded=facts.probe_log, replay=True))
    offset = dockerd.log_offset()

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.missing_image() == MissingImage(image=ABSENT, daemon=dockerd.host)
            await pilot.press("p")
            await idle(pilot)
            assert isinstance(app.screen, MainScreen)  # no question: there is nothing here to pull into
            assert any(
                sev == "warning" and "replay of a snapshot" in msg and f"docker -H {dockerd.host} pull {ABSENT}" in msg
                for sev, msg in _notes(app)
            ), _notes(app)
            assert app.runs_finished == 1

    run(body)
    assert _pulls(_log_since(dockerd, offset)) == []


def test_no_pull_offered_when_parity_is_skipped_for_another_reason(live_host: LiveHost) -> None:  # noqa: F811
    # No daemon answers: parity is skipped, but not for a missing image.
    app = GpuDoctorApp(session=_session(live_host, f"unix://{live_host.root}/nonexistent/docker.sock"))

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.results[PARITY].status is Status.SKIP
            assert app.missing_image() is None
            assert not _pull_shown(app)
            assert not any(t.startswith("Pull ") for t in _palette(app))
            await pilot.press("p")
            await idle(pilot)
            assert isinstance(app.screen, MainScreen) and app.runs_finished == 1

    with environ(live_host.env):
        run(body)


def test_demo_has_no_pull_and_refuses_one() -> None:
    with demo_app("healthy") as (app, _demo):

        async def body() -> None:
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                assert app.results[PARITY].status is Status.SKIP  # offline: no live probe
                assert not _pull_shown(app)
                app.action_pull()  # as if reached some other way: a demo has no daemon
                await idle(pilot)
                assert isinstance(app.screen, MainScreen)
                assert any(sev == "warning" and "demo host" in msg for sev, msg in _notes(app))

        run(body)
