"""``gpudoctor-runtime``: a runc-compatible OCI runtime shim that attaches NVIDIA GPUs.

Registered in daemon.json as ``"runtimes": {"gpudoctor": {"path": ...}}``. It is called with runc's
command line. For ``create`` and ``run`` it reads ``<bundle>/config.json``; if the container asks for a GPU
(NVIDIA_VISIBLE_DEVICES in ``process.env``, or a ``cdi.k8s.io/`` annotation) it adds the device nodes,
device-cgroup rules, read-only bind mounts and the createContainer hook, writes the spec atomically, and
execs runc with the same arguments. Every other verb, and every container that asks for no GPU, goes to
runc untouched: the spec stays byte-identical because it is never rewritten.

The hook's work (symlinks, ld cache) is done by a hook server that the shim forks just before it execs
runc (gpudoctor.engine.hookserver): the spec gets a ``/bin/sh`` relay entry instead of the Python one, so
the container start pays for one Python interpreter, not two. When the server cannot be used (not root, no
private cache dir), the spec keeps the Python entry. The log record says which (``"hooks"``).

Errors go to stderr and, in runc's JSON format, to the ``--log`` file that containerd reads, so Docker
shows them; the exit status is 1 and runc is not started. The inventory of the driver comes from a cache
(gpudoctor.engine.cache) so discovery does not rerun on every start.

The sh launcher (gpudoctor.engine.launcher) runs this module only for create/run of a bundle whose
config.json mentions a GPU request, so most calls never start Python.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from gpudoctor.engine.edits import ContainerEdits
    from gpudoctor.engine.hookserver import HookServer
    from gpudoctor.engine.settings import Settings

PROG = "gpudoctor-runtime"
EDIT_VERBS = ("create", "run")
# runc's global flags (urfave/cli): those that take a value, and booleans.
_GLOBAL_VALUE = frozenset({"root", "log", "log-format", "criu", "rootless"})
_GLOBAL_BOOL = frozenset({"debug", "systemd-cgroup", "help", "h", "version", "v"})
# Flags of `runc create` and `runc run`.
_CREATE_VALUE = frozenset({"bundle", "b", "console-socket", "pid-file", "preserve-fds"})
_CREATE_BOOL = frozenset({"no-pivot", "no-new-keyring", "detach", "d", "keep", "no-subreaper", "help", "h"})
_ALIASES = {"b": "bundle", "h": "help", "v": "version", "d": "detach"}
_REQUEST_MARKERS = (b"NVIDIA_VISIBLE_DEVICES", b"cdi.k8s.io/")


class ShimError(Exception):
    """A create cannot go ahead. The message is for the user (Docker shows it)."""


class RuncArgs:
    """What runc will make of its command line: the verb, the bundle (None: the cwd) and the log file."""

    __slots__ = ("verb", "bundle", "log", "log_format", "container_id")

    def __init__(
        self,
        *,
        verb: str | None,
        bundle: str | None = None,
        log: str | None = None,
        log_format: str | None = None,
        container_id: str | None = None,
    ) -> None:
        self.verb = verb
        self.bundle = bundle
        self.log = log
        self.log_format = log_format
        self.container_id = container_id

    def __repr__(self) -> str:
        return "RuncArgs(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _flags(
    argv: Sequence[str], start: int, value_flags: frozenset[str], bool_flags: frozenset[str]
) -> tuple[dict[str, str], int] | None:
    """Go flag-package parsing from argv[start]: ({name: last value}, index of the first operand).

    None when a flag is unknown or lacks its value: runc itself will refuse that command line.
    """
    values: dict[str, str] = {}
    i = start
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return values, i + 1
        if not arg.startswith("-") or arg == "-":
            return values, i
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, value = body.partition("=")
        if name in value_flags:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i += 1
                value = argv[i]
            values[_ALIASES.get(name, name)] = value  # repeated: the last one wins, as in Go
        elif name in bool_flags:
            values[_ALIASES.get(name, name)] = value if eq else "true"
        else:
            return None
        i += 1
    return values, i


def parse_runc_args(argv: Sequence[str]) -> RuncArgs | None:
    """Interpret argv as runc does. None when runc would reject it (then it is passed through as is)."""
    parsed = _flags(argv, 0, _GLOBAL_VALUE, _GLOBAL_BOOL)
    if parsed is None:
        return None
    globals_, i = parsed
    log, log_format = globals_.get("log"), globals_.get("log-format")
    if i >= len(argv):
        return RuncArgs(verb=None, log=log, log_format=log_format)
    verb = argv[i]
    if verb not in EDIT_VERBS:
        return RuncArgs(verb=verb, log=log, log_format=log_format)
    sub = _flags(argv, i + 1, _CREATE_VALUE, _CREATE_BOOL)
    if sub is None:
        return None
    flags, j = sub
    bundle = flags.get("bundle")
    container_id = argv[j] if j < len(argv) else None
    return RuncArgs(verb=verb, bundle=bundle, log=log, log_format=log_format, container_id=container_id)


# ------------------------------------------------------------------------------------------------ create


def _log_line(settings: Settings, record: dict[str, object]) -> None:
    """Append one JSON line to the shim's log_file; a broken log never breaks a container start."""
    if not settings.log_file:
        return
    from gpudoctor.engine import fastjson

    line = (fastjson.dumps(record) + "\n").encode("utf-8", "surrogateescape")
    try:
        fd = os.open(
            settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
        )
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def edit_bundle(args: RuncArgs, settings: Settings) -> dict[str, object]:
    """Attach the requested GPUs to the bundle's spec. Returns a log record; raises ShimError.

    The spec gets the engine's Python hook entry (the hook server is only used by `main`)."""
    record, _ = _edit_bundle(args, settings, hook_server=False)
    return record


