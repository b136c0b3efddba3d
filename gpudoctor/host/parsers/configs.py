"""Container runtime configuration files: Docker's ``daemon.json``, the NVIDIA Container Toolkit's
``config.toml``, and containerd's ``config.toml`` with its imports.

TOML is parsed with tomllib (tomli on Python 3.10), imported only when a TOML file is actually read.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import sys
from typing import Any

from gpudoctor.host.parsers._util import fail, snippet
from gpudoctor.host.root import HostRoot
from gpudoctor.record import Record

__all__ = [
    "ContainerdConfig",
    "ContainerdRuntime",
    "ToolkitConfig",
    "find_duplicate_json_keys",
    "parse_containerd_config_text",
    "parse_daemon_json",
    "parse_toml",
    "parse_toolkit_config",
    "read_containerd_config",
]

# ---------------------------------------------------------------------------------------------- daemon.json

# dockerd 23.0 started accepting an empty file (moby#42393) and a UTF-8/UTF-16 byte order mark (moby#44777,
# #44832), and decoding with json.Unmarshal made trailing text after the object an error. Older daemons
# (20.10, verified) refuse an empty file with "EOF" and a BOM with "invalid character 'ï'", and ignore
# anything after the first JSON value.
_MODERN_DOCKERD = (23,)
_UTF8_BOM = b"\xef\xbb\xbf"


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the keys it saw twice (JSON allows it; Go and Python keep the last)."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.duplicates: list[str] = []
        for key, value in pairs:
            if key in self:
                self.duplicates.append(key)
            self[key] = value


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; Go's encoding/json (dockerd) does not.
    raise ValueError(f"{name} is not valid JSON")


def _decode_daemon_json(data: str | bytes, *, path: str, modern: bool) -> str:
    if isinstance(data, str):
        text = data
    elif modern and data.startswith(_UTF8_BOM):
        text = _strict_utf8(data[3:], path)
    elif modern and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            fail(path, f"has a UTF-16 byte order mark but is not valid UTF-16: {exc.reason}")
    elif modern:
        text = _strict_utf8(data, path)
    else:
        # Go's decoder replaces invalid UTF-8 inside strings instead of failing.
        text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        if not modern:
            fail(
                path, "starts with a byte order mark, which this dockerd rejects (\"invalid character 'ï'\")"
            )
        text = text[1:]
    return text


def _strict_utf8(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        fail(path, f"is not valid UTF-8 (byte {exc.start})", line=line)


def _load_json_value(text: str, *, path: str, allow_trailing: bool, track_duplicates: bool = False) -> Any:
    decoder = json.JSONDecoder(
        object_pairs_hook=_JsonObject if track_duplicates else None, parse_constant=_reject_constant
    )
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        value, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        fail(path, f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno)
    except ValueError as exc:  # from _reject_constant
        fail(path, f"invalid JSON: {exc}")
    except RecursionError:
        fail(path, "invalid JSON: nested too deeply")
    rest = text[end:].strip(" \t\r\n")
    if rest and not allow_trailing:
        line = text.count("\n", 0, end) + 1
        column = end - (text.rfind("\n", 0, end) + 1) + 1
        fail(
            path,
            f"invalid JSON: unexpected text after the top-level value: {snippet(rest)}",
            line=line,
            column=column,
        )
    return value


def parse_daemon_json(
    text: str | bytes,
    *,
    path: str = "/etc/docker/daemon.json",
    dockerd_version: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Parse Docker's ``daemon.json`` the way dockerd reads it; ParseError wherever dockerd would refuse to start.

    - An empty (or whitespace-only) file gives ``{}``: dockerd 23.0+ accepts it. Pass `dockerd_version` below
      ``(23,)`` to get dockerd 20.10's behaviour: ParseError ("EOF").
    - ``null`` gives ``{}`` (every dockerd accepts it); any other non-object top level is a ParseError.
    - Invalid JSON is a ParseError with line and column. Duplicate keys are accepted and the last one wins,
      as in dockerd; `find_duplicate_json_keys` lists them so a check can warn.
    - Bytes input gets dockerd's encoding handling (23.0+: UTF-8/UTF-16 BOMs allowed, invalid UTF-8 refused).
    """
    modern = dockerd_version is None or tuple(dockerd_version) >= _MODERN_DOCKERD
    decoded = _decode_daemon_json(text, path=path, modern=modern)
    if not decoded.strip(" \t\r\n"):
        if modern:
            return {}
        fail(
            path, 'file is empty; dockerd before 23.0 refuses an empty daemon.json ("EOF"). Write {} instead'
        )
    value = _load_json_value(decoded, path=path, allow_trailing=not modern)
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(path, f"top level must be a JSON object {{...}}, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def find_duplicate_json_keys(text: str | bytes, *, path: str = "/etc/docker/daemon.json") -> list[str]:
    """Dotted paths of keys that appear more than once in one object (``runtimes``, ``runtimes.nvidia.path``).

    dockerd silently keeps the last one, so a duplicated ``runtimes`` block loses the first. Raises ParseError
    for invalid JSON, like `parse_daemon_json`.
    """
    decoded = _decode_daemon_json(text, path=path, modern=True)
    if not decoded.strip():
        return []
    value = _load_json_value(decoded, path=path, allow_trailing=False, track_duplicates=True)
    out: list[str] = []
    # Iterative walk: a document nested almost to the parser's limit must not overflow the stack here.
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, _JsonObject):
            out.extend(prefix + key for key in node.duplicates)
            stack.extend((child, f"{prefix}{key}.") for key, child in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((child, f"{prefix}{i}.") for i, child in reversed(list(enumerate(node))))
    return out


# ---------------------------------------------------------------------------------------------- TOML

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def parse_toml(text: str, *, path: str) -> dict[str, Any]:
    """Parse TOML; errors become ParseError with the line and column tomllib reports."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        line = getattr(exc, "lineno", None)
        column = getattr(exc, "colno", None)
        m = _TOML_POSITION.search(message)
        if m:
            line, column = int(m.group(1)), int(m.group(2))
            message = message[: m.start()]
        elif _TOML_END.search(message):
            message = _TOML_END.sub("", message) + " at the end of the file"
        message = getattr(exc, "msg", None) or message
        fail(path, f"invalid TOML: {message}", line=line, column=column)
    except RecursionError:
        fail(path, "invalid TOML: nested too deeply")


def _decode_toml_bytes(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        fail(path, f"is not valid UTF-8 (byte {exc.start}); TOML files must be UTF-8", line=line)


def _table(data: dict[str, Any], key: str, *, path: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        fail(path, f"{where}{key} must be a table, not {_toml_type(value)}")
    return value


_TYPE_WORDS: dict[type, str] = {str: "a string", bool: "true or false", int: "an integer"}


def _typed(data: dict[str, Any], key: str, kind: type, *, path: str, where: str) -> Any:
    value = data.get(key)
    if value is None:
        return None
    # bool is an int subclass; an integer where a bool is wanted (or the reverse) is still a type error.
    if not isinstance(value, kind) or (isinstance(value, bool) != (kind is bool)):
        fail(path, f"{where}{key} must be {_TYPE_WORDS.get(kind, kind.__name__)}, not {_toml_type(value)}")
    return value


def _str_list(data: dict[str, Any], key: str, *, path: str, where: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(path, f"{where}{key} must be a list of strings, not {_toml_type(value)}")
    return tuple(value)


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {snippet(value)}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list" if all(isinstance(v, str) for v in value) else "a list with non-string items"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------------- toolkit config


class ToolkitConfig(Record):
    """``/etc/nvidia-container-runtime/config.toml`` (NVIDIA Container Toolkit). Unset keys are None."""

    raw: dict[str, Any]
    ldconfig: str | None
    """``[nvidia-container-cli] ldconfig``; a leading ``@`` means a host path (e.g. ``@/sbin/ldconfig``)."""
    mode: str | None
    """``[nvidia-container-runtime] mode``: ``auto``, ``legacy``, ``cdi``, ``jit-cdi`` or ``csv``."""
    runtimes: tuple[str, ...]
    """``[nvidia-container-runtime] runtimes`` (the low-level runtimes tried in order); () when unset."""
    no_cgroups: bool | None
    debug_log: str | None
    """``[nvidia-container-runtime] debug``: the runtime's log file."""
    cli_debug_log: str | None = None
    """``[nvidia-container-cli] debug``: nvidia-container-cli's log file."""
    log_level: str | None = None
    driver_root: str | None = None
    """``[nvidia-container-cli] root``: where the driver is installed when not at ``/``."""
    load_kmods: bool | None = None
    ldcache: str | None = None
    cdi_spec_dirs: tuple[str, ...] | None = None
    """``[nvidia-container-runtime.modes.cdi] spec-dirs``."""
    cdi_default_kind: str | None = None
    accept_envvar_unprivileged: bool | None = None
    """``accept-nvidia-visible-devices-envvar-when-unprivileged`` (top level)."""
    accept_volume_mounts: bool | None = None
    """``accept-nvidia-visible-devices-as-volume-mounts`` (top level)."""

    @property
    def ldconfig_is_host_path(self) -> bool:
        """True when `ldconfig` starts with ``@``: the host's ldconfig, run confined to the container."""
        return bool(self.ldconfig and self.ldconfig.startswith("@"))

    @property
    def ldconfig_path(self) -> str | None:
        """`ldconfig` without the ``@`` marker."""
        return self.ldconfig[1:] if self.ldconfig and self.ldconfig.startswith("@") else self.ldconfig


def parse_toolkit_config(
    text: str, *, path: str = "/etc/nvidia-container-runtime/config.toml"
) -> ToolkitConfig:
    """Parse the toolkit's config.toml. Bad TOML, or a known key with the wrong type, is a ParseError."""
    raw = parse_toml(text, path=path)
    cli = _table(raw, "nvidia-container-cli", path=path, where="")
    runtime = _table(raw, "nvidia-container-runtime", path=path, where="")
    modes = _table(runtime, "modes", path=path, where="[nvidia-container-runtime] ")
    cdi = _table(modes, "cdi", path=path, where="[nvidia-container-runtime.modes] ")
    w_cli, w_rt, w_cdi = (
        "[nvidia-container-cli] ",
        "[nvidia-container-runtime] ",
        "[nvidia-container-runtime.modes.cdi] ",
    )
    return ToolkitConfig(
        raw=raw,
        ldconfig=_typed(cli, "ldconfig", str, path=path, where=w_cli),
        mode=_typed(runtime, "mode", str, path=path, where=w_rt),
        runtimes=_str_list(runtime, "runtimes", path=path, where=w_rt) or (),
        no_cgroups=_typed(cli, "no-cgroups", bool, path=path, where=w_cli),
        debug_log=_typed(runtime, "debug", str, path=path, where=w_rt),
        cli_debug_log=_typed(cli, "debug", str, path=path, where=w_cli),
        log_level=_typed(runtime, "log-level", str, path=path, where=w_rt),
        driver_root=_typed(cli, "root", str, path=path, where=w_cli),
        load_kmods=_typed(cli, "load-kmods", bool, path=path, where=w_cli),
        ldcache=_typed(cli, "ldcache", str, path=path, where=w_cli),
        cdi_spec_dirs=_str_list(cdi, "spec-dirs", path=path, where=w_cdi),
        cdi_default_kind=_typed(cdi, "default-kind", str, path=path, where=w_cdi),
        accept_envvar_unprivileged=_typed(
            raw, "accept-nvidia-visible-devices-envvar-when-unprivileged", bool, path=path, where=""
        ),
        accept_volume_mounts=_typed(
            raw, "accept-nvidia-visible-devices-as-volume-mounts", bool, path=path, where=""
        ),
    )


# ---------------------------------------------------------------------------------------------- containerd

# The CRI plugin that holds the runtimes, by config version.
CRI_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
# Top-level maps whose entries containerd replaces whole when a later file has the same key.
_REPLACED_MAPS = ("stream_processors", "proxy_plugins", "timeouts")
_MAX_CONFIG_FILES = 128


class ContainerdRuntime(Record):
    """A CRI runtime handler (``[plugins.<cri>.containerd.runtimes.<name>]``)."""

    name: str
    runtime_type: str | None
    """e.g. ``io.containerd.runc.v2``; None when unset or empty (containerd then refuses to use it)."""
    binary_name: str | None
    """``options.BinaryName``: the OCI runtime binary (``/usr/bin/nvidia-container-runtime``); None when unset
    or empty, which means ``runc`` from containerd's PATH."""
    systemd_cgroup: bool | None
    """``options.SystemdCgroup``."""
    options: dict[str, Any]
    runtime_path: str | None = None
    defined_in: str | None = None
    """The config file that last defined this runtime."""


class ContainerdConfig(Record):
    """containerd's effective configuration: the main file merged with everything it imports."""

    version: int
    """Config schema version (1, 2 or 3); a file without ``version`` is version 1."""
    files: tuple[str, ...]
    """Host paths of the files read, in load order (the main file first)."""
    runtimes: dict[str, ContainerdRuntime]
    default_runtime_name: str | None
    cdi_enabled: bool | None
    """``enable_cdi``; None when unset (containerd 1.7 defaults to off, 2.x to on)."""
    cdi_spec_dirs: tuple[str, ...]
    raw: dict[str, Any]
    """The merged TOML document."""
    cri_plugin: str = ""
    """The plugin id that holds the runtimes for this version, e.g. ``io.containerd.grpc.v1.cri``."""
    warnings: tuple[str, ...] = ()
    """Things containerd accepts but that likely do not do what was meant (settings it ignores, a drop-in
    that replaces a whole plugin section, ...)."""


def _config_version(data: dict[str, Any], path: str) -> int:
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        fail(path, f"version must be an integer, not {_toml_type(version)}")
    if version == 0:
        return 1
    if version not in (1, 2, 3):
        fail(path, f"unsupported config version {version} (containerd knows versions 1, 2 and 3)")
    return version


def parse_containerd_config_text(text: str, *, path: str) -> dict[str, Any]:
    """Parse one containerd config file (no imports followed). Checks ``version``, ``imports`` and the types
    of the CRI runtime settings this module reads; anything else is left to containerd."""
    data = parse_toml(text, path=path)
    version = _config_version(data, path)
    _str_list(data, "imports", path=path, where="")
    _cri_settings(data, version, path=path)
    return data


class _CriSettings(Record):
    runtimes: dict[str, ContainerdRuntime]
    default_runtime_name: str | None
    cdi_enabled: bool | None
    cdi_spec_dirs: tuple[str, ...]
    present: bool


def _cri_settings(data: dict[str, Any], version: int, *, path: str) -> _CriSettings:
    plugins = _table(data, "plugins", path=path, where="")
    plugin_id = CRI_PLUGIN[version]
    where = f'[plugins."{plugin_id}"] '
    cri = _table(plugins, plugin_id, path=path, where="[plugins] ")
    ctr = _table(cri, "containerd", path=path, where=where)
    where_ctr = f'[plugins."{plugin_id}".containerd] '
    runtimes_table = _table(ctr, "runtimes", path=path, where=where_ctr)
    runtimes: dict[str, ContainerdRuntime] = {}
    for name, spec in runtimes_table.items():
        where_rt = f'[plugins."{plugin_id}".containerd.runtimes.{name}] '
        if not isinstance(spec, dict):
            fail(path, f"{where_rt.strip()} must be a table, not {_toml_type(spec)}")
        options = _table(spec, "options", path=path, where=where_rt)
        where_opt = f'[plugins."{plugin_id}".containerd.runtimes.{name}.options] '
        runtimes[name] = ContainerdRuntime(
            name=name,
            # containerd treats "" like an unset key (`containerd config default` writes BinaryName = "").
            runtime_type=_typed(spec, "runtime_type", str, path=path, where=where_rt) or None,
            binary_name=_typed(options, "BinaryName", str, path=path, where=where_opt) or None,
            systemd_cgroup=_typed(options, "SystemdCgroup", bool, path=path, where=where_opt),
            options=options,
            runtime_path=_typed(spec, "runtime_path", str, path=path, where=where_rt) or None,
            defined_in=path,
        )
    return _CriSettings(
        runtimes=runtimes,
        default_runtime_name=_typed(ctr, "default_runtime_name", str, path=path, where=where_ctr),
        cdi_enabled=_typed(cri, "enable_cdi", bool, path=path, where=where),
        cdi_spec_dirs=_str_list(cri, "cdi_spec_dirs", path=path, where=where) or (),
        present=plugin_id in plugins,
    )


def _migrate_cri(data: dict[str, Any], from_version: int, to_version: int) -> dict[str, Any]:
    """Move the CRI runtime settings of an older-version drop-in to where `to_version` keeps them.

    containerd 2.x migrates a drop-in written for an older version before merging it. Only the keys this
    module reads are moved (``containerd.*``, ``enable_cdi``, ``cdi_spec_dirs``).
    """
    plugins = dict(data.get("plugins", {}))
    version = from_version
    while version < to_version:
        src, dst = CRI_PLUGIN[version], CRI_PLUGIN[version + 1]
        if src in plugins and isinstance(plugins[src], dict):
            moved = dict(plugins.pop(src))
            target = dict(plugins.get(dst, {})) if isinstance(plugins.get(dst), dict) else {}
            if version == 1:
                target.update(moved)  # v1 "cri" is the same plugin as v2 "io.containerd.grpc.v1.cri"
            else:
                for key in ("containerd", "enable_cdi", "cdi_spec_dirs"):
                    if key in moved:
                        target[key] = moved.pop(key)
                if moved:
                    plugins[src] = moved
            plugins[dst] = target
        version += 1
    return {**data, "plugins": plugins, "version": to_version}


def _merge(dst: dict[str, Any], src: dict[str, Any], *, replace: frozenset[str]) -> None:
    """Merge `src` into `dst` like containerd's mergeConfig: tables merge, lists gain the new items, scalars
    are overridden; a key in `replace` (at this level) is replaced whole."""
    for key, value in src.items():
        current = dst.get(key)
        if key not in replace and isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value, replace=frozenset())
        elif key not in replace and isinstance(value, list) and isinstance(current, list):
            current.extend(_copy(v) for v in value if v not in current)
        else:
            dst[key] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _glob(root: HostRoot, pattern: str) -> list[str]:
    """Host paths under `root` matching an absolute glob, one component at a time (``*`` never matches ``/``),
    like Go's filepath.Glob. Results are sorted per directory."""
    parts = [p for p in pattern.split("/") if p]
    found = ["/"]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: list[str] = []
        for base in found:
            prefix = base.rstrip("/")
            if not any(c in part for c in "*?["):
                candidate = f"{prefix}/{part}"
                if root.exists(candidate) if last else root.is_dir(candidate):
                    nxt.append(candidate)
                continue
            for name in root.listdir(base):
                candidate = f"{prefix}/{name}"
                if fnmatch.fnmatchcase(name, part) and (last or root.is_dir(candidate)):
                    nxt.append(candidate)
        found = nxt
    return found


