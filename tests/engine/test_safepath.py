"""gpudoctor.engine.safepath: fd-based resolution and changes inside an untrusted root, both backends.

Every test that aims a link outside the root has a HostCanary as the target and proves it untouched.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpudoctor.engine.safepath import MAX_LINKS, Root, SafePathError, openat2_available, split_container_path
from tests.engine.hook_kit import HostCanary, require_root

BACKENDS = ["openat2", "walk"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "openat2" and not openat2_available():
        pytest.skip("openat2(2) is not available on this kernel")
    return str(request.param)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("container\n")
    os.symlink("usr/lib", root / "lib")  # merged-usr, as real images have it
    return root


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[HostCanary]:
    with HostCanary.create(tmp_path / "host") as c:
        yield c


@pytest.fixture
def root(rootfs: Path, backend: str) -> Iterator[Root]:
    with Root.open(str(rootfs), backend=backend) as r:
        assert r.backend == backend
        yield r


def real(root: Root, fd: int) -> str:
    try:
        return root.host_path(fd)
    finally:
        os.close(fd)


# -- resolution ----------------------------------------------------------------------------------------------


def test_openat2_is_used_when_the_kernel_has_it(rootfs: Path) -> None:
    with Root.open(str(rootfs)) as r:
        assert r.backend == ("openat2" if openat2_available() else "walk")


def test_plain_paths_and_in_root_symlinks(root: Root, rootfs: Path) -> None:
    assert real(root, root.resolve("/etc/hostname")) == str(rootfs / "etc" / "hostname")
    assert real(root, root.resolve("etc//./hostname")) == str(rootfs / "etc" / "hostname")
    assert real(root, root.resolve("/lib/x86_64-linux-gnu")) == str(rootfs / "usr/lib/x86_64-linux-gnu")
    assert real(root, root.resolve("/")) == str(rootfs)
    link = root.resolve("/lib", follow=False)
    try:
        assert stat.S_ISLNK(os.fstat(link).st_mode)
    finally:
        os.close(link)
    assert root.readlink("/lib") == "usr/lib"


@pytest.mark.parametrize("style", ["absolute", "dotdot", "plain"])
def test_links_out_of_the_root_stay_inside(root: Root, rootfs: Path, canary: HostCanary, style: str) -> None:
    target = {
        "absolute": f"/../../../../../../..{canary.path}",
        "dotdot": "../" * 12 + str(canary.path).lstrip("/"),
        "plain": str(canary.path),
    }[style]
    os.symlink(target, rootfs / "escape")
    with pytest.raises(SafePathError) as info:
        root.resolve("/escape/secret.txt")
    assert info.value.errno == errno.ENOENT
    assert "does not exist inside the container root" in str(info.value)
    # The same name inside the root is what the link means.
    mirror = rootfs / str(canary.path).lstrip("/")
    mirror.mkdir(parents=True)
    (mirror / "secret.txt").write_text("in-root copy\n")
    assert real(root, root.resolve("/escape/secret.txt")) == str(mirror / "secret.txt")
    assert root.read_file("/escape/secret.txt") == b"in-root copy\n"
    canary.assert_untouched()


def test_dotdot_is_clamped_at_the_root(root: Root, rootfs: Path) -> None:
    assert real(root, root.resolve("/../../../../etc/hostname")) == str(rootfs / "etc" / "hostname")
    assert real(root, root.resolve("/usr/../../..")) == str(rootfs)
    # ".." after a symlinked dir goes to the physical parent of its target, like the kernel.
    os.symlink("/usr/lib/x86_64-linux-gnu", rootfs / "deep")
    assert real(root, root.resolve("/deep/..")) == str(rootfs / "usr" / "lib")


def test_symlink_loop_is_refused_with_a_clear_message(root: Root, rootfs: Path) -> None:
    os.symlink("b", rootfs / "a")
    os.symlink("a", rootfs / "b")
    with pytest.raises(SafePathError) as info:
        root.resolve("/a/x")
    assert info.value.errno == errno.ELOOP
    assert f"symlink loop (more than {MAX_LINKS} links)" in str(info.value)


def test_link_chain_limit(root: Root, rootfs: Path) -> None:
    (rootfs / "end").mkdir()
    os.symlink("end", rootfs / f"l{MAX_LINKS}")
    for i in range(MAX_LINKS - 1, 0, -1):
        os.symlink(f"l{i + 1}", rootfs / f"l{i}")
    assert real(root, root.resolve("/l1")) == str(rootfs / "end")  # exactly 40 links: allowed
    os.symlink("l1", rootfs / "l0")
    with pytest.raises(SafePathError) as info:
        root.resolve("/l0")
    assert info.value.errno == errno.ELOOP


def test_dangling_and_not_a_directory(root: Root, rootfs: Path) -> None:
    os.symlink("/nowhere/at/all", rootfs / "dangling")
    with pytest.raises(SafePathError) as info:
        root.resolve("/dangling")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(SafePathError) as info:
        root.resolve("/etc/hostname/x")
    assert info.value.errno == errno.ENOTDIR
    assert "not a directory" in str(info.value)
    assert not root.exists("/dangling")
    assert root.exists("/dangling", follow=False)


def test_invalid_paths_are_refused() -> None:
    with pytest.raises(SafePathError, match="NUL"):
        split_container_path("/etc/\0x")
    with pytest.raises(SafePathError, match="longer than"):
        split_container_path("/" + "a" * 5000)


def test_magic_links_are_refused(tmp_path: Path, backend: str) -> None:
    """With a real procfs inside the root (as runc mounts it before createContainer hooks run),
    /proc/self/root and /proc/1/cwd would lead to the host: both backends refuse them."""
    require_root()
    if backend == "openat2" and not openat2_available():
        pytest.skip("openat2(2) is not available")
    rootfs = tmp_path / "rootfs"
    (rootfs / "proc").mkdir(parents=True)
    (rootfs / "usr" / "lib").mkdir(parents=True)
    host = HostCanary.create(tmp_path / "host")
    os.symlink(f"/proc/self/root{host.path}", rootfs / "usr" / "lib" / "x86_64-linux-gnu")
    os.symlink("/proc/1/cwd", rootfs / "usr" / "lib" / "cwdlink")
    script = textwrap.dedent(f"""
        import ctypes, json, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mount(b"proc", {str(rootfs / "proc")!r}.encode(), b"proc", 0, None) == 0
        from gpudoctor.engine.safepath import Root, SafePathError
        out = {{}}
        with Root.open({str(rootfs)!r}, backend={backend!r}) as r:
            for p in ("/usr/lib/x86_64-linux-gnu/secret.txt", "/usr/lib/cwdlink", "/proc/self/root/etc"):
                try:
                    os.close(r.resolve(p))
                    out[p] = "resolved"
                except SafePathError as exc:
                    out[p] = [exc.errno, str(exc)]
            try:
                r.symlink("x", "/usr/lib/x86_64-linux-gnu/planted")
                out["symlink"] = "created"
            except SafePathError as exc:
                out["symlink"] = [exc.errno, str(exc)]
        print(json.dumps(out))
    """)
    with host:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
                              capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("/usr/lib/x86_64-linux-gnu/secret.txt", "/usr/lib/cwdlink", "/proc/self/root/etc", "symlink"):
        err, message = out[key]
        assert err == errno.ELOOP, out
        assert "procfs" in message and "magic link" in message, message
    host.assert_untouched()


# -- changes -------------------------------------------------------------------------------------------------


def test_mkdir_all_creates_inside_the_root(root: Root, rootfs: Path) -> None:
    fd = root.mkdir_all("/lib/nvidia/extra")  # /lib -> usr/lib is followed in-root
    assert real(root, fd) == str(rootfs / "usr" / "lib" / "nvidia" / "extra")
    fd = root.mkdir_all("/usr/lib/nvidia/extra")  # idempotent
    os.close(fd)
    assert (rootfs / "usr/lib/nvidia/extra").is_dir()


def test_mkdir_all_refuses_a_dangling_link_out_of_the_root(root: Root, rootfs: Path, canary: HostCanary) -> None:
    os.symlink(f"/../../..{canary.path}/watch", rootfs / "usr" / "lib" / "x86_64-linux-gnu" / "nvidia")
    with pytest.raises(SafePathError) as info:
        root.mkdir_all("/usr/lib/x86_64-linux-gnu/nvidia/sub")
    assert str(info.value) == (f"/usr/lib/x86_64-linux-gnu/nvidia: is a symlink to '/../../..{canary.path}/watch', "
                               "which does not exist inside the container root")
    canary.assert_untouched()


def test_mkdir_all_refuses_a_file_in_the_way(root: Root, rootfs: Path) -> None:
    with pytest.raises(SafePathError, match="/etc/hostname: is a regular file, not a directory"):
        root.mkdir_all("/etc/hostname/sub")


def test_symlink_create_replace_and_idempotence(root: Root, rootfs: Path) -> None:
    link = rootfs / "usr" / "lib" / "x86_64-linux-gnu" / "libcuda.so"
    assert root.symlink("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so") is True
    assert os.readlink(link) == "libcuda.so.1"
    assert root.symlink("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so") is False
    assert root.symlink("libcuda.so.550", "/usr/lib/x86_64-linux-gnu/libcuda.so") is True
    assert os.readlink(link) == "libcuda.so.550"
    link.unlink()
    link.write_bytes(b"a stub the image shipped")
    assert root.symlink("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so") is True  # ln -sf
    assert os.readlink(link) == "libcuda.so.1"
    # Parents are created; the text may point anywhere, the location may not.
    assert root.symlink("/etc/shadow", "/new/dir/link") is True
    assert os.readlink(rootfs / "new" / "dir" / "link") == "/etc/shadow"
    assert not [p for p in os.listdir(link.parent) if ".gpudoctor-" in p]  # no temp files left


def test_symlink_replaces_a_link_to_a_host_file_without_following_it(root: Root, rootfs: Path,
                                                                     canary: HostCanary) -> None:
    link = rootfs / "usr" / "lib" / "x86_64-linux-gnu" / "libcuda.so"
    os.symlink(str(canary.path / "secret.txt"), link)
    assert root.symlink("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so") is True
    assert os.readlink(link) == "libcuda.so.1"
    canary.assert_untouched()


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket"])
def test_symlink_refuses_to_replace_special_files(root: Root, rootfs: Path, kind: str) -> None:
    path = rootfs / "usr" / "lib" / "x86_64-linux-gnu" / "libcuda.so"
    if kind == "directory":
        path.mkdir()
        (path / "data").write_text("user data")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
    with pytest.raises(SafePathError) as info:
        root.symlink("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so")
    words = {"directory": "a directory", "fifo": "a FIFO", "socket": "a socket"}[kind]
    assert str(info.value) == f"/usr/lib/x86_64-linux-gnu/libcuda.so: is {words}; refusing to replace it with a symlink"
    assert not stat.S_ISLNK(path.lstat().st_mode)


def test_symlink_location_under_a_parent_linked_out_of_the_root(root: Root, rootfs: Path,
                                                                canary: HostCanary) -> None:
    """CVE-2024-0134: the link's parent dir is a symlink out of the root; the link must land in-root."""
    os.symlink(f"../../../../../../..{canary.path}/lib", rootfs / "usr" / "lib64")
    mirror = rootfs / str(canary.path).lstrip("/") / "lib"
    mirror.mkdir(parents=True)
    assert root.symlink("libcuda.so.1", "/usr/lib64/libcuda.so") is True
    assert os.readlink(mirror / "libcuda.so") == "libcuda.so.1"
    canary.assert_untouched()


