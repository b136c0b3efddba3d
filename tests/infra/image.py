"""Small container images built from host files, with no registry: busybox-static plus the host's glibc.

No registry is reachable, so images are root filesystems assembled here and loaded with ``docker import``
(or ``podman import``, see tests.infra.podman). Nothing NVIDIA goes in unless a test adds it.
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tests.infra.system import InfraError

if TYPE_CHECKING:
    from tests.infra.dockerd import DockerDaemon

# Applets linked into /usr/bin. A curated set (not `busybox --list`): applets such as dpkg, rpm or
# modprobe would make a test image look like something it is not.
APPLETS = (
    "sh", "ash", "ls", "cat", "stat", "readlink", "realpath", "test", "[", "[[", "env", "id", "mount",
    "umount", "echo", "printf", "grep", "egrep", "sed", "awk", "head", "tail", "wc", "sort", "uniq", "cut",
    "tr", "true", "false", "sleep", "ps", "mkdir", "rmdir", "rm", "ln", "cp", "mv", "touch", "chmod",
    "chown", "find", "xargs", "dirname", "basename", "uname", "hostname", "which", "df", "du", "md5sum",
    "sha256sum", "nproc", "seq", "tee", "date", "kill", "timeout", "mknod", "od", "hexdump", "xxd",
    "whoami", "pwd", "less", "more", "vi", "tar", "gzip", "gunzip", "nsenter", "diff", "cmp", "yes",
)  # fmt: skip

_ARCH = {
    # machine: (multiarch triplet, loader file name, PT_INTERP path)
    "x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
    "aarch64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1", "/lib/ld-linux-aarch64.so.1"),
}
_GLIBC_LIBS = ("libc.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libm.so.6")
_REQUIRED_LIBS = ("libc.so.6",)

DEFAULT_CHANGES = ('CMD ["sh"]',)

ExtraFiles = Mapping[str, "Path | bytes"]


def _elf_has_interp(path: Path) -> bool:
    """True when the ELF file has a PT_INTERP segment (i.e. is dynamically linked)."""
    with open(path, "rb") as fh:
        ident = fh.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2:
            raise InfraError(f"{path} is not a 64-bit ELF file")
        endian = "<" if ident[5] == 1 else ">"
        phoff = struct.unpack_from(endian + "Q", ident, 0x20)[0]
        phentsize, phnum = struct.unpack_from(endian + "HH", ident, 0x36)
        for i in range(phnum):
            fh.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(endian + "I", fh.read(4))
            if p_type == 3:  # PT_INTERP
                return True
    return False


def static_busybox() -> Path:
    """The host's statically linked busybox (Debian's busybox-static), or InfraError."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            if _elf_has_interp(path):
                raise InfraError(f"{path} is dynamically linked: apt-get install busybox-static")
            return path
    raise InfraError("busybox is not installed: apt-get install busybox-static")