def _edit_bundle(
    args: RuncArgs, settings: Settings, *, hook_server: bool
) -> tuple[dict[str, object], HookServer | None]:
    """edit_bundle; with `hook_server`, a prepared gpudoctor.engine.hookserver when the spec got its relay
    hook entry (the caller must start it before runc runs)."""
    from gpudoctor.engine.oci import Bundle, SpecError

    bundle_path = args.bundle if args.bundle is not None else "."
    record: dict[str, object] = {"verb": args.verb, "id": args.container_id, "bundle": bundle_path}
    server: HookServer | None = None
    try:
        with Bundle(bundle_path) as bundle:
            data, st = bundle.read_config()
            if settings.log_file:
                record["sha256_before"] = _sha256(data)
            # A request needs one of these literally in the file; without them nothing is even parsed.
            if not any(marker in data for marker in _REQUEST_MARKERS):
                record["request"] = None
                return record, None
            new, server = _edited_spec(
                data, settings, record, os.path.abspath(bundle_path) if hook_server else None
            )
            if new is None:
                return record, None
            bundle.write_config(new, st)
            if settings.log_file:
                record["sha256_after"] = _sha256(new)
            return record, server
    except SpecError as exc:
        if server is not None:
            server.discard()
        raise ShimError(str(exc)) from None
    except BaseException:
        if server is not None:
            server.discard()
        raise


def _rootfs(spec: dict[str, object], bundle: str) -> str | None:
    """The container root's host path as runc computes it from ``root.path``; None when it has none."""
    root = spec.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path or "\0" in path:
        return None
    return os.path.normpath(os.path.join(bundle, path))


def _with_server(
    spec: dict[str, object], edits: ContainerEdits, settings: Settings, bundle: str, record: dict[str, object]
) -> tuple[ContainerEdits, HookServer | None]:
    """Swap the edits' Python hook entry for the hook server's relay entry, when a server can be used."""
    if not edits.hooks:
        return edits, None
    record["hooks"] = "process"
    rootfs = _rootfs(spec, bundle)
    if not settings.cache_dir or rootfs is None:
        return edits, None
    from gpudoctor.engine.edits import ContainerEdits
    from gpudoctor.engine.hookserver import prepare

    server = prepare(edits.hooks, rootfs=rootfs, run_dir=settings.cache_dir)
    if server is None:
        return edits, None
    record["hooks"] = "server"
    swapped = ContainerEdits(
        env=edits.env, device_nodes=edits.device_nodes, mounts=edits.mounts, hooks=[server.relay_hook]
    )
    return swapped, server


