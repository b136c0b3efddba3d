"""Open the host named by ``--root``: a directory (``/``, ``/host``, a fake tree) or a snapshot archive."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class HostOpenError(Exception):
    """The root cannot be used; the message says why and what to do."""


def is_archive(root_arg: str) -> bool:
    return root_arg.endswith(ARCHIVE_SUFFIXES) and not os.path.isdir(root_arg)


@contextmanager
def open_host(root_arg: str = "/", *, offline: bool = False, docker_host: str | None = None) -> Iterator[HostFacts]:
    """Yield HostFacts for `root_arg`. A snapshot archive is replayed offline (its probes stand in)."""
    if is_archive(root_arg):
        try:
            from gpudoctor.snapshot.replay import open_snapshot
        except ImportError:
            raise HostOpenError(f"--root {root_arg}: snapshot replay is not available in this build") from None
        with open_snapshot(root_arg) as facts:
            yield facts
        return
    if not os.path.isdir(root_arg):
        raise HostOpenError(
            f"--root {root_arg}: not a directory. Give the host's root directory (e.g. / or /host) "
            "or a snapshot archive made by `gpudoctor snapshot`."
        )
    yield HostFacts(root=HostRoot(root_arg, offline=offline), docker_host=docker_host)
