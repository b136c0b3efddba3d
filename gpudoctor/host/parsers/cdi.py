"""Container Device Interface specs (``/etc/cdi/*.yaml|json``, ``/var/run/cdi/*``), as in the CDI SPEC.md.

A spec is JSON or YAML. YAML is loaded with PyYAML's safe loader, with anchors and aliases refused (no spec
writer uses them, and they are how a small file expands into a huge one) and the size capped.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from typing import Any

from gpudoctor.host.parsers._util import fail, snippet
from gpudoctor.record import Record

__all__ = [
    "CdiDevice",
    "CdiDeviceNode",
    "CdiEdits",
    "CdiHook",
    "CdiMount",
    "CdiSpec",
    "MAX_SPEC_BYTES",
    "all_host_paths",
    "driver_versions_mentioned",
    "parse_cdi_spec",
]

MAX_SPEC_BYTES = 4 * 1024 * 1024
"""Largest spec accepted; NVIDIA's for an 8-GPU host is well under 100 KiB."""


class CdiMount(Record):
    host_path: str
    container_path: str
    options: tuple[str, ...]
    type: str | None = None


class CdiDeviceNode(Record):
    path: str
    """Path in the container."""
    host_path: str | None = None
    """Path on the host when it differs from `path`."""
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    permissions: str | None = None

    @property
    def source(self) -> str:
        """The host node this refers to (`host_path`, else `path`)."""
        return self.host_path or self.path


class CdiHook(Record):
    hook_name: str
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


class CdiEdits(Record):
    """A ``containerEdits`` object."""

    device_nodes: tuple[str, ...]
    """Container paths of the device nodes (details in `nodes`)."""
    mounts: tuple[CdiMount, ...]
    env: tuple[str, ...]
    hooks: tuple[CdiHook, ...]
    nodes: tuple[CdiDeviceNode, ...] = ()


class CdiDevice(Record):
    name: str
    device_nodes: tuple[str, ...]
    mounts: tuple[CdiMount, ...]
    env: tuple[str, ...]
    nodes: tuple[CdiDeviceNode, ...] = ()
    hooks: tuple[CdiHook, ...] = ()
    annotations: dict[str, str] | None = None


class CdiSpec(Record):
    cdi_version: str
    kind: str
    """``vendor.com/class``, e.g. ``nvidia.com/gpu``."""
    devices: tuple[CdiDevice, ...]
    common: CdiEdits
    """The spec-level ``containerEdits``, applied when any device of the spec is requested."""
    annotations: dict[str, str]
    raw: dict[str, Any]

    def device(self, name: str) -> CdiDevice | None:
        return next((d for d in self.devices if d.name == name), None)

    @property
    def qualified_names(self) -> tuple[str, ...]:
        """``kind=name`` for each device, as given to ``--device`` (``nvidia.com/gpu=all``)."""
        return tuple(f"{self.kind}={d.name}" for d in self.devices)


# SPEC.md "Kind": a DNS-subdomain vendor, a slash, and a class name.
_KIND = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*/"
    r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
)
_DEVICE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?")


