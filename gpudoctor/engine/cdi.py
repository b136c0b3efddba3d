"""CDI specs: generate one from an Inventory, compute its minimum cdiVersion, check one, write it atomically.

The generated spec has kind ``nvidia.com/gpu``, a device per GPU by index (``0``) and by UUID, an ``all``
device, and common edits with the control nodes, every driver file of every capability (a CDI device
cannot know which capabilities a container wants, so it gets them all, as NVIDIA's CDI mode does) and the
createContainer hooks. ``NVIDIA_VISIBLE_DEVICES=void`` in the common env keeps a legacy NVIDIA hook, should
one also be configured, from attaching the GPUs a second time.

``cdiVersion`` is the lowest version whose fields the spec uses (CDI's own MinimumRequiredVersion rules),
so that older consumers accept it: podman 4.3 knows versions up to 0.5.0. A typical spec needs 0.5.0
(device names starting with a digit, ``hostPath`` on device nodes).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from gpudoctor.engine.edits import ContainerEdits
from gpudoctor.engine.inventory import Inventory
from gpudoctor.engine.request import CAPABILITIES, CDI_KIND
from gpudoctor.engine.selection import common_edits, gpu_edits, node_edit

KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
EARLIEST_VERSION = "0.3.0"
DEFAULT_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")

_TOP_KEYS = {"cdiVersion", "kind", "annotations", "devices", "containerEdits"}
_DEVICE_KEYS = {"name", "annotations", "containerEdits"}
_EDIT_KEYS = {"env", "deviceNodes", "mounts", "hooks", "intelRdt", "additionalGids", "netDevices"}
_NODE_KEYS = {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"}
_MOUNT_KEYS = {"hostPath", "containerPath", "type", "options"}
_HOOK_KEYS = {"hookName", "path", "args", "env", "timeout"}
_RDT_KEYS = {"closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring"}
_NET_KEYS = {"hostInterfaceName", "name"}
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)


class CdiError(Exception):
    """A spec cannot be generated or written. The message says why and what to do."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


# ------------------------------------------------------------------------------------------------ generate


def build_spec(
    inventory: Inventory, *, hooks: bool = True, python: str | None = None, kind: str = CDI_KIND
) -> dict[str, Any]:
    """The CDI spec for this inventory; hooks run ``gpudoctor hook`` with `python` (default: this
    interpreter). Raises CdiError when there is no GPU to describe."""
    if not inventory.gpus and not inventory.wsl:
        detail = f": {inventory.warnings[0]}" if inventory.warnings else ""
        raise CdiError(
            f"no usable NVIDIA GPU under {inventory.dev_root}{detail}. Check the driver with `gpudoctor --check`"
        )
    devices: list[dict[str, Any]] = []
    if inventory.wsl:
        dxg = ContainerEdits(device_nodes=[node_edit(n) for n in inventory.nodes if n.capability == "gpu"])
        devices.append({"name": "all", "containerEdits": dxg.to_cdi()})
    else:
        for gpu in inventory.gpus:
            devices.append({"name": str(gpu.index), "containerEdits": gpu_edits(gpu).to_cdi()})
        for gpu in inventory.gpus:
            if gpu.uuid:
                devices.append({"name": gpu.uuid, "containerEdits": gpu_edits(gpu).to_cdi()})
        every = ContainerEdits().merged(*(gpu_edits(g) for g in inventory.gpus))
        devices.append({"name": "all", "containerEdits": every.to_cdi()})
    common = common_edits(inventory, CAPABILITIES, hooks=hooks, python=python).merged(
        ContainerEdits(env=["NVIDIA_VISIBLE_DEVICES=void"])
    )
    spec: dict[str, Any] = {
        "cdiVersion": "",
        "kind": kind,
        "devices": devices,
        "containerEdits": common.to_cdi(),
    }
    spec["cdiVersion"] = minimum_version(spec)
    return spec


def _edits_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    out = [spec.get("containerEdits") or {}]
    out += [(d.get("containerEdits") or {}) for d in spec.get("devices") or [] if isinstance(d, dict)]
    return [e for e in out if isinstance(e, dict)]


