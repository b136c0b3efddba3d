"""Security tests: real attacks against the hooks and the runtime shim.

Each attack is an image layout (a rootfs on disk) or a bundle, run against the real code the way a
container start runs it: the hooks exactly as runc starts them (hook_entry's argv, path and env, the OCI
state on stdin, cwd = the untrusted rootfs), through real runc where the container's own procfs and
environment matter, and the real ``gpudoctor-runtime`` shim with the real runc behind it.

Every test proves that nothing outside the root was read, written or executed:
* a `HostCanary` tree (the shapes an escape would land in: a lib dir, ``char/``, ``etc/ld.so.conf.d``, a
  secret file) is snapshotted (content, mode, mtime) and watched with inotify, so an open or a directory
  listing counts as a touch, not only a write;
* the real host ``/etc/ld.so.cache`` and ``/etc/ld.so.conf.d`` are unchanged (autouse fixture);
* code the image supplies (an LD_PRELOAD/LD_AUDIT/LD_LIBRARY_PATH canary ``.so``, an ``/sbin/ldconfig``,
  a ``gpudoctor`` package in the rootfs) leaves a marker on the host if it ever runs;
and that the error message says what was wrong (asserted on its text).

CVE-2025-23266 ("NVIDIAScape"): runc <= 1.2 runs createContainer hooks from ``runc init`` after copying
the container's environment into its own, with the rootfs as cwd; a hook entry without ``env`` inherits
it, so ``ENV LD_PRELOAD=/proc/self/cwd/x.so`` in an image runs as host root before pivot_root. Debian 12's
runc 1.1.5 reproduces it: the negative controls below show the canary firing for an entry without
``env``, and the positive tests show gpudoctor's entries (which always carry ``env``) keep it out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.hooks import DROPIN_PATH, create_symlinks_hook, hook_entry, update_ldcache_hook
from gpudoctor.engine.safepath import openat2_available
from tests.engine.hook_kit import (
    RUNC,
    Bundle,
    HostCanary,
    build_canary,
    build_soname_lib,
    build_static,
    file_digest,
    interpreter_needed_libs,
    machine_is_x86_64_or_arm64,
    require_root,
    require_runc,
    run_hook,
    runc_bundle,
    runc_run,
)

LIBDIR = "/usr/lib/x86_64-linux-gnu"
RESOLVERS = ["openat2", "walk"]
MAGIC_MESSAGE = ("refusing to follow a symlink on procfs (a magic link such as /proc/<pid>/root leads out of the "
                 "container root)")


@pytest.fixture(autouse=True)
def host_ld_files_unchanged() -> Iterator[None]:
    """The real host's ld cache and ld.so.conf.d: the prize of an escaping update-ldcache."""
    cache = Path("/etc/ld.so.cache")
    before = (file_digest(cache) if cache.exists() else None, sorted(os.listdir("/etc/ld.so.conf.d")))
    yield
    after = (file_digest(cache) if cache.exists() else None, sorted(os.listdir("/etc/ld.so.conf.d")))
    assert after == before, "the host's /etc/ld.so.cache or /etc/ld.so.conf.d changed"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostCanary]:
    with HostCanary.create(tmp_path / "host") as canary:
        yield canary


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real library for the container (soname libgdprobe.so.1) and one that lives only on the host
    (soname libhostonly.so.1): if it ever shows up in a container's ld cache, ldconfig read the host."""
    require_root()
    d = tmp_path_factory.mktemp("libs")
    return {"probe": build_soname_lib(d), "hostonly": build_soname_lib(d, "libhostonly.so.1", "libhostonly.so.1")}


def _resolver(name: str) -> str:
    if name == "openat2" and not openat2_available():
        pytest.skip("openat2(2) is not available on this kernel")
    return name


def _escape_text(style: str, host: HostCanary, sub: str) -> str:
    target = f"{host.path}/{sub}".rstrip("/")
    if style == "absolute":
        return "/../../../../../.." + target
    if style == "dotdot":
        return "../" * 16 + target.lstrip("/")
    return target  # a plain absolute host path


def _cache_text(rootfs: Path) -> str:
    cache = rootfs / "etc" / "ld.so.cache"
    return cache.read_bytes().decode("latin-1") if cache.exists() else ""


# -- A. the library dir, /dev or an intermediate component symlinked out of the root ------------------------