def _resolve_imports(
    root: HostRoot, parent: str, imports: tuple[str, ...], *, major: int, warnings: list[str]
) -> list[str]:
    out: list[str] = []
    parent_dir = posixpath.dirname(parent)
    for item in imports:
        if "*" in item:
            if posixpath.isabs(item):
                pattern = posixpath.normpath(item)
            elif major >= 2:
                pattern = posixpath.normpath(posixpath.join(parent_dir, item))
            else:
                # containerd 1.x globs a relative pattern against its working directory (/ under systemd),
                # not the config file's directory (containerd#9745, fixed in 2.0).
                pattern = posixpath.normpath(posixpath.join("/", item))
                warnings.append(
                    f"{parent}: imports entry {item!r} is a relative glob; containerd 1.x resolves it against "
                    f"its working directory (/), not {parent_dir}. Use an absolute path."
                )
            out.extend(_glob(root, pattern))
        else:
            target = posixpath.normpath(item if posixpath.isabs(item) else posixpath.join(parent_dir, item))
            out.append(target)
    return out


def read_containerd_config(
    root: HostRoot,
    path: str = "/etc/containerd/config.toml",
    *,
    containerd_major: int | None = None,
) -> ContainerdConfig | None:
    """Read containerd's config and every file it imports, merged the way containerd merges them.

    Returns None when the main file does not exist (containerd then runs on built-in defaults).

    `containerd_major` selects the merge rules (they changed in 2.0); when None it is inferred: a version 3
    config means containerd 2.x, anything else 1.x.

    - 1.x: a later file's ``[plugins."<id>"]`` section replaces the earlier one whole (containerd#5837); a
      relative glob in ``imports`` is resolved against ``/``.
    - 2.x: plugin sections merge table by table; relative globs are relative to the importing file; a drop-in
      may not have a higher ``version`` than the main file, and one with a lower version is migrated.

    Imports are loaded breadth-first; later files override earlier ones. A file that cannot be read or parsed
    raises ParseError naming that file.
    """
    data = root.try_read_bytes(path)
    if data is None:
        root.exists(path)
        return None
    main = parse_containerd_config_text(_decode_toml_bytes(data, path), path=path)
    root_version = _config_version(main, path)
    major = containerd_major if containerd_major is not None else (2 if root_version >= 3 else 1)

    merged: dict[str, Any] = {}
    files: list[str] = []
    warnings: list[str] = []
    runtimes_from: dict[str, str] = {}
    plugin_owner: dict[str, str] = {}
    effective_version = root_version
    pending: list[tuple[str, str | None]] = [(path, None)]
    while pending:
        file_path, importer = pending.pop(0)
        if file_path in files:
            continue  # containerd skips a file it already loaded (import cycles)
        if len(files) >= _MAX_CONFIG_FILES:
            fail(file_path, f"more than {_MAX_CONFIG_FILES} containerd config files are imported")
        if importer is None:
            doc = main
        else:
            raw_bytes = root.try_read_bytes(file_path)
            if raw_bytes is None:
                fail(
                    file_path, f"imported by {importer} but missing or unreadable; containerd will not start"
                )
            doc = parse_containerd_config_text(_decode_toml_bytes(raw_bytes, file_path), path=file_path)
            version = _config_version(doc, file_path)
            if major >= 2:
                if "version" in doc and version > root_version:
                    fail(
                        file_path,
                        f"drop-in config version {version} is higher than the main config version {root_version} "
                        f"in {path}; containerd will not start",
                    )
                if version < root_version:
                    doc = _migrate_cri(doc, version, root_version)
            elif doc.get("version"):
                effective_version = version  # containerd 1.x: a later non-zero version overrides

        _note_shadowing(doc, merged, file_path, major, plugin_owner, warnings)
        try:
            _merge_config(merged, doc, replace_plugin_sections=major < 2)
        except RecursionError:
            fail(file_path, "tables are nested too deeply to merge")
        version_for_doc = root_version if major >= 2 else _config_version(doc, file_path)
        if version_for_doc in CRI_PLUGIN:
            for name in _cri_settings(doc, version_for_doc, path=file_path).runtimes:
                runtimes_from[name] = file_path
        files.append(file_path)
        imports = _str_list(doc, "imports", path=file_path, where="") or ()
        pending.extend(
            (p, file_path) for p in _resolve_imports(root, file_path, imports, major=major, warnings=warnings)
        )

    version = root_version if major >= 2 else effective_version
    merged["version"] = version
    merged["imports"] = files[1:]
    settings = _cri_settings(merged, version, path=path)
    runtimes = {name: _with_source(rt, runtimes_from.get(name)) for name, rt in settings.runtimes.items()}
    _version_mismatch_warnings(merged, version, path, warnings)
    return ContainerdConfig(
        version=version,
        files=tuple(files),
        runtimes=runtimes,
        default_runtime_name=settings.default_runtime_name,
        cdi_enabled=settings.cdi_enabled,
        cdi_spec_dirs=settings.cdi_spec_dirs,
        raw=merged,
        cri_plugin=CRI_PLUGIN[version],
        warnings=tuple(warnings),
    )