def test_write_file_is_atomic_and_replaces_links_not_their_targets(root: Root, rootfs: Path,
                                                                   canary: HostCanary) -> None:
    conf = rootfs / "etc" / "ld.so.conf.d" / "00-x.conf"
    root.write_file("/etc/ld.so.conf.d/00-x.conf", b"/usr/lib/nvidia\n")
    assert conf.read_bytes() == b"/usr/lib/nvidia\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    conf.unlink()
    os.symlink(str(canary.path / "secret.txt"), conf)
    root.write_file("/etc/ld.so.conf.d/00-x.conf", b"new\n", mode=0o600)
    assert not conf.is_symlink() and conf.read_bytes() == b"new\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert not [p for p in os.listdir(conf.parent) if ".gpudoctor-" in p]
    canary.assert_untouched()


def test_write_file_without_fsync_is_still_atomic(root: Root, rootfs: Path, canary: HostCanary) -> None:
    """durable=False (the hooks' drop-in) only skips the fsync: the link is replaced, not followed."""
    conf = rootfs / "etc" / "ld.so.conf.d" / "00-y.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(str(canary.path / "secret.txt"), conf)
    root.write_file("/etc/ld.so.conf.d/00-y.conf", b"/usr/lib/nvidia\n", durable=False)
    assert not conf.is_symlink() and conf.read_bytes() == b"/usr/lib/nvidia\n"
    assert not [p for p in os.listdir(conf.parent) if ".gpudoctor-" in p]
    canary.assert_untouched()


