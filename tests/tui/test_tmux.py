"""A real terminal: ``gpudoctor --demo`` in tmux at 80x24, driven with send-keys, read with capture-pane.

It goes from the broken demo host to a fixed one with the keyboard alone (f a y Enter, twice), then quits
and checks the exit status. The pane is polled until the expected text appears; nothing is timed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

TMUX = shutil.which("tmux")
POLL_S = 0.2
MAX_POLLS = 300  # a minute, for a loaded CI machine; the usual wait is well under a second

pytestmark = pytest.mark.skipif(TMUX is None and os.environ.get("GPUDOCTOR_REQUIRE_TMUX") != "1",
                                reason="tmux is not installed (apt-get install tmux)")


class Pane:
    def __init__(self, session: str) -> None:
        self.session = session

    def text(self) -> str:
        assert TMUX is not None
        return subprocess.run([TMUX, "capture-pane", "-p", "-t", self.session], capture_output=True, text=True,
                              check=True).stdout

    def keys(self, *keys: str) -> None:
        assert TMUX is not None
        subprocess.run([TMUX, "send-keys", "-t", self.session, *keys], check=True)

    def wait_for(self, needle: str) -> str:
        for _ in range(MAX_POLLS):
            text = self.text()
            if needle in text:
                return text
            time.sleep(POLL_S)
        raise AssertionError(f"{needle!r} never appeared; the pane shows:\n{self.text()}")


@pytest.fixture
def pane() -> Iterator[Pane]:
    if TMUX is None:
        pytest.fail("tmux is required (GPUDOCTOR_REQUIRE_TMUX=1) but not installed")
    session = f"gpudoctor-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX")}
    command = (f"{shlex.quote(sys.executable)} -m gpudoctor --demo; "
               "echo \"gpudoctor exited with $?\"; sleep 600")
    subprocess.run([TMUX, "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    "sh", "-c", command], check=True, env={**env, "TERM": "xterm-256color"})
    try:
        yield Pane(session)
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)


def test_demo_in_tmux_from_broken_to_fixed_with_the_keyboard(pane: Pane) -> None:
    screen = pane.wait_for("first broken layer: Container toolkit")
    assert "DEMO broken" in screen and "Stack" in screen and "Details" in screen
    assert "▶ ✗ Container toolkit" in screen and "BROKEN" in screen
    assert "r Re-run" in screen and "f Fix" in screen and "q Quit" in screen  # the footer fits in 80 columns

    pane.keys("f")
    screen = pane.wait_for('+ldconfig = "@/sbin/ldconfig"')
    assert "Fix toolkit-config" in screen and "Root: not needed" in screen
    pane.keys("a")
    pane.wait_for("Apply toolkit-config?")
    pane.keys("y")
    pane.wait_for("Fixed: the checks it addresses no longer fail")
    pane.keys("Enter")
    screen = pane.wait_for("first broken layer: Daemon runtime")

    pane.keys("f")
    pane.wait_for("Edit /etc/docker/daemon.json")
    pane.keys("a")
    pane.wait_for("Apply docker-runtime?")
    pane.keys("y")
    pane.wait_for("Fixed: the checks it addresses no longer fail")
    pane.keys("Enter")
    screen = pane.wait_for("no broken layer")
    tally = screen.splitlines()[2]
    assert "passed" in tally and "failed" not in tally

    pane.keys("?")
    pane.wait_for("gpudoctor help")
    pane.keys("Escape")
    pane.wait_for("no broken layer")
    pane.keys("q")
    pane.wait_for("gpudoctor exited with 0")