@functools.cache
def _no_alias_loader() -> type:
    """PyYAML's SafeLoader, refusing aliases (built on first use so importing this module stays cheap)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not allowed in a CDI spec", event.start_mark
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def _load(text: str, path: str) -> Any:
    if len(text) > MAX_SPEC_BYTES:
        fail(path, f"is {len(text)} characters long; CDI specs over {MAX_SPEC_BYTES} bytes are refused")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            fail(path, f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno)
        except RecursionError:
            fail(path, "invalid JSON: nested too deeply")
    import yaml  # deferred: only CDI checks need it

    try:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        if mark is not None:
            fail(path, f"invalid YAML: {problem}", line=mark.line + 1, column=mark.column + 1)
        fail(path, f"invalid YAML: {problem}")
    except yaml.YAMLError as exc:
        fail(path, f"invalid YAML: {exc}")
    except RecursionError:
        fail(path, "invalid YAML: nested too deeply")
    except (ValueError, TypeError, OverflowError) as exc:
        # The safe constructors raise these for values like an impossible date (2024-13-45).
        fail(path, f"invalid YAML value: {exc}")


class _Reader:
    """Typed access to the loaded document; every mismatch is a ParseError naming the JSON path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            fail(self.path, f"{where} must be an object (a mapping of names to values)")
        return value

    def opt_obj(self, parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        value = parent.get(key)
        return {} if value is None else self.obj(value, f"{where}.{key}")

    def string(self, parent: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
        value = parent.get(key)
        if value is None:
            if required:
                fail(self.path, f"{where}.{key} is required")
            return None
        if not isinstance(value, str):
            fail(self.path, f"{where}.{key} must be a string, not {snippet(repr(value))}")
        return value

    def integer(self, parent: dict[str, Any], key: str, where: str) -> int | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            fail(self.path, f"{where}.{key} must be an integer, not {snippet(repr(value))}")
        return value

    def items(self, parent: dict[str, Any], key: str, where: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            fail(self.path, f"{where}.{key} must be a list")
        return value

    def strings(self, parent: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.items(parent, key, where)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                fail(self.path, f"{where}.{key}[{i}] must be a string, not {snippet(repr(v))}")
        return tuple(values)

    def annotations(self, parent: dict[str, Any], where: str) -> dict[str, str]:
        table = self.opt_obj(parent, "annotations", where)
        for k, v in table.items():
            if not isinstance(v, str):
                fail(self.path, f"{where}.annotations.{k} must be a string")
        return dict(table)

    def edits(self, value: Any, where: str) -> CdiEdits:
        table = {} if value is None else self.obj(value, where)
        nodes: list[CdiDeviceNode] = []
        for i, node in enumerate(self.items(table, "deviceNodes", where)):
            w = f"{where}.deviceNodes[{i}]"
            node = self.obj(node, w)
            nodes.append(
                CdiDeviceNode(
                    path=self.string(node, "path", w, required=True) or "",
                    host_path=self.string(node, "hostPath", w),
                    type=self.string(node, "type", w),
                    major=self.integer(node, "major", w),
                    minor=self.integer(node, "minor", w),
                    permissions=self.string(node, "permissions", w),
                )
            )
        mounts: list[CdiMount] = []
        for i, mount in enumerate(self.items(table, "mounts", where)):
            w = f"{where}.mounts[{i}]"
            mount = self.obj(mount, w)
            mounts.append(
                CdiMount(
                    host_path=self.string(mount, "hostPath", w, required=True) or "",
                    container_path=self.string(mount, "containerPath", w, required=True) or "",
                    options=self.strings(mount, "options", w),
                    type=self.string(mount, "type", w),
                )
            )
        hooks: list[CdiHook] = []
        for i, hook in enumerate(self.items(table, "hooks", where)):
            w = f"{where}.hooks[{i}]"
            hook = self.obj(hook, w)
            hooks.append(
                CdiHook(
                    hook_name=self.string(hook, "hookName", w, required=True) or "",
                    path=self.string(hook, "path", w, required=True) or "",
                    args=self.strings(hook, "args", w),
                    env=self.strings(hook, "env", w),
                    timeout=self.integer(hook, "timeout", w),
                )
            )
        return CdiEdits(
            device_nodes=tuple(n.path for n in nodes),
            mounts=tuple(mounts),
            env=self.strings(table, "env", where),
            hooks=tuple(hooks),
            nodes=tuple(nodes),
        )


def parse_cdi_spec(text: str, *, path: str) -> CdiSpec:
    """Parse a CDI spec (JSON or YAML) and check it against the CDI schema's required fields and types.

    Raises ParseError for bad syntax, a missing ``cdiVersion``/``kind``/``devices``, an invalid kind or device
    name, duplicate device names, or a field of the wrong type.
    """
    doc = _load(text, path)
    r = _Reader(path)
    if doc is None:
        fail(path, "file is empty; a CDI spec needs cdiVersion, kind and devices")
    top = r.obj(doc, "the spec")
    version = r.string(top, "cdiVersion", "spec", required=True) or ""
    kind = r.string(top, "kind", "spec", required=True) or ""
    if not _KIND.fullmatch(kind):
        fail(path, f"kind {snippet(kind)} is not of the form vendor.com/class (e.g. nvidia.com/gpu)")
    if "devices" not in top:
        fail(path, "spec.devices is required")
    devices: list[CdiDevice] = []
    seen: set[str] = set()
    for i, dev in enumerate(r.items(top, "devices", "spec")):
        where = f"spec.devices[{i}]"
        dev = r.obj(dev, where)
        name = r.string(dev, "name", where, required=True) or ""
        if not _DEVICE_NAME.fullmatch(name):
            fail(path, f"{where}.name {snippet(name)} is not a valid CDI device name")
        if name in seen:
            fail(path, f"device {snippet(name)} is defined twice")
        seen.add(name)
        edits = r.edits(dev.get("containerEdits"), f"{where}.containerEdits")
        devices.append(
            CdiDevice(
                name=name,
                device_nodes=edits.device_nodes,
                mounts=edits.mounts,
                env=edits.env,
                nodes=edits.nodes,
                hooks=edits.hooks,
                annotations=r.annotations(dev, where) or None,
            )
        )
    if not devices:
        fail(path, "spec.devices is empty; a CDI spec must define at least one device")
    return CdiSpec(
        cdi_version=version,
        kind=kind,
        devices=tuple(devices),
        common=r.edits(top.get("containerEdits"), "spec.containerEdits"),
        annotations=r.annotations(top, "spec"),
        raw=top,
    )


def _all_edits(spec: CdiSpec) -> list[CdiEdits]:
    out = [spec.common]
    for d in spec.devices:
        out.append(
            CdiEdits(device_nodes=d.device_nodes, mounts=d.mounts, env=d.env, hooks=d.hooks, nodes=d.nodes)
        )
    return out


def all_host_paths(spec: CdiSpec) -> set[str]:
    """Every host path the spec refers to: device nodes (``hostPath``, else ``path``), mount sources, hooks."""
    out: set[str] = set()
    for edits in _all_edits(spec):
        out.update(n.source for n in edits.nodes)
        out.update(m.host_path for m in edits.mounts)
        out.update(h.path for h in edits.hooks)
    return out


# Driver versions have a 3-digit branch (390, 470, 550, 580): 550.54.14, 550.120. Requiring the 3 digits keeps
# other libraries' versions (libnvidia-egl-wayland.so.1.1.13) out.
_LIB_VERSION = re.compile(r"^lib[^/]*\.so\.(\d{3,4}\.\d{1,3}(?:\.\d{1,3})?)$")
_FIRMWARE_DIR = re.compile(r"/firmware/nvidia/(\d{3,4}\.\d{1,3}(?:\.\d{1,3})?)/")
_HOOK_VERSION = re.compile(r"^--host-driver-version=(\d{3,4}\.\d{1,3}(?:\.\d{1,3})?)$")


def driver_versions_mentioned(spec: CdiSpec) -> set[str]:
    """Driver versions the spec was generated for, from versioned library names (``libcuda.so.550.54.14``),
    firmware directories (``/lib/firmware/nvidia/550.54.14/``) and ``--host-driver-version=`` hook args.

    More than one version, or one that differs from the loaded driver, means the spec is stale.
    """
    out: set[str] = set()
    candidates = set(all_host_paths(spec))
    for edits in _all_edits(spec):
        candidates.update(m.container_path for m in edits.mounts)
        for hook in edits.hooks:
            for arg in hook.args:
                m = _HOOK_VERSION.match(arg)
                if m:
                    out.add(m.group(1))
                # create-symlinks args look like "libcuda.so.550.54.14::/usr/lib/.../libcuda.so.1".
                candidates.update(arg.split("::"))
    for candidate in candidates:
        m = _LIB_VERSION.match(posixpath.basename(candidate))
        if m:
            out.add(m.group(1))
        fw = _FIRMWARE_DIR.search(candidate)
        if fw:
            out.add(fw.group(1))
    return out