# base -> (symlink in the image, host subdir it aims at, --link, where the link would land under it)
ESCAPES = {
    "libdir": ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", f"libcuda.so.1::{LIBDIR}/libcuda.so",
               "libcuda.so"),
    "dev": ("dev", "", "../nvidia0::/dev/char/195:0", "char/195:0"),
    "usr": ("usr", "", f"libcuda.so.1::{LIBDIR}/libcuda.so", "lib/x86_64-linux-gnu/libcuda.so"),
}


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("style", ["absolute", "dotdot", "plain"])
@pytest.mark.parametrize("base", sorted(ESCAPES))
def test_component_symlinked_out_of_the_root(tmp_path: Path, host: HostCanary, base: str, style: str,
                                             resolver: str) -> None:
    """The host tree has exactly the dirs the link would need, so an escape would succeed there."""
    image_link, sub, spec, lands = ESCAPES[base]
    bundle = Bundle.create(tmp_path / "bundle")
    link = bundle.rootfs / image_link
    link.parent.mkdir(parents=True, exist_ok=True)
    text = _escape_text(style, host, sub)
    os.symlink(text, link)
    proc = run_hook(bundle, "create-symlinks", [f"--resolver={_resolver(resolver)}", f"--link={spec}"])
    assert proc.returncode == 1
    component = "/" + image_link
    assert proc.stderr.endswith(f"{component}: is a symlink to '{text}', which does not exist inside the "
                                "container root\n"), proc.stderr
    assert "Traceback" not in proc.stderr
    host.assert_untouched()


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("style", ["absolute", "dotdot", "plain"])
@pytest.mark.parametrize("base", sorted(ESCAPES))
def test_symlinked_component_resolves_to_the_same_path_inside_the_root(
        tmp_path: Path, host: HostCanary, base: str, style: str, resolver: str) -> None:
    """With the same directories inside the image, the link means the in-root path (chroot semantics):
    the hook succeeds and its link lands there, never in the host tree."""
    image_link, sub, spec, lands = ESCAPES[base]
    bundle = Bundle.create(tmp_path / "bundle")
    mirror = bundle.rootfs / str(host.path).lstrip("/") / sub
    (mirror / os.path.dirname(lands)).mkdir(parents=True, exist_ok=True)
    link = bundle.rootfs / image_link
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(_escape_text(style, host, sub), link)
    proc = run_hook(bundle, "create-symlinks", [f"--resolver={_resolver(resolver)}", f"--link={spec}"])
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(mirror / lands) == spec.split("::")[0]
    host.assert_untouched()


@pytest.mark.parametrize("base", sorted(ESCAPES))
def test_magic_link_through_the_containers_procfs(tmp_path: Path, host: HostCanary, base: str) -> None:
    """Through real runc, which has mounted the container's procfs at <rootfs>/proc before createContainer
    hooks run: /proc/self/root is the hook's own root, the host's "/". Refused, and the container fails."""
    require_runc()
    image_link, sub, spec, _ = ESCAPES[base]
    target, link = spec.split("::")
    bundle = runc_bundle(tmp_path / "bundle", hooks={"createContainer": [create_symlinks_hook([(target, link)])]})
    path = bundle.rootfs / image_link
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"/proc/self/root{host.path}/{sub}".rstrip("/"), path)
    if base == "dev":  # runc mounts a tmpfs over /dev: aim the device link through a dir runc leaves alone
        os.unlink(path)
        (bundle.rootfs / "dev").mkdir()
        os.symlink(f"/proc/self/root{host.path}", bundle.rootfs / "devlinks")
        target, link = "../nvidia0", "/devlinks/char/195:0"
        bundle.config["hooks"] = {"createContainer": [create_symlinks_hook([(target, link)])]}
    proc = runc_run(bundle, tmp_path / "state", f"gd-magic-{base}")
    assert proc.returncode != 0
    assert "error running hook" in proc.stderr
    assert MAGIC_MESSAGE in proc.stderr
    host.assert_untouched()


def test_magic_link_to_another_process_root_and_cwd(tmp_path: Path, host: HostCanary) -> None:
    """/proc/1/root and /proc/1/cwd (pid 1 of the container is runc init, still on the host root)."""
    require_runc()
    hooks = {"createContainer": [create_symlinks_hook([("x", "/a/link"), ("y", "/b/link")])]}
    bundle = runc_bundle(tmp_path / "bundle", hooks=hooks)
    os.symlink(f"/proc/1/root{host.path}/watch", bundle.rootfs / "a")
    os.symlink("/proc/1/cwd", bundle.rootfs / "b")
    proc = runc_run(bundle, tmp_path / "state", "gd-magic-pid1")
    assert proc.returncode != 0
    assert MAGIC_MESSAGE in proc.stderr
    host.assert_untouched()


# -- B. a target file that is a symlink to a host file -------------------------------------------------------


