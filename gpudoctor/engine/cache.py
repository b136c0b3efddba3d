"""The runtime shim's inventory cache, so discovery does not rerun on every container start.

The cache file holds the Inventory as JSON plus a fingerprint of the driver: the text of
``/proc/driver/nvidia/version`` and ``/proc/devices``, the GPU list in ``/proc/driver/nvidia/gpus``, and the
identity (inode, size, mtime) of ``ld.so.cache``, ``/dev``, ``/dev/nvidia-caps`` and ``nvidia-smi``. A
driver upgrade, a module reload (new uvm major), a node created or removed, or an ldconfig run changes the
fingerprint, and the next create rediscovers. Computing it reads three small files and a few stats.

The cache decides what gets bind-mounted into containers, so it is trusted only when the directory and the
file belong to the shim's own user and nobody else can write them; otherwise it is ignored (and not
written). Writes are atomic (temporary file + rename); every cache failure just means rediscovery.
"""

from __future__ import annotations

import os
import stat

from gpudoctor import __version__
from gpudoctor.engine import fastjson
from gpudoctor.engine.inventory import Inventory

_MAX_BYTES = 16 * 1024 * 1024


def cache_path(cache_dir: str, driver_root: str, dev_root: str) -> str:
    """The cache file for this pair of roots (named by a 32-bit FNV-1a hash: no zlib/hashlib load on the
    hot path; a collision only costs a rediscovery, since the file records its roots)."""
    key = 0x811C9DC5
    for byte in f"{driver_root}\0{dev_root}".encode("utf-8", "surrogateescape"):
        key = ((key ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{cache_dir}/inventory-{key:08x}.json"


def _read_small(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        return f"<{exc.errno}>"
    try:
        return os.read(fd, 65536).decode("utf-8", "replace")
    except OSError as exc:
        return f"<{exc.errno}>"
    finally:
        os.close(fd)


def _ident(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"<{exc.errno}>"
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _listing(path: str) -> str:
    try:
        return ",".join(sorted(os.listdir(path)))
    except OSError as exc:
        return f"<{exc.errno}>"


def fingerprint(driver_root: str, dev_root: str) -> str:
    """A string that changes whenever the driver, its nodes or its library cache change."""
    drv = "" if driver_root == "/" else driver_root
    dev = "" if dev_root == "/" else dev_root
    parts = [
        f"gpudoctor {__version__}",
        driver_root,
        dev_root,
        _read_small(dev + "/proc/driver/nvidia/version"),
        _read_small(dev + "/proc/devices"),
        _listing(dev + "/proc/driver/nvidia/gpus"),
        _ident(drv + "/etc/ld.so.cache"),
        _ident(dev + "/dev"),
        _ident(dev + "/dev/nvidia-caps"),
        _ident(drv + "/usr/bin/nvidia-smi"),
    ]
    return "\n".join(parts)


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _open_dir(cache_dir: str, *, create: bool) -> int | None:
    if create:
        try:
            os.mkdir(cache_dir, 0o755)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if not _trusted(os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def read_cached(cache_dir: str, driver_root: str, dev_root: str, fp: str) -> Inventory | None:
    """The cached inventory if it is trusted and its fingerprint is `fp`; else None."""
    dir_fd = _open_dir(cache_dir, create=False)
    if dir_fd is None:
        return None
    try:
        name = os.path.basename(cache_path(cache_dir, driver_root, dev_root))
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not _trusted(st) or st.st_size > _MAX_BYTES:
                return None
            data = os.read(fd, _MAX_BYTES)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    try:
        doc = fastjson.loads(data.decode("utf-8", "surrogateescape"))
        if doc.get("fingerprint") != fp:
            return None
        inv = Inventory.from_dict(doc["inventory"])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if inv.driver_root != driver_root or inv.dev_root != dev_root:
        return None
    return inv


def write_cached(cache_dir: str, inventory: Inventory, fp: str) -> bool:
    """Store `inventory` under fingerprint `fp`; False when the cache directory is unusable."""
    dir_fd = _open_dir(cache_dir, create=True)
    if dir_fd is None:
        return False
    name = os.path.basename(cache_path(cache_dir, inventory.driver_root, inventory.dev_root))
    tmp = f".{name}.{os.getpid()}.tmp"
    data = fastjson.dumps({"fingerprint": fp, "inventory": inventory.to_dict()}).encode(
        "utf-8", "surrogateescape"
    )
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
        )
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return True
    except OSError:
        import contextlib  # only on this error path

        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        return False
    finally:
        os.close(dir_fd)


def load_inventory(driver_root: str, dev_root: str, cache_dir: str) -> Inventory:
    """The inventory for these roots: from the cache when the driver is unchanged, else discovered (and
    cached). `cache_dir` "" disables the cache. Raises DiscoveryError like discover()."""
    # discover() records its roots normalised; compare like with like ("/x/" is "/x").
    driver_root, dev_root = os.path.abspath(driver_root), os.path.abspath(dev_root)
    if not cache_dir:
        from gpudoctor.engine.inventory import discover

        return discover(driver_root, dev_root)
    fp = fingerprint(driver_root, dev_root)
    inv = read_cached(cache_dir, driver_root, dev_root, fp)
    if inv is not None:
        return inv
    from gpudoctor.engine.inventory import discover

    inv = discover(driver_root, dev_root)
    # Discovery takes a moment; if the driver changed meanwhile, don't pin the result to the new state.
    if fingerprint(driver_root, dev_root) == fp:
        write_cached(cache_dir, inv, fp)
    return inv