def _edited_spec(
    data: bytes, settings: Settings, record: dict[str, object], bundle: str | None
) -> tuple[bytes | None, HookServer | None]:
    from gpudoctor.engine.cache import load_inventory
    from gpudoctor.engine.inventory import DiscoveryError
    from gpudoctor.engine.oci import annotations_of, apply_edits, env_of, parse_config, serialize
    from gpudoctor.engine.request import RequestError, request_from_config
    from gpudoctor.engine.selection import SelectionError, select

    spec = parse_config(data)
    try:
        request = request_from_config(env_of(spec), annotations_of(spec))
    except RequestError as exc:
        raise ShimError(str(exc)) from None
    record["request"] = None if request is None else ",".join(request.devices) or "none"
    if request is None:
        return None, None
    try:
        inventory = load_inventory(settings.driver_root, settings.dev_root, settings.cache_dir)
        edits = select(inventory, request)
    except (DiscoveryError, SelectionError) as exc:
        raise ShimError(str(exc)) from None
    record["devices"] = [n.path for n in edits.device_nodes]
    server = None
    if bundle is not None:
        edits, server = _with_server(spec, edits, settings, bundle, record)
    try:
        apply_edits(spec, edits)
        return serialize(spec), server
    except BaseException:
        if server is not None:
            server.discard()
        raise


# ------------------------------------------------------------------------------------------------- main


def _report(message: str, args: RuncArgs | None) -> None:
    """Tell the user: stderr, and runc's --log file (containerd shows its last error line)."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()
    if args is None or not args.log:
        return
    if args.log_format == "json":
        from gpudoctor.engine import fastjson

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = fastjson.dumps({"level": "error", "msg": f"{PROG}: {message}", "time": stamp}) + "\n"
    else:
        line = f"{PROG}: error: {message}\n"
    try:
        fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    except OSError:
        pass
    finally:
        os.close(fd)


def _exec_runc(runc: str, argv: Sequence[str], args: RuncArgs | None) -> int:
    if os.path.basename(runc).startswith("gpudoctor"):
        _report(f"runc is set to {runc}, which is gpudoctor itself; set runc to the real runc", args)
        return 1
    try:
        os.execv(runc, [runc, *argv])
    except OSError as exc:
        _report(f"cannot run {runc}: {exc.strerror}; set runc in the gpudoctor runtime settings", args)
        return 127
    return 127  # not reached: execv does not return


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns only on error (success execs runc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from gpudoctor.engine.settings import SettingsError, load_settings

    args = parse_runc_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        _report(
            f"{exc}. Fix the settings file (keys: runc, driver_root, dev_root, log_file, cache_dir)", args
        )
        return 1
    if args is None or args.verb not in EDIT_VERBS:
        return _exec_runc(settings.runc, argv, args)
    started = time.monotonic()
    record: dict[str, object] = {"verb": args.verb, "id": args.container_id}
    server: HookServer | None = None
    try:
        record, server = _edit_bundle(args, settings, hook_server=True)
    except ShimError as exc:
        record["error"] = str(exc)
        _finish(settings, record, started)
        _report(str(exc), args)
        return 1
    except Exception as exc:  # a bug must still not start a half-edited container, nor print a traceback
        message = f"internal error ({type(exc).__name__}: {exc}); the container was not started"
        record["error"] = message
        _finish(settings, record, started)
        _report(message, args)
        return 1
    _finish(settings, record, started)
    if server is not None:
        try:
            server.start()
        except OSError as exc:  # the spec now names the relay: runc must not run without its server
            _report(f"cannot start the hook server: {exc}; the container was not started", args)
            return 1
    return _exec_runc(settings.runc, argv, args)


def _finish(settings: Settings, record: dict[str, object], started: float) -> None:
    if settings.log_file:
        record["ms"] = round((time.monotonic() - started) * 1000, 2)
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _log_line(settings, record)