def _merge_config(merged: dict[str, Any], doc: dict[str, Any], *, replace_plugin_sections: bool) -> None:
    top = {k: v for k, v in doc.items() if k not in ("version", "imports", "plugins", *_REPLACED_MAPS)}
    _merge(merged, top, replace=frozenset())
    for key in _REPLACED_MAPS:
        if isinstance(doc.get(key), dict):
            target = merged.setdefault(key, {})
            for name, value in doc[key].items():
                target[name] = _copy(value)
    plugins = doc.get("plugins")
    if isinstance(plugins, dict):
        target = merged.setdefault("plugins", {})
        for name, value in plugins.items():
            if (
                replace_plugin_sections
                or not isinstance(value, dict)
                or not isinstance(target.get(name), dict)
            ):
                target[name] = _copy(value)
            else:
                _merge(target[name], value, replace=frozenset())


def _note_shadowing(
    doc: dict[str, Any],
    merged: dict[str, Any],
    file_path: str,
    major: int,
    owner: dict[str, str],
    warnings: list[str],
) -> None:
    """containerd 1.x: warn when a file replaces a plugin section an earlier file set, and settings are lost.

    A drop-in that carries a full copy of the section plus its own additions (what nvidia-ctk and
    gpudoctor's own fix write, because 1.x replaces sections whole) loses nothing, so it is not a finding.
    """
    plugins = doc.get("plugins")
    if not isinstance(plugins, dict):
        return
    earlier_plugins = merged.get("plugins")
    for name, section in plugins.items():
        earlier = owner.get(name)
        if earlier is not None and major < 2:
            before = earlier_plugins.get(name) if isinstance(earlier_plugins, dict) else None
            if not _deep_subset(before, section):
                warnings.append(
                    f'{file_path} replaces the whole [plugins."{name}"] section of {earlier}: containerd 1.x does '
                    "not merge plugin sections, so the settings there are lost"
                )
        owner[name] = file_path