def test_write_file_refuses_a_fifo_or_directory(root: Root, rootfs: Path) -> None:
    os.mkfifo(rootfs / "etc" / "fifo.conf")
    (rootfs / "etc" / "dir.conf").mkdir()
    with pytest.raises(SafePathError, match="/etc/fifo.conf: is a FIFO, not a regular file; refusing"):
        root.write_file("/etc/fifo.conf", b"x")
    with pytest.raises(SafePathError, match="/etc/dir.conf: is a directory, not a regular file; refusing"):
        root.write_file("/etc/dir.conf", b"x")


def _alarm(_signum: int, _frame: object) -> None:
    raise TimeoutError("a FIFO blocked the call")


def test_read_file_never_opens_a_fifo_or_device(root: Root, rootfs: Path) -> None:
    os.mkfifo(rootfs / "etc" / "ld.so.conf")
    os.symlink("ld.so.conf", rootfs / "etc" / "via-link.conf")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)  # only a guard against a hang; nothing is timed
    try:
        with pytest.raises(SafePathError, match="/etc/ld.so.conf: is a FIFO, not a regular file"):
            root.read_file("/etc/ld.so.conf")
        with pytest.raises(SafePathError, match="is a FIFO, not a regular file"):
            root.read_file("/etc/via-link.conf")
        if os.geteuid() == 0:
            os.mknod(rootfs / "etc" / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
            with pytest.raises(SafePathError, match="/etc/zero: is a character device, not a regular file"):
                root.read_file("/etc/zero")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_read_file_size_limit(root: Root, rootfs: Path) -> None:
    (rootfs / "etc" / "big").write_bytes(b"x" * 5000)
    assert root.read_file("/etc/big", limit=5000) == b"x" * 5000
    with pytest.raises(SafePathError, match="larger than 4999 bytes"):
        root.read_file("/etc/big", limit=4999)


def test_scandir_lists_entries_by_fd(root: Root, rootfs: Path) -> None:
    (rootfs / "usr" / "lib" / "x86_64-linux-gnu" / "libx.so.1").write_bytes(b"")
    os.symlink("libx.so.1", rootfs / "usr" / "lib" / "x86_64-linux-gnu" / "libx.so")
    assert sorted(root.scandir("/lib/x86_64-linux-gnu")) == [("libx.so", True), ("libx.so.1", False)]


def test_open_root_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SafePathError) as info:
        Root.open(str(tmp_path / "missing"))
    assert str(info.value) == f"{tmp_path / 'missing'}: cannot open the container root: No such file or directory"
    (tmp_path / "file").write_text("")
    with pytest.raises(SafePathError, match="cannot open the container root: Not a directory"):
        Root.open(str(tmp_path / "file"))
    with pytest.raises(ValueError):
        Root.open(str(tmp_path), backend="magic")


