"""Reading, editing and atomically rewriting an OCI bundle's ``config.json``.

The file is written by the container engine but its content comes partly from untrusted images (env,
annotations), so it is read strictly: at most 16 MiB, UTF-8 without BOM, no NaN/Infinity, no duplicate
keys, and no keys that differ only in case (Go's encoding/json, which runc uses, matches keys
case-insensitively, so ``"Env"`` next to ``"env"`` would mean one thing to us and another to runc). Any
problem is a SpecError and the file is left untouched. Unknown fields are preserved.

Edits go where runc applies them itself (``linux.devices``, ``linux.resources.devices``, ``mounts``,
``hooks.createContainer``), so runc's hardened path handling does the mounting. The new file is written
completely under a temporary name and renamed into place inside the bundle directory (the original is kept
as ``config.json.gpudoctor-orig``): runc sees the old spec or the new one, never a mix.
"""

from __future__ import annotations

import os
import stat

from gpudoctor.engine import fastjson
from gpudoctor.engine.request import quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gpudoctor.engine.edits import ContainerEdits

MAX_CONFIG_BYTES = 16 * 1024 * 1024
CONFIG_NAME = "config.json"
BACKUP_NAME = "config.json.gpudoctor-orig"

# Keys this module reads or writes, per object; a case variant of one of them is rejected as ambiguous.
_TOP_KEYS = ("ociVersion", "process", "root", "mounts", "hooks", "annotations", "linux")
_PROCESS_KEYS = ("env",)
_LINUX_KEYS = ("devices", "resources")
_RESOURCES_KEYS = ("devices",)
_HOOK_KEYS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class SpecError(Exception):
    """config.json cannot be read, parsed or safely edited. The message says which and why."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SpecError(f"config.json has the key {quote(key)} twice in one object")
        out[key] = value
    if len(out) > 1 and len({k.lower() for k in out}) != len(out):
        seen: dict[str, str] = {}
        for key in out:
            other = seen.setdefault(key.lower(), key)
            if other != key:
                raise SpecError(
                    f"config.json has keys {quote(other)} and {quote(key)} that differ only in case"
                )
    return out


def _no_constant(name: str) -> Any:
    raise SpecError(f"config.json contains {name}, which is not valid JSON")


def parse_config(data: bytes, *, path: str = CONFIG_NAME) -> dict[str, Any]:
    """Parse config.json bytes strictly (see the module doc). Raises SpecError."""
    if len(data) > MAX_CONFIG_BYTES:
        raise SpecError(f"{path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        spec = fastjson.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except RecursionError:
        raise SpecError(f"{path} is nested too deeply to be an OCI spec") from None
    except ValueError as exc:
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        where = f" at line {line} column {column}" if line is not None else ""
        raise SpecError(f"{path} is not valid JSON: {getattr(exc, 'msg', exc)}{where}") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{path} must hold a JSON object, not {type(spec).__name__}")
    _check_shape(spec, path)
    return spec


def _canonical(obj: dict[str, Any], keys: tuple[str, ...], where: str, path: str) -> None:
    lowered = {k.lower(): k for k in keys}
    for key in obj:
        canonical = lowered.get(key.lower())
        if canonical is not None and canonical != key:
            raise SpecError(f"{path}: {where}{quote(key)} must be spelled {quote(canonical)}")


def _expect(value: Any, kind: type, what: str, path: str) -> None:
    if not isinstance(value, kind):
        raise SpecError(f"{path}: {what} must be a JSON {'object' if kind is dict else 'array'}")


def _check_shape(spec: dict[str, Any], path: str) -> None:
    """Type-check the parts this module reads or edits."""
    _canonical(spec, _TOP_KEYS, "", path)
    process = spec.get("process")
    if process is not None:
        _expect(process, dict, "process", path)
        _canonical(process, _PROCESS_KEYS, "process.", path)
        env = process.get("env")
        if env is not None:
            _expect(env, list, "process.env", path)
            for entry in env:
                if not isinstance(entry, str):
                    raise SpecError(f"{path}: process.env must hold strings, found {type(entry).__name__}")
    annotations = spec.get("annotations")
    if annotations is not None:
        _expect(annotations, dict, "annotations", path)
    if "mounts" in spec:
        _expect(spec["mounts"], list, "mounts", path)
        for mount in spec["mounts"]:
            _expect(mount, dict, "each mounts entry", path)
    hooks = spec.get("hooks")
    if hooks is not None:
        _expect(hooks, dict, "hooks", path)
        _canonical(hooks, _HOOK_KEYS, "hooks.", path)
        if "createContainer" in hooks:
            _expect(hooks["createContainer"], list, "hooks.createContainer", path)
    linux = spec.get("linux")
    if linux is not None:
        _expect(linux, dict, "linux", path)
        _canonical(linux, _LINUX_KEYS, "linux.", path)
        if "devices" in linux:
            _expect(linux["devices"], list, "linux.devices", path)
        resources = linux.get("resources")
        if resources is not None:
            _expect(resources, dict, "linux.resources", path)
            _canonical(resources, _RESOURCES_KEYS, "linux.resources.", path)
            if "devices" in resources:
                _expect(resources["devices"], list, "linux.resources.devices", path)


def env_of(spec: dict[str, Any]) -> list[str]:
    process = spec.get("process") or {}
    env: list[str] = process.get("env") or []
    return env


def annotations_of(spec: dict[str, Any]) -> dict[str, Any]:
    annotations: dict[str, Any] = spec.get("annotations") or {}
    return annotations


def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def _is_bind(mount: dict[str, Any]) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or (
        isinstance(options, list) and ("bind" in options or "rbind" in options)
    )


def apply_edits(spec: dict[str, Any], edits: ContainerEdits) -> None:
    """Add `edits` to a parsed spec in place. Raises SpecError (leaving `spec` unusable) on a conflict."""
    if edits.env:
        process = spec.setdefault("process", {})
        env = process.setdefault("env", [])
        present = {e.partition("=")[0] for e in env}
        env.extend(e for e in edits.env if e.partition("=")[0] not in present)

    if edits.device_nodes:
        linux = spec.setdefault("linux", {})
        ours = {n.path for n in edits.device_nodes}
        devices = [
            d for d in linux.get("devices") or [] if not (isinstance(d, dict) and d.get("path") in ours)
        ]
        devices.extend(n.to_oci() for n in edits.device_nodes)
        linux["devices"] = devices
        rules = linux.setdefault("resources", {}).setdefault("devices", [])
        for node in edits.device_nodes:
            rule = node.to_oci_rule()
            if rule not in rules:
                rules.append(rule)

    if edits.mounts:
        mounts = spec.setdefault("mounts", [])
        existing = {_norm(str(m.get("destination", ""))): m for m in mounts}
        binds = [(dest, m) for dest, m in existing.items() if _is_bind(m) and dest != "/"]
        for mount in edits.mounts:
            dest = _norm(mount.container_path)
            if dest in existing:
                continue  # the user's own mount at that path wins
            for parent, theirs in binds:
                if dest.startswith(parent + "/"):
                    raise SpecError(
                        f"{mount.container_path} would be mounted inside {parent}, which is a bind mount of "
                        f"{quote(str(theirs.get('source', '?')))}; runc would create the mount point in that "
                        "host directory. Mount it elsewhere in the container, or request no GPU"
                    )
            mounts.append(mount.to_oci())

    if edits.hooks:
        hooks = spec.setdefault("hooks", {})
        stage = hooks.setdefault("createContainer", [])
        for hook in edits.hooks:
            entry = hook.to_oci()
            if entry not in stage:
                stage.append(entry)


def serialize(spec: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as container engines write it. Raises SpecError for unencodable strings."""
    try:
        return fastjson.dumps(spec).encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(
            "config.json contains a lone UTF-16 surrogate (an invalid \\ud800-style escape)"
        ) from None
    except (TypeError, ValueError) as exc:
        raise SpecError(f"config.json cannot be written back: {exc}") from None


