"""Helpers for the safepath, hook and attack tests.

* `HostCanary`: a host directory outside every container root, filled with files of known content, that a
  test proves untouched: a snapshot (type, mode, size, mtime, sha256 / link text) before and after, and an
  inotify watch on every directory in it that records any open, read, write, create, delete, move or
  attribute change made by anyone while the attack runs.
* `Bundle`: an OCI bundle directory (``config.json`` + ``rootfs``), optionally with spaces in its path.
* `run_hook`: runs a hook exactly the way runc does: the argv, path and env of `hook_entry`, the OCI state
  on stdin, and the cwd set to the container rootfs.
* `runc_run`: a real ``runc run`` of a bundle whose rootfs holds busybox-static.
* gcc builders: a canary ``.so`` (no libc; writes a marker file when loaded, whatever its soname), a small
  shared library with a soname, and static C programs.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.hooks import hook_entry

RUNC = shutil.which("runc", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")
BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin")
HOOK_ENTRY_ENV = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, chroot, mounts, runc)")


def require_gcc() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the test binaries")


def require_runc() -> str:
    require_root()
    if RUNC is None:
        pytest.skip("needs runc (apt-get install runc)")
    if BUSYBOX is None or not _is_static(Path(BUSYBOX)):
        pytest.skip("needs busybox-static for the container rootfs")
    return RUNC


def _is_static(path: Path) -> bool:
    data = path.read_bytes()[:4096]
    return data[:4] == b"\x7fELF" and b"ld-linux" not in data


# -- host canaries --------------------------------------------------------------------------------------------

_IN_ACCESS, _IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
_IN_OPEN, _IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE = 0x20, 0x40, 0x80, 0x100
_IN_DELETE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x200, 0x400, 0x800
_WATCH_MASK = (_IN_ACCESS | _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_OPEN | _IN_MOVED_FROM | _IN_MOVED_TO
               | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF)
_EVENT_NAMES = {_IN_ACCESS: "read", _IN_MODIFY: "write", _IN_ATTRIB: "attrib", _IN_CLOSE_WRITE: "close-write",
                _IN_OPEN: "open", _IN_MOVED_FROM: "moved-from", _IN_MOVED_TO: "moved-to", _IN_CREATE: "create",
                _IN_DELETE: "delete", _IN_DELETE_SELF: "delete-self", _IN_MOVE_SELF: "move-self"}


class _Inotify:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths: dict[int, str] = {}

    def watch(self, path: Path) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _WATCH_MASK)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.paths[wd] = str(path)

    def events(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off < len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, off)
                name = data[off + 16: off + 16 + length].rstrip(b"\0").decode(errors="replace")
                off += 16 + length
                kinds = [n for bit, n in _EVENT_NAMES.items() if mask & bit]
                if kinds:
                    out.append(f"{'+'.join(kinds)} {os.path.join(self.paths.get(wd, '?'), name)}")

    def close(self) -> None:
        os.close(self.fd)


class HostCanary:
    """A host tree that attacks aim at; it must stay byte-for-byte and event-for-event untouched.

    Layout (all under `path`): ``secret.txt``, ``watch/`` (empty), ``lib/x86_64-linux-gnu/libhost.so.1``,
    ``char/``, ``etc/ld.so.conf.d/host.conf`` and ``etc/ld.so.cache``: the shapes a container path would
    have if an escape landed here, so a naive implementation really would write into it.
    """

    SECRET = b"host secret - must never change\n"

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self._before: dict[str, tuple[Any, ...]] = {}
        self._inotify: _Inotify | None = None
        self.events: list[str] = []

    @classmethod
    def create(cls, path: Path) -> HostCanary:
        (path / "watch").mkdir(parents=True)
        (path / "secret.txt").write_bytes(cls.SECRET)
        (path / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
        (path / "lib" / "x86_64-linux-gnu" / "libhost.so.1").write_bytes(b"not really a library\n")
        (path / "char").mkdir()
        (path / "etc" / "ld.so.conf.d").mkdir(parents=True)
        (path / "etc" / "ld.so.conf.d" / "host.conf").write_text(f"{path}/lib/x86_64-linux-gnu\n")
        (path / "etc" / "ld.so.cache").write_bytes(b"host cache\n")
        old = 1_600_000_000_000_000_000  # a fixed, old mtime: any write would move it
        for p in sorted(path.rglob("*"), reverse=True):
            os.utime(p, ns=(old, old), follow_symlinks=False)
        os.utime(path, ns=(old, old))
        return cls(path=path)

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {}
        for p in [self.path, *sorted(self.path.rglob("*"))]:
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                extra: Any = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            else:
                extra = None
            out[str(p)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
                           st.st_uid, extra)
        return out

    def __enter__(self) -> HostCanary:
        self._before = self.snapshot()
        self._inotify = _Inotify()
        for p in [self.path, *self.path.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                self._inotify.watch(p)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._inotify is not None:
            self.events += self._inotify.events()
            self._inotify.close()
            self._inotify = None

    def assert_untouched(self) -> None:
        """Nothing in the tree was opened, read, written, created, removed or changed."""
        self.stop()
        assert self.events == [], f"the host canary tree was touched: {self.events}"
        after = self.snapshot()
        assert after == self._before, _diff(self._before, after)


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = ["the host canary tree changed:"]
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            lines.append(f"  {key}: {before.get(key)} -> {after.get(key)}")
    return "\n".join(lines)


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256, mtime_ns) of a host file, for host files outside a canary tree (e.g. /etc/ld.so.cache)."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# -- bundles and hooks ----------------------------------------------------------------------------------------


class Bundle:
    """An OCI bundle: `path`/config.json with root.path ``rootfs`` (relative, as Docker writes it)."""

    def __init__(self, *, path: Path, config: dict[str, Any]) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.config = config

    @classmethod
    def create(cls, path: Path, *, config: dict[str, Any] | None = None) -> Bundle:
        (path / "rootfs").mkdir(parents=True)
        bundle = cls(path=path, config=config or {"ociVersion": "1.0.2", "root": {"path": "rootfs"}})
        bundle.write_config()
        return bundle

    def write_config(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))

    def state(self, *, pid: int = 0, status: str = "creating") -> bytes:
        return json.dumps({"ociVersion": "1.0.2", "id": "gpudoctor-test", "status": status, "pid": pid,
                           "bundle": str(self.path), "annotations": {}}).encode()


def hook_env(entry: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in entry["env"])
    env.update(extra or {})
    return env


def run_hook(bundle: Bundle, kind: str, args: list[str], *, state: bytes | None = None,
             env_extra: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the hook as runc would: hook_entry's argv/path/env, state on stdin, cwd = the rootfs."""
    entry = hook_entry(kind, args)
    return subprocess.run(entry["args"], executable=entry["path"], env=hook_env(entry, env_extra),
                          input=(bundle.state() if state is None else state).decode(), cwd=bundle.rootfs,
                          capture_output=True, text=True, timeout=timeout, check=False)


