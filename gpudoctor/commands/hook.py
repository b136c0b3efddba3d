"""``gpudoctor hook create-symlinks|update-ldcache``: OCI createContainer hooks (see gpudoctor.engine.hooks).

Runs as ``gpudoctor hook ...``, as ``python -I -m gpudoctor.commands.hook ...`` and through the engine's
``entry.py hook ...`` launcher that the emitted hook entries use. Imports only the stdlib, so that a hook
started with ``python -I -S`` on every container start stays fast.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Run one hook; the OCI state is read from stdin. Returns 0, 1 (hook failed) or 2 (usage)."""
    from gpudoctor.engine.hooks import run

    return run(list(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