class Bundle:
    """An open bundle directory. Paths inside it are opened relative to its fd, never re-walked."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SpecError(f"cannot open the bundle directory {quote(path, 200)}: {exc.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_config(self) -> tuple[bytes, os.stat_result]:
        """The raw bytes of config.json and its stat. Raises SpecError (missing, not a file, too big)."""
        where = f"{self.path}/{CONFIG_NAME}"
        try:
            fd = os.open(
                CONFIG_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.fd
            )
        except OSError as exc:
            raise SpecError(f"cannot open {quote(where, 200)}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SpecError(f"{quote(where, 200)} is not a regular file")
            if st.st_size > MAX_CONFIG_BYTES:
                raise SpecError(f"{quote(where, 200)} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
            chunks: list[bytes] = []
            total = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > MAX_CONFIG_BYTES:
                    raise SpecError(
                        f"{quote(where, 200)} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB"
                    )
                chunks.append(chunk)
            return b"".join(chunks), st
        finally:
            os.close(fd)

    def write_config(self, data: bytes, original: os.stat_result) -> None:
        """Replace config.json, keeping its mode and owner and the original as BACKUP_NAME. Raises SpecError.

        The new file is complete before it gets the name: config.json is always the original, the new spec,
        or (only if the shim dies between the two renames) absent, which runc reports; never a mix. Moving
        the original aside first also keeps the rename from replacing a file, which on ext4 forces the new
        file's data out to disk (auto_da_alloc, ~4 ms) on every container start.
        """
        tmp = f".{CONFIG_NAME}.gpudoctor-{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, stat.S_IMODE(original.st_mode), dir_fd=self.fd)
        except OSError as exc:
            raise SpecError(f"cannot write in the bundle {quote(self.path, 200)}: {exc.strerror}") from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                st = os.fstat(fd)
                if stat.S_IMODE(st.st_mode) != stat.S_IMODE(original.st_mode):
                    os.fchmod(fd, stat.S_IMODE(original.st_mode))  # the umask filtered open()'s mode
                if (st.st_uid, st.st_gid) != (original.st_uid, original.st_gid):
                    os.fchown(fd, original.st_uid, original.st_gid)
            finally:
                os.close(fd)
            # No fsync: the bundle lives as long as the container and runc reads it right after the rename.
            os.rename(CONFIG_NAME, BACKUP_NAME, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            import contextlib  # only on this error path

            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise SpecError(f"cannot write in the bundle {quote(self.path, 200)}: {exc.strerror}") from None
        try:
            os.rename(tmp, CONFIG_NAME, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            import contextlib  # only on this error path

            with contextlib.suppress(OSError):
                os.rename(BACKUP_NAME, CONFIG_NAME, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise SpecError(f"cannot replace {quote(self.path, 200)}/{CONFIG_NAME}: {exc.strerror}") from None
