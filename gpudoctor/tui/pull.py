"""The TUI's confirmed image pull: when `parity.nvidia_smi` is skipped because its image is not in the
daemon, the person may pull it (``p``) and re-run the check.

This module only reads results and words the question; the app (gpudoctor.tui.app) asks, and the pull
itself is the parity probe's, run with ``pull=True`` only after a yes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gpudoctor.checks.base import CheckResult, Status
from gpudoctor.host.docker_probe import DEFAULT_HOST

# gpudoctor.checks.live_parity is imported where it is used: importing a check module registers checks,
# and the report lists them in registration order, which only load_checks() gets right.

PARITY = "parity.nvidia_smi"


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingImage:
    """The image that `parity.nvidia_smi` could not find, and the daemon it asked (its URL)."""

    image: str
    daemon: str

    @property
    def command(self) -> str:
        """The equivalent command line, for a person to run by hand."""
        host = "" if self.daemon == DEFAULT_HOST else f"-H {shlex.quote(self.daemon)} "
        return f"docker {host}pull {shlex.quote(self.image)}"


def missing_image(result: CheckResult | None) -> MissingImage | None:
    """The missing image a `parity.nvidia_smi` skip names (read from its fixed evidence lines), else None."""
    if result is None or result.id != PARITY or result.status is not Status.SKIP:
        return None
    from gpudoctor.checks.live_parity import DAEMON_EVIDENCE, MISSING_IMAGE_EVIDENCE

    image = daemon = None
    for line in result.evidence:
        if line.startswith(MISSING_IMAGE_EVIDENCE):
            image = line[len(MISSING_IMAGE_EVIDENCE) :].strip()
        elif line.startswith(DAEMON_EVIDENCE):
            daemon = line[len(DAEMON_EVIDENCE) :].strip()
    if not image or not daemon:
        return None
    return MissingImage(image=image, daemon=daemon)


def pull_question(missing: MissingImage) -> str:
    """The confirmation: what is pulled, into which daemon, and what follows."""
    return (
        f"Pull {missing.image} into the Docker daemon at {missing.daemon}?\n\n"
        f"This is `{missing.command}`: it downloads the image from its registry (it can be large), "
        f"then {PARITY} runs again with it."
    )