def host_glibc() -> tuple[str, str, dict[str, Path]]:
    """(triplet, interp path, {soname: host file}) for the host's glibc; InfraError if not found."""
    machine = platform.machine()
    if machine not in _ARCH:
        raise InfraError(f"no glibc layout known for machine {machine!r}")
    triplet, loader, interp = _ARCH[machine]
    found: dict[str, Path] = {}
    for name in (loader, *_GLIBC_LIBS):
        for d in (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64"):
            p = Path(d) / name
            if p.exists():
                found[name] = p.resolve()
                break
    missing = [n for n in (loader, *_REQUIRED_LIBS) if n not in found]
    if missing:
        raise InfraError(f"host glibc files not found: {', '.join(missing)}")
    return triplet, interp, found


def _place(rootfs: Path, container_path: str) -> Path:
    rel = container_path.lstrip("/")
    if not rel or ".." in Path(rel).parts:
        raise ValueError(f"bad container path {container_path!r}")
    dest = rootfs / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def build_rootfs(
    dest: Path,
    *,
    with_glibc: bool = True,
    extra_files: ExtraFiles | None = None,
    symlinks: Mapping[str, str] | None = None,
) -> Path:
    """Assemble a root filesystem at dest (which must not exist) and return dest.

    Layout is merged-/usr like Debian (bin, sbin, lib, lib64 -> usr/...), with busybox and APPLETS in
    /usr/bin, /etc/passwd and /etc/group for root and nobody, and, with_glibc, the host's loader, libc and
    its split-out stubs in /usr/lib/<triplet> plus /etc/ld.so.conf(.d) and an empty /etc/ld.so.cache.
    extra_files maps container paths to a host file (copied, mode kept) or bytes (written, mode 0644);
    symlinks maps container paths to link targets. Both are applied last, so they may replace anything.
    """
    if dest.exists():
        raise InfraError(f"{dest} already exists; build_rootfs wants a fresh directory")
    busybox = static_busybox()
    dest.mkdir(parents=True)
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/local/bin", "etc/ld.so.conf.d", "proc",
              "sys", "dev", "root", "run", "var/tmp", "var/log", "home", "mnt", "opt"):  # fmt: skip
        (dest / d).mkdir(parents=True, exist_ok=True)
    for d in ("tmp", "var/tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
        (dest / d).chmod(0o1777)
    for name in ("bin", "sbin", "lib", "lib64"):
        (dest / name).symlink_to(f"usr/{name}")
    shutil.copy2(busybox, dest / "usr/bin/busybox")
    for applet in APPLETS:
        (dest / "usr/bin" / applet).symlink_to("busybox")
    (dest / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (dest / "etc/group").write_text("root:x:0:\nvideo:x:44:\nnogroup:x:65534:\n")
    (dest / "etc/os-release").write_text(
        'ID=busybox\nNAME="gpudoctor test image"\nPRETTY_NAME="gpudoctor test image"\n'
    )
    for name in ("hostname", "hosts", "resolv.conf"):
        (dest / "etc" / name).touch()
    if with_glibc:
        triplet, interp, libs = host_glibc()
        libdir = dest / "usr/lib" / triplet
        libdir.mkdir(parents=True, exist_ok=True)
        for soname, src in libs.items():
            shutil.copy2(src, libdir / soname)
        loader = Path(interp)
        link = dest / "usr" / loader.relative_to("/")
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(libdir / loader.name, link.parent))
        (dest / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
        (dest / f"etc/ld.so.conf.d/{triplet}.conf").write_text(
            f"/usr/local/lib/{triplet}\n/lib/{triplet}\n/usr/lib/{triplet}\n"
        )
        (dest / "etc/ld.so.cache").write_bytes(b"")
    for path, source in (extra_files or {}).items():
        target = _place(dest, path)
        if target.is_symlink() or target.exists():
            target.unlink()
        if isinstance(source, bytes):
            target.write_bytes(source)
            target.chmod(0o644)
        else:
            shutil.copy2(source, target)
    for path, link_target in (symlinks or {}).items():
        target = _place(dest, path)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(link_target)
    return dest


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def make_tarball(rootfs: Path, tar_path: Path) -> Path:
    """Write rootfs as an uncompressed tar (all entries owned by root) and return tar_path."""
    with tarfile.open(tar_path, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=_root_owned)
    return tar_path


def import_image(
    daemon: DockerDaemon, rootfs: Path, tag: str, *, changes: Iterable[str] = DEFAULT_CHANGES
) -> str:
    """``docker import`` rootfs as tag (with Dockerfile-style changes) into daemon; return tag."""
    tar_path = rootfs.with_name(rootfs.name + ".tar")
    make_tarball(rootfs, tar_path)
    try:
        argv = ["import"]
        for change in changes:
            argv += ["--change", change]
        daemon.cli(*argv, "-", tag, stdin=tar_path, timeout=300)
    finally:
        tar_path.unlink(missing_ok=True)
    return tag


def image_changes(*, env: Mapping[str, str] | None = None, changes: Iterable[str] = ()) -> list[str]:
    """DEFAULT_CHANGES plus an ``ENV K=V`` per env entry plus changes (Dockerfile instructions)."""
    out = list(DEFAULT_CHANGES)
    out += [f"ENV {key}={value}" for key, value in (env or {}).items()]
    out += list(changes)
    return out


def build_image(
    daemon: DockerDaemon,
    workdir: Path,
    tag: str,
    *,
    with_glibc: bool = True,
    extra_files: ExtraFiles | None = None,
    symlinks: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    changes: Iterable[str] = (),
) -> str:
    """Build a variant rootfs under workdir and import it as tag; return tag.

    env becomes image ENV (e.g. {"LD_PRELOAD": "/x.so"}); changes are further Dockerfile instructions.
    The rootfs directory is deleted after the import.
    """
    safe = "".join(c if c.isalnum() else "-" for c in tag)
    rootfs = build_rootfs(
        workdir / f"rootfs-{safe}", with_glibc=with_glibc, extra_files=extra_files, symlinks=symlinks
    )
    try:
        return import_image(daemon, rootfs, tag, changes=image_changes(env=env, changes=changes))
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
