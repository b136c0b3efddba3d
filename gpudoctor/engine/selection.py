"""Selection: a Request applied to an Inventory gives the ContainerEdits for one container.

``select(inventory, request)`` = the common edits for the requested capabilities (control nodes, libraries,
binaries, firmware, IPC sockets, vendor files, and one createContainer hook for the symlinks and the ld
cache) plus the device node of every requested GPU. Device names are matched against discovered GPUs only.

Capabilities follow libnvidia-container: ``video`` brings the compute libraries too, ``display`` the
graphics libraries and ``/dev/nvidia-modeset``; ``compat32`` adds the 32-bit variants of what is selected.
Firmware is always attached (the driver loads GSP firmware for any use).

(The module is not called ``select`` so that it can never shadow the standard library's ``select``.)
"""

from __future__ import annotations

from gpudoctor.engine.edits import IPC_BIND_OPTIONS, RO_BIND_OPTIONS, ContainerEdits, DeviceNode, Hook, Mount
from gpudoctor.engine.inventory import COMPAT32_ARCH, Gpu, Inventory, Node
from gpudoctor.engine.request import ALL, Request, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

# Development links that builds inside the container expect (NVIDIA creates the same ones).
DEV_LINKS = {
    "libcuda.so.1": "libcuda.so",
    "libnvidia-opticalflow.so.1": "libnvidia-opticalflow.so",
    "libGLX_nvidia.so.0": "libGLX_indirect.so.0",
}
_IMPLIED = {"video": ("compute",), "display": ("graphics",)}


class SelectionError(ValueError):
    """The request names a device this host does not have. The message lists what it has."""


def expand_capabilities(caps: Iterable[str]) -> frozenset[str]:
    out = set(caps)
    for cap, implied in _IMPLIED.items():
        if cap in out:
            out.update(implied)
    return frozenset(out)


def node_edit(node: Node) -> DeviceNode:
    return DeviceNode(
        path=node.path,
        host_path=node.host_path,
        major=node.major,
        minor=node.minor,
        file_mode=node.mode,
        uid=node.uid,
        gid=node.gid,
    )


def gpu_edits(gpu: Gpu) -> ContainerEdits:
    """The edits of one GPU: its device node."""
    return ContainerEdits(device_nodes=[node_edit(gpu.node)])


def common_edits(
    inventory: Inventory, capabilities: Iterable[str], *, hooks: bool = True, python: str | None = None
) -> ContainerEdits:
    """Edits every GPU container gets for `capabilities`: control nodes, driver files and the hooks.

    The hooks (create-symlinks for soname and development links, update-ldcache for the library dirs) run
    ``gpudoctor hook`` with `python` (default: this interpreter); `hooks` False leaves them out.
    """
    caps = expand_capabilities(capabilities)
    wanted = caps | {""}
    nodes = [node_edit(n) for n in inventory.nodes if n.capability in wanted]
    mounts: list[Mount] = []
    libdirs: list[str] = []
    links: list[tuple[str, str]] = []
    for f in inventory.files:
        if f.capability not in wanted or (f.arch == COMPAT32_ARCH and "compat32" not in caps):
            continue
        options = IPC_BIND_OPTIONS if f.kind == "ipc" else RO_BIND_OPTIONS
        mounts.append(Mount(host_path=f.host_path, container_path=f.container_path, options=options))
        if f.kind != "library":
            continue
        directory, _, name = f.container_path.rpartition("/")
        if directory not in libdirs:
            libdirs.append(directory)
        if f.soname:
            links.append((name, f"{directory}/{f.soname}"))
            dev = DEV_LINKS.get(f.soname)
            if dev is not None:
                links.append((f.soname, f"{directory}/{dev}"))
    emitted = _hooks(links, libdirs, python) if hooks and libdirs else []
    return ContainerEdits(device_nodes=nodes, mounts=mounts, hooks=emitted)


def _entry(
    kind: str, build: Callable[..., dict[str, Any]], items: list[Any], python: str | None
) -> dict[str, Any]:
    try:
        return build(items, python=python)
    except ValueError as exc:
        raise SelectionError(f"a driver file cannot be handed to the {kind} hook: {exc}") from None


