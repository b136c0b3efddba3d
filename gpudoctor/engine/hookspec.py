"""The shape of the OCI hook entries that run ``gpudoctor hook``: built and validated here, and only here.

Stdlib-only and free of ctypes, so the runtime shim can build entries on every GPU container start without
loading the hooks' own machinery (gpudoctor.engine.hooks re-exports everything below). Why the entry
looks the way it does (explicit ``env`` against CVE-2025-23266, ``-I -S``, ``--opt=value``) is explained in
the gpudoctor.engine.hooks docstring. The entry::

    {"path": PY,
     "args": [PY, "-I", "-S", "<dir>/gpudoctor/engine/entry.py", "hook", KIND, "--opt=value", ...],
     "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"],
     "timeout": 30}
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing/collections.abc cost import time on every container start
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = [
    "HOOK_ENV",
    "HOOK_KINDS",
    "HOOK_TIMEOUT",
    "check_container_abspath",
    "check_target",
    "create_symlinks_hook",
    "entry_script",
    "hook_entry",
    "update_ldcache_hook",
    "validate_folder",
]

HOOK_KINDS = ("create-symlinks", "update-ldcache")
HOOK_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C")
HOOK_TIMEOUT = 30
"""Seconds; runc kills the hook after this. The ldconfig step has its own, shorter deadline."""
# Characters allowed in a folder written to ld.so.conf: whitespace, ',' and ':' separate entries there, and
# a line starting with "include"/"hwcap" is a directive, so only plain path characters are accepted.
_FOLDER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+@-/")


def _package_parent() -> str:
    here = os.path.dirname(os.path.abspath(__file__))  # .../gpudoctor/engine
    return os.path.dirname(os.path.dirname(here))


def entry_script() -> str:
    """Absolute path of the launcher script a hook entry runs (``gpudoctor/engine/entry.py``)."""
    return os.path.join(_package_parent(), "gpudoctor", "engine", "entry.py")


def hook_entry(
    kind: str, args: Sequence[str], *, python: str | None = None, timeout: int = HOOK_TIMEOUT
) -> dict[str, Any]:
    """The OCI hook object that runs ``gpudoctor hook KIND ARGS`` (see gpudoctor.engine.hooks for why each part is there).

    `args` must be ``--opt=value`` elements. `python` defaults to ``sys.executable``. The result always
    has an explicit ``env`` and a ``timeout``; add ``"hookName": "createContainer"`` for a CDI spec.
    """
    if kind not in HOOK_KINDS:
        raise ValueError(f"unknown hook kind {kind!r} (expected one of {', '.join(HOOK_KINDS)})")
    for arg in args:
        if not isinstance(arg, str) or not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"hook argument {arg!r} is not in the --opt=value form")
        if "\0" in arg or "\n" in arg:
            raise ValueError(f"hook argument {arg!r} contains a NUL or newline")
    py = python or sys.executable
    if not py or not os.path.isabs(py):
        raise ValueError(f"the Python interpreter path {py!r} is not absolute")
    if not isinstance(timeout, int) or timeout < 1:
        raise ValueError("the hook timeout must be a positive integer")
    return {
        "path": py,
        "args": [py, "-I", "-S", entry_script(), "hook", kind, *args],
        "env": list(HOOK_ENV),
        "timeout": timeout,
    }


def check_container_abspath(path: str, what: str) -> None:
    """ValueError unless `path` is an absolute, normalized container path without control chars or '::'."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{what} {path!r} must be an absolute container path")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError(f"{what} {path!r} contains a control character (newline, NUL, ...)")
    if "::" in path:
        raise ValueError(f"{what} {path!r} contains '::'")
    comps = path.split("/")[1:]
    if path != "/" and any(c in ("", ".", "..") for c in comps):
        raise ValueError(f"{what} {path!r} is not normalized (empty, '.' or '..' component)")


def check_target(target: str) -> None:
    """ValueError unless `target` is usable as a symlink text in a --link (non-empty, no control chars, no '::')."""
    if not isinstance(target, str) or not target:
        raise ValueError("a symlink target must be a non-empty string")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target) or "::" in target:
        raise ValueError(f"symlink target {target!r} contains a control character or '::'")


def create_symlinks_hook(links: Iterable[tuple[str, str]], *, python: str | None = None) -> dict[str, Any]:
    """A create-symlinks hook entry for (target, link) pairs; validates every pair first."""
    args = []
    for target, link in links:
        check_target(target)
        check_container_abspath(link, "link path")
        args.append(f"--link={target}::{link}")
    return hook_entry("create-symlinks", args, python=python)


def validate_folder(folder: str) -> str:
    """Return `folder` when it is a safe absolute container dir for ld.so.conf; ValueError otherwise."""
    check_container_abspath(folder, "folder")
    bad = sorted({c for c in folder if c not in _FOLDER_CHARS})
    if bad:
        raise ValueError(f"folder {folder!r} contains characters not allowed in ld.so.conf: {''.join(bad)!r}")
    return folder


def update_ldcache_hook(folders: Iterable[str], *, python: str | None = None) -> dict[str, Any]:
    """An update-ldcache hook entry for container lib folders; validates every folder first."""
    return hook_entry("update-ldcache", [f"--folder={validate_folder(f)}" for f in folders], python=python)
