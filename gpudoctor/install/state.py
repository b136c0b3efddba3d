"""The install state file: which steps are done, so that running ``gpudoctor install`` again resumes.

``/var/lib/gpudoctor/install-state.json`` under the root, written atomically after every step::

    {"schema": "gpudoctor.install-state/1", "route": "nvidia", "distro": "Ubuntu 22.04.4 LTS (apt)",
     "steps": {"driver": {"state": "done", "at": "2025-...Z", "detail": "..."}, ...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gpudoctor.fixes.apply import atomic_write
from gpudoctor.host.root import HostRoot

STATE_PATH = "/var/lib/gpudoctor/install-state.json"
SCHEMA = "gpudoctor.install-state/1"
STATES = ("pending", "done", "failed", "skipped")


@dataclass(slots=True, kw_only=True)
class InstallState:
    """What earlier runs recorded. `warning` says why an unreadable file was ignored."""

    route: str | None = None
    distro: str | None = None
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    warning: str | None = None

    def state_of(self, step_id: str) -> str:
        return self.steps.get(step_id, {}).get("state", "pending")

    def detail_of(self, step_id: str) -> str:
        return self.steps.get(step_id, {}).get("detail", "")

    def mark(self, step_id: str, state: str, detail: str = "") -> None:
        if state not in STATES:
            raise ValueError(f"unknown step state {state!r}")
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.steps[step_id] = {"state": state, "at": at, "detail": detail}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "route": self.route, "distro": self.distro, "steps": self.steps}


def load_state(root: HostRoot, path: str = STATE_PATH) -> InstallState:
    """The recorded state; an empty one when there is none. A damaged file is ignored with a warning (it is
    gpudoctor's own bookkeeping: starting over only re-verifies steps, it never redoes a verified one)."""
    text = root.try_read_text(path)
    if text is None:
        return InstallState()
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("steps"), dict):
            raise ValueError(f"not a {SCHEMA} document")
        steps = {
            str(k): {str(a): str(b) for a, b in v.items()}
            for k, v in data["steps"].items()
            if isinstance(v, dict)
        }
    except ValueError as exc:
        return InstallState(warning=f"{path} is unreadable ({exc}); starting over (every step is verified again)")
    route = data.get("route")
    distro = data.get("distro")
    return InstallState(
        route=route if isinstance(route, str) else None,
        distro=distro if isinstance(distro, str) else None,
        steps=steps,
    )


def save_state(root: HostRoot, state: InstallState, path: str = STATE_PATH) -> None:
    """Write the state atomically (raises OSError when it cannot be written)."""
    atomic_write(root, path, (json.dumps(state.to_dict(), indent=2) + "\n").encode("utf-8"), new_mode=0o644)