def minimum_version(spec: dict[str, Any]) -> str:
    """The lowest cdiVersion that allows every field `spec` uses (the CDI project's rules)."""
    edits = _edits_of(spec)
    devices = [d for d in spec.get("devices") or [] if isinstance(d, dict)]
    rdts = [e["intelRdt"] for e in edits if isinstance(e.get("intelRdt"), dict)]
    if any(e.get("netDevices") for e in edits) or any(
        r.get("schemata") or "enableMonitoring" in r for r in rdts
    ):
        return "1.1.0"
    if rdts or any(e.get("additionalGids") for e in edits):
        return "0.7.0"
    kind = spec.get("kind")
    if spec.get("annotations") or any(d.get("annotations") for d in devices):
        return "0.6.0"
    if isinstance(kind, str) and "/" in kind and "." in kind.split("/", 1)[1]:
        return "0.6.0"
    for d in devices:
        name = d.get("name")
        if isinstance(name, str) and name and not name[0].isalpha():
            return "0.5.0"
    for e in edits:
        if any(isinstance(n, dict) and n.get("hostPath") for n in e.get("deviceNodes") or []):
            return "0.5.0"
    for e in edits:
        if any(isinstance(m, dict) and m.get("type") for m in e.get("mounts") or []):
            return "0.4.0"
    return EARLIEST_VERSION


def dump_spec(spec: dict[str, Any], fmt: str) -> str:
    """The spec as ``yaml`` or ``json`` text."""
    if fmt == "json":
        return json.dumps(spec, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        text: str = yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, width=4096)
        return "---\n" + text
    raise ValueError(f"unknown format {fmt!r} (yaml or json)")


def load_spec_text(text: str, *, path: str) -> Any:
    """Parse a spec file's text: JSON for ``.json``, else YAML (JSON is valid YAML too)."""
    if path.endswith(".json"):
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