def busybox_rootfs(rootfs: Path) -> None:
    """A minimal container root: static busybox as /bin/sh and its applets."""
    assert BUSYBOX is not None
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "true", "cat", "ls", "readlink", "test"):
        os.symlink("busybox", rootfs / "bin" / applet)
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (rootfs / d).mkdir(exist_ok=True)


_SPEC_CACHE: dict[str, Any] = {}


def runc_spec() -> dict[str, Any]:
    """`runc spec`'s default config, non-interactive (cached for the session)."""
    if not _SPEC_CACHE:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([RUNC or "runc", "spec"], cwd=tmp, check=True, capture_output=True)
            spec = json.loads(Path(tmp, "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["root"] = {"path": "rootfs", "readonly": False}
        spec.pop("hostname", None)
        _SPEC_CACHE.update(spec)
    return json.loads(json.dumps(_SPEC_CACHE))


def runc_bundle(path: Path, *, args: list[str] | None = None, env: list[str] | None = None,
                hooks: dict[str, list[dict[str, Any]]] | None = None) -> Bundle:
    """A bundle runc can run: busybox rootfs, `args` as the process, `env`, `hooks`."""
    spec = runc_spec()
    spec["process"]["args"] = args or ["/bin/true"]
    spec["process"]["env"] = env or ["PATH=/bin"]
    if hooks:
        spec["hooks"] = hooks
    bundle = Bundle.create(path, config=spec)
    busybox_rootfs(bundle.rootfs)
    return bundle


def runc_run(bundle: Bundle, state_root: Path, cid: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`runc run` of the bundle (foreground; runc deletes the container when it exits)."""
    assert RUNC is not None
    bundle.write_config()
    proc = subprocess.run([RUNC, "--root", str(state_root), "run", "--bundle", str(bundle.path), cid],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    subprocess.run([RUNC, "--root", str(state_root), "delete", "--force", cid], capture_output=True, check=False)
    return proc


# -- gcc-built test binaries ----------------------------------------------------------------------------------

CANARY_C = r"""
/* Writes MARKER (an absolute host path) when loaded. No libc: it loads under any soname and even as
   LD_AUDIT, and fires from its constructor before anything can fail. */
#if defined(__x86_64__)
#define NR_OPENAT 257
#define NR_WRITE 1
#define NR_CLOSE 3
static long sc4(long n, long a, long b, long c, long d) {
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
#define NR_OPENAT 56
#define NR_WRITE 64
#define NR_CLOSE 57
static long sc4(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#error "canary: unsupported architecture"
#endif
__attribute__((constructor)) static void owned(void) {
    long fd = sc4(NR_OPENAT, -100, (long)MARKER, 01 | 0100 | 02000, 0644); /* O_WRONLY|O_CREAT|O_APPEND */
    if (fd >= 0) { sc4(NR_WRITE, fd, (long)"owned\n", 6, 0); sc4(NR_CLOSE, fd, 0, 0, 0); }
}
unsigned int la_version(unsigned int v) { return v; }
"""


def build_canary(workdir: Path, marker: Path, *, name: str = "canary.so") -> Path:
    """A canary shared object that appends to `marker` whenever it is loaded into a process."""
    require_gcc()
    src = workdir / "canary.c"
    src.write_text(CANARY_C)
    out = workdir / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-O2", f'-DMARKER="{marker}"', "-o", str(out),
                    str(src)], check=True, capture_output=True)
    return out


def build_soname_lib(workdir: Path, soname: str = "libgdprobe.so.1", filename: str = "libgdprobe.so.1.2.3") -> Path:
    """A real shared library whose DT_SONAME is `soname` (for ld cache tests)."""
    require_gcc()
    src = workdir / "gdprobe.c"
    src.write_text("int gd_probe(void) { return 42; }\n")
    out = workdir / filename
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), str(src)], check=True,
                   capture_output=True)
    return out


def build_static(workdir: Path, name: str, source: str) -> Path:
    """A static executable from C `source` (skips when static glibc is not installed)."""
    require_gcc()
    src = workdir / f"{name}.c"
    src.write_text(source)
    out = workdir / name
    proc = subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a static binary (libc6-dev static libs missing?): {proc.stderr[-300:]}")
    return out


def interpreter_needed_libs() -> list[str]:
    """DT_NEEDED sonames of this Python interpreter other than libc and the dynamic loader."""
    proc = subprocess.run(["ldd", sys.executable], capture_output=True, text=True, check=False)
    names = []
    for line in proc.stdout.splitlines():
        name = line.strip().split(" ", 1)[0]
        if name.startswith("lib") and not name.startswith(("libc.so", "libm.so")) and ".so" in name:
            names.append(name)
    return names


def machine_is_x86_64_or_arm64() -> bool:
    return platform.machine() in ("x86_64", "aarch64")


def iter_tree(path: Path) -> Iterator[str]:
    for p in sorted(path.rglob("*")):
        yield str(p.relative_to(path))