def test_link_path_is_a_symlink_to_a_host_file(tmp_path: Path, host: HostCanary) -> None:
    bundle = Bundle.create(tmp_path / "bundle")
    lib = bundle.rootfs / LIBDIR.lstrip("/")
    lib.mkdir(parents=True)
    os.symlink(str(host.path / "secret.txt"), lib / "libcuda.so")
    proc = run_hook(bundle, "create-symlinks", [f"--link=libcuda.so.1::{LIBDIR}/libcuda.so"])
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(lib / "libcuda.so") == "libcuda.so.1"  # the link was replaced, not written through
    host.assert_untouched()


def test_ld_files_that_are_symlinks_to_host_files(tmp_path: Path, host: HostCanary, libs: dict[str, Path]) -> None:
    """The drop-in, ld.so.cache and ld.so.conf each a symlink to a host file: the drop-in and the cache
    replace the links inside the root; the host's conf (naming a host lib dir) is never even opened."""
    bundle = Bundle.create(tmp_path / "bundle")
    shutil.copy(libs["hostonly"], host.path / "lib" / "x86_64-linux-gnu")  # before the watch: see below
    host.stop()
    with HostCanary(path=host.path) as watched:
        etc = bundle.rootfs / "etc"
        (etc / "ld.so.conf.d").mkdir(parents=True)
        os.symlink(str(host.path / "secret.txt"), bundle.rootfs / DROPIN_PATH.lstrip("/"))
        os.symlink(str(host.path / "etc" / "ld.so.cache"), etc / "ld.so.cache")
        os.symlink(str(host.path / "etc" / "ld.so.conf.d" / "host.conf"), etc / "ld.so.conf")
        lib = bundle.rootfs / "opt" / "gd"
        lib.mkdir(parents=True)
        shutil.copy(libs["probe"], lib)
        proc = run_hook(bundle, "update-ldcache", ["--folder=/opt/gd"])
        assert proc.returncode == 0, proc.stderr
        assert not (bundle.rootfs / DROPIN_PATH.lstrip("/")).is_symlink()
        assert not (etc / "ld.so.cache").is_symlink()
        cache = _cache_text(bundle.rootfs)
        assert "libgdprobe.so.1" in cache and "libhostonly" not in cache
        watched.assert_untouched()


# -- C. symlink loops ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_symlink_loop(tmp_path: Path, host: HostCanary, resolver: str) -> None:
    bundle = Bundle.create(tmp_path / "bundle")
    (bundle.rootfs / "usr" / "lib").mkdir(parents=True)
    os.symlink("loop1", bundle.rootfs / "usr" / "lib" / "x86_64-linux-gnu")
    os.symlink("/usr/lib/loop2", bundle.rootfs / "usr" / "lib" / "loop1")  # absolute, restarts at the root
    os.symlink("../../../../..//usr/./lib/x86_64-linux-gnu", bundle.rootfs / "usr" / "lib" / "loop2")  # ..-climb
    proc = run_hook(bundle, "create-symlinks", [f"--resolver={_resolver(resolver)}",
                                                f"--link=libcuda.so.1::{LIBDIR}/libcuda.so"])
    assert proc.returncode == 1
    assert "symlink loop (more than 40 links)" in proc.stderr
    host.assert_untouched()


def test_ld_so_conf_d_loop(tmp_path: Path, host: HostCanary) -> None:
    require_root()
    bundle = Bundle.create(tmp_path / "bundle")
    (bundle.rootfs / "etc").mkdir()
    os.symlink("/etc/ld.so.conf.d", bundle.rootfs / "etc" / "ld.so.conf.d")  # itself, seen from inside
    proc = run_hook(bundle, "update-ldcache", [f"--folder={LIBDIR}"])
    assert proc.returncode == 1
    assert ("gpudoctor hook update-ldcache: error: cannot use /etc/ld.so.conf.d in the container: "
            "/etc/ld.so.conf.d: symlink loop (more than 40 links)") in proc.stderr
    host.assert_untouched()


# -- D. a FIFO where a library (or a config file) should be --------------------------------------------------


