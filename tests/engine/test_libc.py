"""gpudoctor.engine.libc: the _ctypes bindings behave like the system calls they name."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.engine import libc

_RESOLVE_IN_ROOT = 0x10
_PATH = os.O_PATH | os.O_CLOEXEC


def test_openat2_resolves_inside_the_given_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "escape").symlink_to("/etc")  # absolute: must restart at tmp_path, not at the host's /
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = libc.openat2(root, b"escape", _PATH | os.O_DIRECTORY, _RESOLVE_IN_ROOT)
        assert os.readlink(f"/proc/self/fd/{fd}") == str(tmp_path / "etc")
        os.close(fd)
        with pytest.raises(FileNotFoundError) as caught:
            libc.openat2(root, b"missing", _PATH, _RESOLVE_IN_ROOT)
        assert caught.value.errno == errno.ENOENT and caught.value.filename == "missing"
    finally:
        os.close(root)


def test_fstatfs_type() -> None:
    fd = os.open("/proc", os.O_PATH)
    try:
        assert libc.fstatfs_type(fd) == 0x9FA0  # PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def test_wait_any_reports_the_readable_fds() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        assert libc.wait_any([r1, r2], 0) == []
        os.write(w2, b"x")
        assert libc.wait_any([r1, r2], 5) == [r2]
        os.close(w1)
        w1 = -1
        assert libc.wait_any([r1, r2], 5) == [r1, r2]  # a hung-up pipe counts as readable (EOF)
        assert libc.wait_readable(r2, 0)
    finally:
        for fd in (r1, w1, r2, w2):
            if fd >= 0:
                os.close(fd)


def test_add_seals() -> None:
    fd = os.memfd_create("t", os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, b"abc")
        libc.add_seals(fd, 0x8)  # F_SEAL_WRITE
        with pytest.raises(PermissionError):
            os.write(fd, b"d")
    finally:
        os.close(fd)


def test_setrlimit_prctl_and_caps_in_a_child() -> None:
    """Process-wide changes, so in a child: the limits and the cleared inheritable set are what the
    kernel then reports."""
    if os.geteuid() != 0:
        pytest.skip("capset needs root")
    code = (
        "import sys, resource; sys.path.append(sys.argv[1]); from gpudoctor.engine import libc;"
        "libc.setrlimit(resource.RLIMIT_NOFILE, 64, 64);"
        "libc.capset_clear_inheritable();"
        "assert libc.prctl(38, 1) == 0;"  # PR_SET_NO_NEW_PRIVS
        "print(resource.getrlimit(resource.RLIMIT_NOFILE), libc.prctl(39));"  # PR_GET_NO_NEW_PRIVS
        "print([l for l in open('/proc/self/status') if l.startswith('CapInh')][0].split()[1])"
    )
    package_parent = str(Path(libc.__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, package_parent], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["(64, 64) 1", "0000000000000000"]


def test_errors_name_the_call() -> None:
    with pytest.raises(OSError, match=r"^\[Errno \d+\] mask /nonexistent: "):
        libc.mount(b"x", b"/nonexistent-gpudoctor", b"tmpfs", 0, None, what="mask /nonexistent")