def _hooks(links: list[tuple[str, str]], libdirs: list[str], python: str | None) -> list[Hook]:
    """One createContainer hook: create-symlinks then update-ldcache, chained by ``entry.py hooks``.

    gpudoctor.engine.hookspec builds and validates each command's entry (the single source of the format:
    ``[python, -I, -S, entry.py, "hook", KIND, --opt=value...]``); running both in one interpreter saves a
    Python start on every GPU container start.
    """
    from gpudoctor.engine.hookspec import create_symlinks_hook, update_ldcache_hook

    entries = []
    if links:
        entries.append(_entry("create-symlinks", create_symlinks_hook, links, python))
    entries.append(_entry("update-ldcache", update_ldcache_hook, libdirs, python))
    first = entries[0]
    prefix = first["args"][:4]  # python -I -S entry.py
    args = [*prefix, "hooks"]
    for i, entry in enumerate(entries):
        if entry["args"][:4] != prefix or entry["args"][4] != "hook":
            raise ValueError(f"unexpected hook entry format: {entry['args'][:6]!r}")
        args += (["--"] if i else []) + entry["args"][5:]
    return [
        Hook(
            hook_name="createContainer",
            path=first["path"],
            args=tuple(args),
            env=tuple(first["env"]),
            timeout=max(int(e.get("timeout") or 0) for e in entries) or None,
        )
    ]


def resolve_devices(
    inventory: Inventory, names: Sequence[str], *, source: str = "NVIDIA_VISIBLE_DEVICES"
) -> list[Gpu]:
    """The GPUs that device names ("all", indices, UUIDs) denote, in request order without repeats."""
    if tuple(names) == (ALL,):
        return list(inventory.gpus)
    by_index = {str(g.index): g for g in inventory.gpus}
    by_uuid = {g.uuid.lower(): g for g in inventory.gpus if g.uuid}
    out: list[Gpu] = []
    for name in names:
        gpu = by_uuid.get(name.lower()) if name.startswith("GPU-") else by_index.get(name)
        if gpu is None:
            raise SelectionError(f"{source} names {quote(name)}, but {_describe(inventory)}")
        if gpu not in out:
            out.append(gpu)
    return out


def _describe(inventory: Inventory) -> str:
    if not inventory.gpus:
        return "this host has no usable GPU" + (f" ({inventory.warnings[0]})" if inventory.warnings else "")
    listed = ", ".join(f"{g.index} ({g.uuid})" if g.uuid else str(g.index) for g in inventory.gpus)
    return f"this host has GPU {listed}"


def select(
    inventory: Inventory, request: Request, *, hooks: bool = True, python: str | None = None
) -> ContainerEdits:
    """The edits for `request` on this host. Raises SelectionError for a device the host lacks."""
    if inventory.wsl:
        # WSL2 shows every GPU through the single /dev/dxg node; indices cannot be told apart here.
        if request.devices not in ((), (ALL,)):
            raise SelectionError(
                "NVIDIA_VISIBLE_DEVICES must be all or none under WSL2, where every GPU is behind /dev/dxg"
            )
        edits = common_edits(inventory, request.capabilities, hooks=hooks, python=python)
        if not request.devices:
            return edits
        return edits.merged(
            ContainerEdits(device_nodes=[node_edit(n) for n in inventory.nodes if n.capability == "gpu"])
        )
    if inventory.node("nvidiactl") is None:
        why = f" ({inventory.warnings[0]})" if inventory.warnings else ""
        raise SelectionError(
            f"{request.source} asks for the NVIDIA driver, but {inventory.dev_root.rstrip('/')}/dev/nvidiactl is "
            f"missing{why}: the driver is not loaded. Check it with `gpudoctor --check`"
        )
    gpus = resolve_devices(inventory, request.devices, source=request.source)
    if request.all_devices and not gpus:
        raise SelectionError(f"{request.source}=all, but {_describe(inventory)}")
    edits = common_edits(inventory, request.capabilities, hooks=hooks, python=python)
    return edits.merged(*(gpu_edits(g) for g in gpus))