def test_fifo_at_a_link_path(tmp_path: Path, host: HostCanary) -> None:
    bundle = Bundle.create(tmp_path / "bundle")
    lib = bundle.rootfs / LIBDIR.lstrip("/")
    lib.mkdir(parents=True)
    os.mkfifo(lib / "libcuda.so")
    proc = run_hook(bundle, "create-symlinks", [f"--link=libcuda.so.1::{LIBDIR}/libcuda.so"], timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.endswith(f"{LIBDIR}/libcuda.so: is a FIFO; refusing to replace it with a symlink\n")
    host.assert_untouched()


@pytest.mark.parametrize(("layout", "message"), [
    ("fifo-lib", None),  # a bare FIFO entry: ldconfig skips it by d_type; the start goes on
    ("link-to-fifo", f"{LIBDIR}/libcuda.so.1 in the container is a symlink to a FIFO (ldconfig would block on it)"),
    ("fifo-conf", "/etc/ld.so.conf in the container is a FIFO, not a regular file"),
    ("fifo-dropin-dir", "/etc/ld.so.conf.d/nvidia.conf in the container is a FIFO, not a regular file"),
    ("device-conf", "/etc/ld.so.conf in the container is a device node, not a regular file"),
])
def test_fifo_where_ldconfig_would_read(tmp_path: Path, host: HostCanary, libs: dict[str, Path], layout: str,
                                        message: str | None) -> None:
    """ldconfig blocks forever in open(2) on these (verified with glibc 2.36); they are refused up front
    with a message instead of hanging the container start."""
    require_root()
    bundle = Bundle.create(tmp_path / "bundle")
    lib = bundle.rootfs / LIBDIR.lstrip("/")
    lib.mkdir(parents=True)
    (bundle.rootfs / "etc" / "ld.so.conf.d").mkdir(parents=True)
    shutil.copy(libs["probe"], lib)
    if layout == "fifo-lib":
        os.mkfifo(lib / "libnvidia-ml.so.1")
    elif layout == "link-to-fifo":
        os.mkfifo(lib / "fifo")
        os.symlink("fifo", lib / "libcuda.so.1")
    elif layout == "fifo-conf":
        os.mkfifo(bundle.rootfs / "etc" / "ld.so.conf")
    elif layout == "fifo-dropin-dir":
        os.mkfifo(bundle.rootfs / "etc" / "ld.so.conf.d" / "nvidia.conf")
    else:
        os.mknod(bundle.rootfs / "etc" / "ld.so.conf", 0o020600, os.makedev(1, 5))  # /dev/zero
    proc = run_hook(bundle, "update-ldcache", [f"--folder={LIBDIR}"], timeout=60)
    if message is None:
        assert proc.returncode == 0, proc.stderr
        assert "libgdprobe.so.1" in _cache_text(bundle.rootfs)
    else:
        assert proc.returncode == 1
        assert f"gpudoctor hook update-ldcache: error: refusing to run ldconfig: {message}" in proc.stderr
        assert not (bundle.rootfs / "etc" / "ld.so.cache").exists()
    host.assert_untouched()


# -- E. /etc/ld.so.conf.d symlinked to the host -------------------------------------------------------------


@pytest.mark.parametrize("style", ["absolute", "dotdot", "plain"])
def test_ld_so_conf_d_symlinked_to_a_host_dir(tmp_path: Path, host: HostCanary, style: str) -> None:
    """CVE-2025-23267's layout: the drop-in would land in the host's conf dir. Refused; nothing read."""
    require_root()
    bundle = Bundle.create(tmp_path / "bundle")
    (bundle.rootfs / "etc").mkdir()
    text = _escape_text(style, host, "etc/ld.so.conf.d")
    os.symlink(text, bundle.rootfs / "etc" / "ld.so.conf.d")
    proc = run_hook(bundle, "update-ldcache", [f"--folder={LIBDIR}"])
    assert proc.returncode == 1
    assert proc.stderr == (f"gpudoctor hook update-ldcache: error: cannot write {DROPIN_PATH} in the container: "
                           f"/etc/ld.so.conf.d: is a symlink to '{text}', which does not exist inside the "
                           "container root\n")
    host.assert_untouched()


def test_ld_so_conf_d_symlink_means_the_in_root_dir(tmp_path: Path, host: HostCanary, libs: dict[str, Path]) -> None:
    require_root()
    bundle = Bundle.create(tmp_path / "bundle")
    (bundle.rootfs / "etc").mkdir()
    mirror = bundle.rootfs / str(host.path).lstrip("/") / "etc" / "ld.so.conf.d"
    mirror.mkdir(parents=True)
    os.symlink(_escape_text("absolute", host, "etc/ld.so.conf.d"), bundle.rootfs / "etc" / "ld.so.conf.d")
    (bundle.rootfs / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (bundle.rootfs / "opt").mkdir()
    shutil.copy(libs["probe"], bundle.rootfs / "opt")
    proc = run_hook(bundle, "update-ldcache", ["--folder=/opt"])
    assert proc.returncode == 0, proc.stderr
    assert (mirror / "00-gpudoctor.conf").read_text().endswith("/opt\n")
    assert "/opt/libgdprobe.so.1" in _cache_text(bundle.rootfs)
    host.assert_untouched()


def test_ldconfig_cannot_reach_the_host_through_proc(tmp_path: Path, host: HostCanary, libs: dict[str, Path]) -> None:
    """Through real runc: the image's ld.so.conf includes the host's conf dir and names the host's lib dir
    through /proc/1/root (runc init's root is still the host's "/" when createContainer hooks run). The
    confined ldconfig sees an empty tmpfs over /proc: the host library stays out of the container's cache
    and the host tree is never opened."""
    require_runc()
    host.stop()
    shutil.copy(libs["hostonly"], host.path / "lib" / "x86_64-linux-gnu")
    with HostCanary(path=host.path) as watched:
        bundle = runc_bundle(tmp_path / "bundle", hooks={"createContainer": [update_ldcache_hook([LIBDIR])]})
        (bundle.rootfs / LIBDIR.lstrip("/")).mkdir(parents=True)
        shutil.copy(libs["probe"], bundle.rootfs / LIBDIR.lstrip("/"))
        (bundle.rootfs / "etc" / "ld.so.conf").write_text(
            f"include /proc/1/root{host.path}/etc/ld.so.conf.d/*.conf\n/proc/1/root{host.path}/lib/x86_64-linux-gnu\n")
        os.symlink(f"/proc/1/root{host.path}/lib/x86_64-linux-gnu", bundle.rootfs / "usr" / "lib" / "hostlibs")
        proc = runc_run(bundle, tmp_path / "state", "gd-procfs-include")
        assert proc.returncode == 0, proc.stderr
        cache = _cache_text(bundle.rootfs)
        assert f"{LIBDIR}/libgdprobe.so.1" in cache
        assert "libhostonly" not in cache
        watched.assert_untouched()


def test_negative_control_chroot_alone_reaches_the_host(tmp_path: Path, libs: dict[str, Path]) -> None:
    """Why the procfs mask matters: a plain chroot into the same rootfs, as a createContainer hook, lists
    the host's lib dir through /proc/1/root, and the canary's inotify watch sees it."""
    require_runc()
    canary = HostCanary.create(tmp_path / "host")
    shutil.copy(libs["hostonly"], canary.path / "lib" / "x86_64-linux-gnu")
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if chroot is None:
        pytest.skip("needs chroot(8)")
    bundle = runc_bundle(tmp_path / "bundle")
    naive = {"path": chroot, "args": ["chroot", str(bundle.rootfs), "/bin/sh", "-c",
                                      f"ls /proc/1/root{canary.path}/lib/x86_64-linux-gnu > /ls.out"],
             "env": ["PATH=/bin"]}
    bundle.config["hooks"] = {"createContainer": [naive]}
    with canary:
        proc = runc_run(bundle, tmp_path / "state", "gd-naive-chroot")
        assert proc.returncode == 0, proc.stderr
    assert "libhostonly.so.1" in (bundle.rootfs / "ls.out").read_text()
    assert canary.events, "inotify did not see the listing: the oracle would be blind"


# -- F. the image's own ldconfig, and code planted where the hook starts -------------------------------------

EVIL_LDCONFIG_C = r"""
#include <fcntl.h>
#include <unistd.h>
int main(void) {
    close(open("/IMAGE_LDCONFIG_RAN", O_WRONLY | O_CREAT, 0644));
    close(open(HOST_MARKER, O_WRONLY | O_CREAT, 0644));
    return 0;
}
"""


def test_the_images_ldconfig_is_never_run(tmp_path: Path, host: HostCanary, libs: dict[str, Path]) -> None:
    """CVE-2024-0136/0137: an image that ships /sbin/ldconfig{,.real} (static, so they would run anywhere)."""
    require_runc()
    marker = tmp_path / "IMAGE_LDCONFIG_RAN_ON_HOST"
    evil = build_static(tmp_path, "evil-ldconfig", EVIL_LDCONFIG_C.replace("HOST_MARKER", json.dumps(str(marker))))
    bundle = runc_bundle(tmp_path / "bundle", env=["PATH=/sbin:/usr/sbin:/bin"],
                         hooks={"createContainer": [update_ldcache_hook([LIBDIR])]})
    for place in ("sbin/ldconfig", "sbin/ldconfig.real", "usr/sbin/ldconfig", "usr/sbin/ldconfig.real"):
        (bundle.rootfs / place).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(evil, bundle.rootfs / place)
    (bundle.rootfs / LIBDIR.lstrip("/")).mkdir(parents=True)
    shutil.copy(libs["probe"], bundle.rootfs / LIBDIR.lstrip("/"))
    proc = runc_run(bundle, tmp_path / "state", "gd-image-ldconfig")
    assert proc.returncode == 0, proc.stderr
    assert not (bundle.rootfs / "IMAGE_LDCONFIG_RAN").exists()
    assert not marker.exists()
    assert "libgdprobe.so.1" in _cache_text(bundle.rootfs)
    host.assert_untouched()


def test_a_python_package_planted_in_the_rootfs_is_not_imported(tmp_path: Path, host: HostCanary) -> None:
    """A createContainer hook starts with cwd = the rootfs; `-I` keeps it off sys.path."""
    marker = tmp_path / "PLANTED_PACKAGE_RAN"
    bundle = Bundle.create(tmp_path / "bundle")
    payload = f"open({str(marker)!r}, 'w').close()\n"
    for rel in ("gpudoctor/__init__.py", "gpudoctor/commands/__init__.py", "gpudoctor/commands/hook.py",
                "gpudoctor/engine/__init__.py", "gpudoctor/engine/hooks.py", "json.py", "ctypes/__init__.py",
                "os.py", "select.py", "struct.py", "sitecustomize.py", "usercustomize.py"):
        (bundle.rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle.rootfs / rel).write_text(payload)
    proc = run_hook(bundle, "create-symlinks", ["--link=libcuda.so.1::/usr/lib/libcuda.so"],
                    env_extra={"PYTHONPATH": str(bundle.rootfs), "PYTHONSTARTUP": str(bundle.rootfs / "os.py")})
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert os.readlink(bundle.rootfs / "usr" / "lib" / "libcuda.so") == "libcuda.so.1"
    host.assert_untouched()


# -- G. LD_PRELOAD / LD_LIBRARY_PATH / LD_AUDIT in the image config (CVE-2025-23266) -------------------------


def _loader_attack(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """A rootfs with a canary .so under every name the hook's interpreter would load; returns
    (marker, the image env that aims the loader at it, canary)."""
    if not machine_is_x86_64_or_arm64():
        pytest.skip("the canary .so is written for x86_64 and aarch64")
    marker = tmp_path / "OWNED"
    canary = build_canary(tmp_path, marker)
    return marker, [
        "PATH=/bin",
        "LD_PRELOAD=/proc/self/cwd/canary.so",
        "LD_AUDIT=/proc/self/cwd/canary.so",
        "LD_LIBRARY_PATH=/proc/self/cwd/evil",
    ], canary


def _plant(rootfs: Path, canary: Path) -> None:
    shutil.copy(canary, rootfs / "canary.so")
    (rootfs / "evil").mkdir()
    for name in interpreter_needed_libs():
        shutil.copy(canary, rootfs / "evil" / name)


def test_loader_variables_in_the_image_never_reach_the_hooks(tmp_path: Path, host: HostCanary,
                                                            libs: dict[str, Path]) -> None:
    require_runc()
    marker, env, canary = _loader_attack(tmp_path)
    hooks = {"createContainer": [create_symlinks_hook([("libgdprobe.so.1", f"{LIBDIR}/libgdprobe.so")]),
                                 update_ldcache_hook([LIBDIR])]}
    bundle = runc_bundle(tmp_path / "bundle", env=env, hooks=hooks)
    _plant(bundle.rootfs, canary)
    (bundle.rootfs / LIBDIR.lstrip("/")).mkdir(parents=True)
    shutil.copy(libs["probe"], bundle.rootfs / LIBDIR.lstrip("/"))
    for entry in hooks["createContainer"]:
        assert entry["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
    proc = runc_run(bundle, tmp_path / "state", "gd-nvidiascape")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "the image's loader variables reached a hook running as host root"
    assert os.readlink(bundle.rootfs / LIBDIR.lstrip("/") / "libgdprobe.so") == "libgdprobe.so.1"
    assert "libgdprobe.so.1" in _cache_text(bundle.rootfs)
    host.assert_untouched()


def _runc_minor() -> tuple[int, int]:
    out = subprocess.run([RUNC or "runc", "--version"], capture_output=True, text=True, check=False).stdout
    version = out.split()[2] if len(out.split()) > 2 else "0.0"
    major, minor = (version.split("+")[0].split(".") + ["0"])[:2]
    return int(major), int(minor)


@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"])
def test_negative_control_a_hook_without_env_is_owned(tmp_path: Path, variable: str) -> None:
    """The same attack against an entry without `env` (what NVIDIA's toolkit <= 1.17.7 emitted): on
    runc < 1.3 the canary runs inside the hook as host root. Proves the tests above can see the attack."""
    require_runc()
    if _runc_minor() >= (1, 3):
        pytest.skip("runc >= 1.3 starts createContainer hooks with an empty environment")
    marker, env, canary = _loader_attack(tmp_path)
    if variable == "LD_LIBRARY_PATH" and not interpreter_needed_libs():
        pytest.skip("this Python links nothing but libc, so LD_LIBRARY_PATH has nothing to replace")
    env = [e for e in env if e.startswith(("PATH=", variable + "="))]
    vulnerable = {"path": sys.executable, "args": [sys.executable, "-I", "-S", "-c", "pass"]}  # no "env"
    bundle = runc_bundle(tmp_path / "bundle", env=env, hooks={"createContainer": [vulnerable]})
    _plant(bundle.rootfs, canary)
    runc_run(bundle, tmp_path / "state", f"gd-control-{variable.lower()}")
    assert marker.exists(), f"{variable} in the image did not reach a hook without env on this runc"


def test_a_gpudoctor_hook_that_lost_its_env_refuses_loudly(tmp_path: Path, host: HostCanary) -> None:
    """Defense in depth: if an entry was emitted without env, the hook itself refuses to run and says why."""
    require_runc()
    if _runc_minor() >= (1, 3):
        pytest.skip("runc >= 1.3 starts createContainer hooks with an empty environment")
    entry = hook_entry("create-symlinks", ["--link=x::/y"])
    del entry["env"]
    bundle = runc_bundle(tmp_path / "bundle", env=["PATH=/bin", "LD_LIBRARY_PATH=/nonexistent"],
                         hooks={"createContainer": [entry]})
    proc = runc_run(bundle, tmp_path / "state", "gd-lost-env")
    assert proc.returncode != 0
    assert "refusing to run: LD_LIBRARY_PATH is set in the hook's environment" in proc.stderr
    assert "CVE-2025-23266" in proc.stderr
    assert not (bundle.rootfs / "y").exists()
    host.assert_untouched()


# -- H. hostile inputs to the shim: NVIDIA_VISIBLE_DEVICES and config.json -----------------------------------


class RealShim:
    """gpudoctor-runtime with the real runc behind it, a kit driver root and a private runc state dir."""

    def __init__(self, base: Path, driver_root: Path) -> None:
        from gpudoctor.engine.settings import Settings, render_settings

        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.state = base / "runc-state"
        self.settings = base / "runtime.toml"
        self.settings.write_text(render_settings(Settings(runc=str(RUNC), driver_root=str(driver_root),
                                                          log_file="", cache_dir=str(base / "cache"))))

    def run(self, bundle: Path, cid: str, verb: str = "run") -> subprocess.CompletedProcess[str]:
        from gpudoctor.engine.hooks import entry_script

        argv = [sys.executable, "-I", "-S", entry_script(), "runtime", "--root", str(self.state), verb,
                "--bundle", str(bundle), cid]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GPUDOCTOR_RUNTIME_CONFIG": str(self.settings)}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL, check=False)
        subprocess.run([str(RUNC), "--root", str(self.state), "delete", "--force", cid], capture_output=True,
                       check=False)
        return proc

    def containers(self) -> list[Any]:
        out = subprocess.run([str(RUNC), "--root", str(self.state), "list", "--format", "json"],
                             capture_output=True, text=True, check=False).stdout.strip()
        return json.loads(out) if out and out != "null" else []


@pytest.fixture
def shim(tmp_path: Path, kit_host: Any) -> RealShim:
    require_runc()
    return RealShim(tmp_path / "shim", kit_host.root)


@pytest.mark.parametrize(("value", "message"), [
    ("../x", "NVIDIA_VISIBLE_DEVICES: '../x' is not a GPU index"),
    ("0/../../../dev/sda", "NVIDIA_VISIBLE_DEVICES: '0/../../../dev/sda' is not a GPU index"),
    ("\u0660", "NVIDIA_VISIBLE_DEVICES='\\u0660' contains non-ASCII or control characters"),  # Arabic-Indic zero
    ("\u0661,0", "contains non-ASCII or control characters"),
    ("all\n", "NVIDIA_VISIBLE_DEVICES='all\\n' contains non-ASCII or control characters"),
    ("GPU-../../etc", "NVIDIA_VISIBLE_DEVICES: 'GPU-../../etc' is not a GPU index"),
    ("0" * (1 << 20), "NVIDIA_VISIBLE_DEVICES is 1048576 characters long; the limit is 4096"),
], ids=["dotdot", "dev-path", "arabic-indic-zero", "arabic-indic-one-list", "newline", "uuid-dotdot", "1MiB"])
def test_hostile_visible_devices(tmp_path: Path, host: HostCanary, shim: RealShim, value: str, message: str) -> None:
    bundle = runc_bundle(tmp_path / "bundle", env=["PATH=/bin", f"NVIDIA_VISIBLE_DEVICES={value}"])
    before = (bundle.path / "config.json").read_bytes()
    proc = shim.run(bundle.path, "gd-hostile-env")
    assert proc.returncode == 1
    assert proc.stderr.startswith("gpudoctor-runtime: ")
    assert message in proc.stderr
    assert len(proc.stderr) < 2000  # a 1 MiB value is not echoed back
    assert "Traceback" not in proc.stderr
    assert (bundle.path / "config.json").read_bytes() == before
    assert sorted(os.listdir(bundle.path)) == ["config.json", "rootfs"]
    assert shim.containers() == []  # runc never ran
    host.assert_untouched()


def _deep(n: int) -> bytes:
    return b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}, "x": ' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize(("name", "message"), [
    ("invalid", "config.json is not valid JSON: Expecting ',' delimiter at line 1 column 50"),
    ("duplicate-keys", "config.json has the key 'process' twice in one object"),
    ("deep", "config.json is nested too deeply to be an OCI spec"),
    ("huge", "config.json' is larger than 16 MiB"),
    ("nan", "config.json contains NaN, which is not valid JSON"),
    ("top-level-array", "config.json must hold a JSON object, not list"),
])
def test_hostile_config_json(tmp_path: Path, host: HostCanary, shim: RealShim, name: str, message: str) -> None:
    bundle = runc_bundle(tmp_path / "bundle")
    cfg = bundle.path / "config.json"
    data = {
        "invalid": b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}',
        "duplicate-keys": b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}, "process": {"env": []}}',
        "deep": _deep(10_000),
        "huge": b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}, "pad": "' + b"x" * (17 << 20) + b'"}',
        "nan": b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}, "x": NaN}',
        "top-level-array": b'[{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}}]',
    }[name]
    cfg.write_bytes(data)
    proc = shim.run(bundle.path, f"gd-hostile-{name}")
    assert proc.returncode == 1
    assert proc.stderr.startswith("gpudoctor-runtime: ")
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 2000
    assert cfg.read_bytes() == data
    assert shim.containers() == []
    host.assert_untouched()


