"""gpudoctor.engine.confine beyond what the probe tests in test_hooks show: the started-then-run split,
cancelling before anything executes, and that the caller's own pid namespace is left as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpudoctor.engine import confine
from gpudoctor.engine.safepath import Root
from tests.engine.hook_kit import Bundle, build_static, require_root

MARKER_C = r"""
#include <stdio.h>
/* Stands in for ldconfig: leaves a file in the (chrooted) root and reports it ran. */
int main(int argc, char **argv) {
    FILE *f = fopen("/ran", "w");
    if (!f) return 3;
    fprintf(f, "%s\n", argc > 1 ? argv[1] : "-");
    fclose(f);
    puts("marker ran");
    return 0;
}
"""


SYNC_C = r"""
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
/* Reports the seccomp mode and what fsync/fdatasync return on a file it wrote. */
int main(void) {
    FILE *f = fopen("/synced", "w");
    if (!f) return 3;
    fputs("x", f);
    fflush(f);
    int a = fsync(fileno(f)), b = fdatasync(fileno(f));
    printf("seccomp=%d fsync=%d fdatasync=%d\n", prctl(PR_GET_SECCOMP, 0, 0, 0, 0), a, b);
    fclose(f);
    return 0;
}
"""


@pytest.fixture(scope="module")
def marker_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_static(tmp_path_factory.mktemp("marker"), "marker", MARKER_C)


def _start(root: Root, binary: Path) -> confine.Confinement:
    fd = os.open(binary, os.O_RDONLY | os.O_CLOEXEC)
    try:
        memfd = confine.sealed_memfd(fd, "marker")
    finally:
        os.close(fd)
    try:
        return confine.start_confined(root, memfd, ["marker", "arg"], env={"PATH": "/bin"}, timeout=30,
                                      name="marker", path_in_ns=root.path)
    finally:
        os.close(memfd)  # the child holds its own copy


def test_started_then_run(tmp_path: Path, marker_binary: Path) -> None:
    require_root()
    bundle = Bundle.create(tmp_path / "b")
    with Root.open(str(bundle.rootfs)) as root:
        started = _start(root, marker_binary)
        assert not (bundle.rootfs / "ran").exists()  # nothing runs before run()
        code, output = started.run()
    assert (code, output) == (0, b"marker ran\n")
    assert (bundle.rootfs / "ran").read_text() == "arg\n"


def test_cancel_executes_nothing_and_reaps_the_child(tmp_path: Path, marker_binary: Path) -> None:
    require_root()
    bundle = Bundle.create(tmp_path / "b")
    with Root.open(str(bundle.rootfs)) as root:
        started = _start(root, marker_binary)
        started.cancel()
        started.cancel()  # idempotent
    assert not (bundle.rootfs / "ran").exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(started.pid, os.WNOHANG)  # already reaped


def test_the_callers_pid_namespace_is_untouched(tmp_path: Path, marker_binary: Path) -> None:
    """The child is pid 1 of a new pid namespace, yet this process's children still go to its own one."""
    require_root()
    bundle = Bundle.create(tmp_path / "b")
    before = os.readlink("/proc/self/ns/pid_for_children")
    with Root.open(str(bundle.rootfs)) as root:
        assert _start(root, marker_binary).run()[0] == 0
    assert os.readlink("/proc/self/ns/pid_for_children") == before == os.readlink("/proc/self/ns/pid")
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7


def test_sealed_memfd_cannot_be_changed(tmp_path: Path) -> None:
    memfd = confine.sealed_memfd(b"\x7fELF-not-really", "x")
    try:
        with pytest.raises(PermissionError):
            os.write(memfd, b"y")
        with pytest.raises(PermissionError):
            os.ftruncate(memfd, 0)
        assert os.pread(memfd, 100, 0) == b"\x7fELF-not-really"
    finally:
        os.close(memfd)
    source = tmp_path / "big"
    source.write_bytes(b"z" * 5000)
    fd = os.open(source, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="larger than 4096 bytes"):
            confine.sealed_memfd(fd, "x", limit=4096)
        copy = confine.sealed_memfd(fd, "x", limit=5000)
        assert os.fstat(copy).st_size == 5000
        os.close(copy)
    finally:
        os.close(fd)


def test_syncs_succeed_without_syncing(tmp_path: Path) -> None:
    """ldconfig's fsync of the cache is answered by a seccomp filter (x86_64 and aarch64): it reports
    success, the file is written all the same."""
    require_root()
    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.skip("the filter is only installed on x86_64 and aarch64")
    binary = build_static(tmp_path, "syncer", SYNC_C)
    bundle = Bundle.create(tmp_path / "b")
    with Root.open(str(bundle.rootfs)) as root:
        code, output = _start(root, binary).run()
    assert (code, output) == (0, b"seccomp=2 fsync=0 fdatasync=0\n")
    assert (bundle.rootfs / "synced").read_text() == "x"