def _deep_subset(old: Any, new: Any, depth: int = 0) -> bool:
    """True when every setting in `old` is still set in `new`. A changed value is an override (what a merging
    containerd would produce too); only a key that disappears is a lost setting. Tables compare recursively."""
    if depth > 64:
        return False
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _deep_subset(v, new[k], depth + 1) for k, v in old.items())
    return True


def _version_mismatch_warnings(merged: dict[str, Any], version: int, path: str, warnings: list[str]) -> None:
    plugins = merged.get("plugins")
    if not isinstance(plugins, dict):
        return
    for other_version, plugin_id in CRI_PLUGIN.items():
        if other_version == version or plugin_id not in plugins:
            continue
        section = plugins[plugin_id]
        if isinstance(section, dict) and "containerd" in section:
            warnings.append(
                f'{path} is config version {version}, but runtimes are also set under [plugins."{plugin_id}"], '
                f"where only a version {other_version} config reads them; containerd ignores them here"
            )


def _with_source(runtime: ContainerdRuntime, source: str | None) -> ContainerdRuntime:
    return ContainerdRuntime(
        name=runtime.name,
        runtime_type=runtime.runtime_type,
        binary_name=runtime.binary_name,
        systemd_cgroup=runtime.systemd_cgroup,
        options=runtime.options,
        runtime_path=runtime.runtime_path,
        defined_in=source,
    )