@pytest.mark.parametrize("name", ["invalid", "duplicate-keys", "deep", "huge"])
def test_hostile_config_json_given_to_the_hooks(tmp_path: Path, host: HostCanary, name: str) -> None:
    bundle = Bundle.create(tmp_path / "bundle")
    cfg = bundle.path / "config.json"
    data = {
        "invalid": b'{"root": {"path": "rootfs"}',
        "duplicate-keys": b'{"root": {"path": "rootfs"}, "root": {"path": "/"}}',
        "deep": b'{"root": {"path": "rootfs"}, "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "huge": None,
    }[name]
    if data is None:
        with open(cfg, "wb") as f:  # sparse: 65 MiB without writing it
            f.truncate(65 << 20)
    else:
        cfg.write_bytes(data)
    before = file_digest(cfg)
    proc = run_hook(bundle, "create-symlinks", ["--link=a::/b"])
    assert proc.returncode == 1
    expected = {
        "invalid": f"{cfg}: is not valid JSON: Expecting ',' delimiter (line 1, column 28)",
        "duplicate-keys": f"{cfg}: is ambiguous JSON: duplicate key 'root'",
        "deep": f"{cfg}: is nested too deeply to be a real document",
        "huge": f"{cfg} is {65 << 20} bytes; refusing to read more than {64 << 20}",
    }[name]
    assert proc.stderr == f"gpudoctor hook create-symlinks: error: {expected}\n"
    assert file_digest(cfg) == before
    assert not (bundle.rootfs / "b").exists()
    host.assert_untouched()


# -- I. a bundle path with spaces ---------------------------------------------------------------------------


def test_bundle_path_with_spaces_through_the_shim_and_runc(tmp_path: Path, host: HostCanary, shim: RealShim) -> None:
    """A GPU container (kit driver, GPU 0) started by gpudoctor-runtime with real runc from a bundle whose
    path has spaces: the spec is edited, runc runs it, the hooks run inside it."""
    bundle = runc_bundle(tmp_path / "a bundle  with spaces", env=["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=0"],
                         args=["/bin/sh", "-c", "test -c /dev/nvidia0 && cat /etc/ld.so.conf.d/00-gpudoctor.conf"])
    proc = shim.run(bundle.path, "gd-spaces")
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((bundle.path / "config.json").read_text())
    assert "/dev/nvidia0" in [d["path"] for d in spec["linux"]["devices"]]
    hook_args = [a for h in spec["hooks"]["createContainer"] for a in h["args"]]
    assert "update-ldcache" in hook_args
    assert all(h["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"] for h in spec["hooks"]["createContainer"])
    assert proc.stdout.startswith("# written by gpudoctor hook update-ldcache")
    assert shim.containers() == []
    host.assert_untouched()
