"""Where things live on the host: binaries on the standard PATH, gpudoctor's own runtime shim."""

from __future__ import annotations

import os
import shutil
import sys

from gpudoctor.host.root import HostRoot

PATH_DIRS: tuple[str, ...] = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

NVIDIA_RUNTIME = "nvidia-container-runtime"
NVIDIA_RUNTIME_DEFAULT_PATH = "/usr/bin/nvidia-container-runtime"
GPUDOCTOR_RUNTIME = "gpudoctor-runtime"
LAUNCHER_PATH = "/usr/local/lib/gpudoctor/gpudoctor-runtime"
"""Where the fix-ups and install put the ``sh`` launcher of the ``gpudoctor`` runtime (see engine.launcher).
Its basename is the console script's, so checks recognise it either way."""
RUNC_DEFAULT = "/usr/sbin/runc"


def find_binary(root: HostRoot, name: str, dirs: tuple[str, ...] = PATH_DIRS) -> str | None:
    """Host path of an executable `name` in the standard PATH under the root, or None."""
    for d in dirs:
        host = f"{d}/{name}"
        st = root.stat(host)
        if st is not None and os.path.isfile(root.path(host)) and st.st_mode & 0o111:
            return host
    return None


def find_gpudoctor_runtime(root: HostRoot) -> str | None:
    """Absolute path of an installed ``gpudoctor-runtime`` for this root, or None.

    Under another root only that root's PATH counts (the path goes into its daemon.json). On the live
    root the console script of this very installation counts too (a venv or pyenv bin directory).
    """
    found = find_binary(root, GPUDOCTOR_RUNTIME)
    if found is not None or not root.is_live_root:
        return found
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), GPUDOCTOR_RUNTIME)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    which = shutil.which(GPUDOCTOR_RUNTIME)
    return os.path.abspath(which) if which else None


def launcher_text(root: HostRoot, *, config: str | None = None) -> tuple[str, list[str]]:
    """The launcher script for this root, and notes about what it assumes.

    It runs the host's runc (found under the root) for every verb except a GPU container's create, and
    this installation's Python for that one, with the shim's settings file `config` (None: its default).
    """
    from gpudoctor.engine.launcher import python_path, render_launcher

    notes: list[str] = []
    runc = find_binary(root, "runc")
    if runc is None:
        runc = RUNC_DEFAULT
        notes.append(f"runc is not installed under {root.root}; the launcher expects it at {RUNC_DEFAULT}")
    if not root.is_live_root:
        notes.append(
            f"the launcher starts {python_path()} for GPU containers: that Python, with gpudoctor, must exist "
            "on the host at that path too"
        )
    return render_launcher(runc=runc, config=config), notes