# -- races ---------------------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2


def test_racing_symlink_swap_never_writes_outside(tmp_path: Path, backend: str) -> None:
    """A child swaps a lib dir with a symlink to the host (renameat2 RENAME_EXCHANGE) as fast as it can
    while we create links and files in that dir: nothing may land on the host (research case 9)."""
    rootfs = tmp_path / "rootfs"
    libdir = rootfs / "usr" / "lib" / "x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    host = HostCanary.create(tmp_path / "host")
    swap = rootfs / "usr" / "lib" / "swap"
    os.symlink(str(host.path / "watch"), swap)
    libc = ctypes.CDLL(None, use_errno=True)
    with host:
        pid = os.fork()
        if pid == 0:  # the attacker
            try:
                a, b = os.fsencode(libdir), os.fsencode(swap)
                while True:
                    libc.renameat2(-100, a, -100, b, _RENAME_EXCHANGE)
            finally:
                os._exit(0)
        try:
            with Root.open(str(rootfs), backend=backend) as root:
                made = failed = 0
                for i in range(600):
                    try:
                        root.symlink("libcuda.so.1", f"/usr/lib/x86_64-linux-gnu/libcuda-{i}.so")
                        root.write_file(f"/usr/lib/x86_64-linux-gnu/conf-{i}", b"x")
                        made += 1
                    except SafePathError:
                        failed += 1
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    print(f"race: {made} made, {failed} refused")
    assert made + failed == 600
    host.assert_untouched()
    # Whatever was made is in the root: in the lib dir (wherever the swap left it), never in the host.
    in_root = [p for p in rootfs.rglob("*") if p.name.startswith(("libcuda-", "conf-"))]
    assert len(in_root) >= made


def test_walker_and_openat2_agree(tmp_path: Path) -> None:
    """The same hostile tree gives the same answers through both backends."""
    if not openat2_available():
        pytest.skip("openat2(2) is not available")
    rootfs = tmp_path / "r"
    (rootfs / "a" / "b").mkdir(parents=True)
    (rootfs / "a" / "b" / "f").write_text("f")
    os.symlink("/a", rootfs / "abs")
    os.symlink("../../../../a/b", rootfs / "a" / "rel")
    os.symlink("/abs/rel/f", rootfs / "chain")
    os.symlink("loop", rootfs / "loop")
    os.symlink("/a/b/f/x", rootfs / "notdir")
    paths = ["/abs/b/f", "/a/rel/f", "/chain", "/loop", "/notdir", "/abs/../a/b", "/a/rel/../b/f", "/missing/x"]
    results = {}
    for backend in BACKENDS:
        with Root.open(str(rootfs), backend=backend) as root:
            out = []
            for p in paths:
                try:
                    out.append(real(root, root.resolve(p)))
                except SafePathError as exc:
                    out.append(f"errno {exc.errno}")
            results[backend] = out
    assert results["openat2"] == results["walk"]
    assert results["walk"][:3] == [str(rootfs / "a/b/f")] * 3
    assert results["walk"][3] == f"errno {errno.ELOOP}"
    assert results["walk"][4] == f"errno {errno.ENOTDIR}"