def write_spec(path: str, text: str) -> None:
    """Write `text` to `path` atomically (temp file, fsync, rename, fsync of the directory), mode 0644."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CdiError(f"cannot write {path}: {exc.strerror}") from None
    try:
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data) :]
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CdiError(f"cannot write {path}: {exc.strerror}") from None


# ------------------------------------------------------------------------------------------------ validate


def _is_label(text: str, extra: str) -> bool:
    """[a-zA-Z0-9] at both ends, [a-zA-Z0-9] plus `extra` characters between (ASCII only)."""
    if not text or not text.isascii():
        return False
    if not (text[0].isalnum() and text[-1].isalnum()):
        return False
    return all(c.isalnum() or c in extra for c in text)


def check_kind(kind: str) -> str | None:
    """Why `kind` is not a valid ``vendor.com/class``, or None."""
    vendor, sep, cls = kind.partition("/")
    if not sep or "/" in cls:
        return f"kind {kind!r} must be vendor/class, e.g. {CDI_KIND}"
    if len(vendor) > 253 or not all(_is_label(label, "-") for label in vendor.split(".")):
        return f"kind {kind!r}: the vendor must be a DNS subdomain"
    if len(cls) > 63 or not _is_label(cls, "-_."):
        return f"kind {kind!r}: the class must be 1-63 letters, digits, '-', '_' or '.'"
    return None


def check_device_name(name: str) -> str | None:
    if not _is_label(name, "-_.:"):
        return f"device name {name!r} must start and end with a letter or digit and hold only [a-zA-Z0-9_.:-]"
    return None


def _strings(value: Any, what: str, problems: list[str]) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{what} must be a list of strings")


def _int(value: Any, what: str, problems: list[str], bounds: tuple[int, int]) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
        problems.append(f"{what} must be an integer in [{bounds[0]}, {bounds[1]}]")


def _unknown(obj: dict[str, Any], allowed: set[str], what: str, problems: list[str]) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        problems.append(
            f"{what} has unknown field(s) {', '.join(map(repr, extra))} (CDI consumers reject them)"
        )


def _check_edits(edits: Any, what: str, problems: list[str]) -> None:
    if not isinstance(edits, dict):
        problems.append(f"{what} must be an object")
        return
    _unknown(edits, _EDIT_KEYS, what, problems)
    if "env" in edits:
        _strings(edits["env"], f"{what}.env", problems)
        for entry in edits["env"] if isinstance(edits["env"], list) else []:
            if isinstance(entry, str) and "=" not in entry:
                problems.append(f"{what}.env entry {entry!r} is not NAME=VALUE")
    for i, node in enumerate(edits.get("deviceNodes") or []):
        where = f"{what}.deviceNodes[{i}]"
        if not isinstance(node, dict):
            problems.append(f"{where} must be an object")
            continue
        _unknown(node, _NODE_KEYS, where, problems)
        if not isinstance(node.get("path"), str) or not node["path"].startswith("/"):
            problems.append(f"{where}.path must be an absolute path")
        for key in ("hostPath", "type", "permissions"):
            if key in node and not isinstance(node[key], str):
                problems.append(f"{where}.{key} must be a string")
        perms = node.get("permissions")
        if isinstance(perms, str) and perms not in ("", "none") and set(perms) - set("rwm"):
            problems.append(f"{where}.permissions must be made of r, w and m")
        for key in ("major", "minor", "fileMode"):
            if key in node:
                _int(node[key], f"{where}.{key}", problems, _INT64)
        for key in ("uid", "gid"):
            if key in node:
                _int(node[key], f"{where}.{key}", problems, _UINT32)
    for i, mount in enumerate(edits.get("mounts") or []):
        where = f"{what}.mounts[{i}]"
        if not isinstance(mount, dict):
            problems.append(f"{where} must be an object")
            continue
        _unknown(mount, _MOUNT_KEYS, where, problems)
        for key in ("hostPath", "containerPath"):
            if not isinstance(mount.get(key), str) or not mount[key]:
                problems.append(f"{where}.{key} is required (a path)")
        if "options" in mount:
            _strings(mount["options"], f"{where}.options", problems)
        if "type" in mount and not isinstance(mount["type"], str):
            problems.append(f"{where}.type must be a string")
    for i, hook in enumerate(edits.get("hooks") or []):
        where = f"{what}.hooks[{i}]"
        if not isinstance(hook, dict):
            problems.append(f"{where} must be an object")
            continue
        _unknown(hook, _HOOK_KEYS, where, problems)
        if not isinstance(hook.get("hookName"), str) or not hook["hookName"]:
            problems.append(f"{where}.hookName is required")
        if not isinstance(hook.get("path"), str) or not hook["path"].startswith("/"):
            problems.append(f"{where}.path must be an absolute path")
        for key in ("args", "env"):
            if key in hook:
                _strings(hook[key], f"{where}.{key}", problems)
        if "timeout" in hook:
            _int(hook["timeout"], f"{where}.timeout", problems, (1, _UINT32[1]))
    for key, kind in (("deviceNodes", list), ("mounts", list), ("hooks", list), ("netDevices", list)):
        if key in edits and not isinstance(edits[key], kind):
            problems.append(f"{what}.{key} must be a list")
    if "additionalGids" in edits:
        gids = edits["additionalGids"]
        if not isinstance(gids, list):
            problems.append(f"{what}.additionalGids must be a list")
        else:
            for j, gid in enumerate(gids):
                _int(gid, f"{what}.additionalGids[{j}]", problems, _UINT32)
    rdt = edits.get("intelRdt")
    if rdt is not None:
        if not isinstance(rdt, dict):
            problems.append(f"{what}.intelRdt must be an object")
        else:
            _unknown(rdt, _RDT_KEYS, f"{what}.intelRdt", problems)
    for i, net in enumerate(
        edits.get("netDevices") or [] if isinstance(edits.get("netDevices"), list) else []
    ):
        where = f"{what}.netDevices[{i}]"
        if not isinstance(net, dict) or not all(isinstance(net.get(k), str) for k in _NET_KEYS):
            problems.append(f"{where} needs hostInterfaceName and name (strings)")
        else:
            _unknown(net, _NET_KEYS, where, problems)


def _check_annotations(value: Any, what: str, problems: list[str]) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        problems.append(f"{what} must map non-empty strings to strings")


def check_spec(spec: Any) -> list[str]:
    """Everything that makes `spec` invalid CDI (the JSON schema plus CDI's name and version rules)."""
    problems: list[str] = []
    if not isinstance(spec, dict):
        return ["a CDI spec must be an object"]
    _unknown(spec, _TOP_KEYS, "the spec", problems)
    version = spec.get("cdiVersion")
    kind = spec.get("kind")
    if not isinstance(version, str):
        problems.append("cdiVersion is required (a string such as 0.5.0)")
    elif version not in KNOWN_VERSIONS:
        problems.append(f"cdiVersion {version!r} is not a released CDI version ({', '.join(KNOWN_VERSIONS)})")
    if not isinstance(kind, str):
        problems.append("kind is required (a string such as nvidia.com/gpu)")
    else:
        bad = check_kind(kind)
        if bad:
            problems.append(bad)
    if "annotations" in spec:
        _check_annotations(spec["annotations"], "annotations", problems)
    devices = spec.get("devices")
    if not isinstance(devices, list) or not devices:
        problems.append("devices is required and must list at least one device")
        devices = []
    names: set[str] = set()
    for i, device in enumerate(devices):
        where = f"devices[{i}]"
        if not isinstance(device, dict):
            problems.append(f"{where} must be an object")
            continue
        _unknown(device, _DEVICE_KEYS, where, problems)
        name = device.get("name")
        if not isinstance(name, str):
            problems.append(f"{where}.name is required (a string)")
        else:
            bad = check_device_name(name)
            if bad:
                problems.append(f"{where}: {bad}")
            if name in names:
                problems.append(f"{where}: device name {name!r} appears twice")
            names.add(name)
        if "containerEdits" not in device:
            problems.append(f"{where}.containerEdits is required")
        else:
            _check_edits(device["containerEdits"], f"{where}.containerEdits", problems)
        if "annotations" in device:
            _check_annotations(device["annotations"], f"{where}.annotations", problems)
    if "containerEdits" in spec:
        _check_edits(spec["containerEdits"], "containerEdits", problems)
    if isinstance(version, str) and version in KNOWN_VERSIONS and not problems:
        needed = minimum_version(spec)
        if _version_key(needed) > _version_key(version):
            problems.append(
                f"cdiVersion {version} is too low for the fields used: they need at least {needed}"
            )
    return problems


def check_against_host(spec: dict[str, Any], inventory: Inventory) -> list[str]:
    """Host paths in `spec` that are missing or do not match the driver described by `inventory`."""
    import stat

    problems: list[str] = []
    version = inventory.driver_version
    for edits in _edits_of(spec):
        for node in edits.get("deviceNodes") or []:
            host = node.get("hostPath") or node.get("path")
            try:
                st = os.stat(host)
            except OSError as exc:
                problems.append(f"device node {host} is missing ({exc.strerror})")
                continue
            if not stat.S_ISCHR(st.st_mode):
                problems.append(f"{host} is not a character device")
                continue
            for key, actual in (("major", os.major(st.st_rdev)), ("minor", os.minor(st.st_rdev))):
                if key in node and node[key] != actual:
                    problems.append(
                        f"{host} has {key} {actual}, the spec says {node[key]} (the driver was reloaded)"
                    )
        for mount in edits.get("mounts") or []:
            host = mount.get("hostPath", "")
            if not os.path.exists(host):
                problems.append(f"mount source {host} is missing")
                continue
            name = os.path.basename(host)
            if version and ".so." in name and name.split(".so.", 1)[1].count(".") >= 1:
                lib_version = name.split(".so.", 1)[1]
                if lib_version != version and lib_version[:1].isdigit():
                    problems.append(
                        f"{host} is from driver {lib_version}, but the host runs driver {version}"
                    )
        for hook in edits.get("hooks") or []:
            path = hook.get("path", "")
            if not os.access(path, os.X_OK):
                problems.append(f"hook program {path} is missing or not executable")
            for arg in hook.get("args") or []:
                if arg.endswith("/entry.py") and not os.path.isfile(arg):
                    problems.append(f"hook script {arg} is missing (gpudoctor was moved or removed)")
    if not inventory.wsl:
        names = {d.get("name") for d in spec.get("devices") or [] if isinstance(d, dict)}
        expected = {str(g.index) for g in inventory.gpus} | {g.uuid for g in inventory.gpus if g.uuid}
        for name in sorted(expected - names):
            problems.append(f"GPU {name} is on the host but not in the spec")
        for name in sorted(n for n in names - expected - {"all"} if isinstance(n, str)):
            problems.append(f"device {name} is in the spec but not on the host")
    return problems
