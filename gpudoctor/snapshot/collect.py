"""Make a snapshot bundle: run the doctor on a host, then pack what it used (see gpudoctor.snapshot.manifest).

1. The doctor runs on a :class:`RecordingRoot`, so every host path it read, listed, tested or globbed is
   known, with the bytes each read returned (``/proc`` and ``/sys`` are virtual: their contents are stored
   as read, never re-read or tarred raw).
2. Each such path is resolved component by component; every symlink met on the way is stored as a symlink,
   and the path's own metadata (type, mode, owner, size, times, device numbers) goes to the manifest. Files
   whose contents the checks read are stored; other files, device nodes, sockets and FIFOs are stored as
   empty placeholders whose real metadata is in the manifest. Directories that were listed keep all their
   entries' names (metadata only). Paths looked for and not found are listed as absent.
3. Probe results (``facts.probe_log``) go to ``probes/<name>.json``; diagnostics (gpudoctor.snapshot.
   diagnostics) to ``diagnostics/``; the report to ``report.json``; the manifest last.
4. Secrets are redacted everywhere (gpudoctor.snapshot.redact) and the manifest lists each redaction.

The bundle is written to a temporary file next to the output and renamed into place (mode 0600).
:func:`collect_snapshot` does all of it; :func:`recording_facts` and :func:`write_bundle` are the two
halves, for callers that run checks themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat as stat_mod
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpudoctor import __version__
from gpudoctor.checks.base import CheckOptions
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot
from gpudoctor.report.model import Report
from gpudoctor.snapshot import diagnostics as diag
from gpudoctor.snapshot.manifest import (
    DIAGNOSTICS_DIR,
    FORMAT,
    MANIFEST,
    REPORT,
    PathMeta,
    member_name,
    probe_member,
)
from gpudoctor.snapshot.recording import RecordingRoot
from gpudoctor.snapshot.redact import Redaction, redact_bytes, redact_data, redact_text

MAX_LINKS = 40
MAX_LISTED_ENTRIES = 4096
# A bundle is a bug report: the checks read small files, so this is far above what a real host needs.
MAX_CONTENT_BYTES = 192 * 1024 * 1024


class SnapshotCollectError(Exception):
    """The bundle could not be made (bad output path, unwritable directory); the message says why."""


@dataclass(slots=True)
class _Entry:
    meta: PathMeta
    content: bytes | None = None
    source: str = ""


@dataclass(slots=True)
class _Plan:
    entries: dict[str, _Entry] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    content_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotResult:
    """What was written: the bundle, its member count and size, the report, redactions and notes."""

    path: Path
    members: int
    size: int
    report: Report
    redactions: int
    notes: tuple[str, ...]


# -- resolving and capturing host paths --------------------------------------------------------------------


def _lstat(root: Path, host_path: str) -> os.stat_result | None:
    try:
        return os.lstat(root.joinpath(host_path.lstrip("/")) if host_path != "/" else root)
    except (OSError, ValueError):  # ValueError: a NUL in a path some host file named
        return None


def _walk(root: Path, host_path: str, links: list[tuple[str, str]]) -> str | None:
    """Resolve `host_path` inside `root` as HostRoot does (absolute targets and ``..`` stay inside), adding
    every symlink met to `links`. Returns the resolved host path, or None for a link loop."""
    pending = [c for c in host_path.split("/") if c not in ("", ".")]
    pending.reverse()
    done: list[str] = []
    count = 0
    while pending:
        comp = pending.pop()
        if comp == "..":
            if done:
                done.pop()
            continue
        here = "/" + "/".join([*done, comp])
        st = _lstat(root, here)
        if st is not None and stat_mod.S_ISLNK(st.st_mode):
            count += 1
            if count > MAX_LINKS:
                return None
            try:
                target = os.readlink(root.joinpath(here.lstrip("/")))
            except OSError:
                return None
            links.append((here, target))
            if target.startswith("/"):
                done = []
            pending.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
            continue
        done.append(comp)
    return "/" + "/".join(done)


def inside_target(link_path: str, target: str) -> str:
    """The on-disk target for a link at host path `link_path`: relative, and never climbing above the root
    (an absolute target becomes ``../..``-relative; a ``..`` above the root is dropped, as HostRoot does)."""
    parent = [c for c in link_path.split("/")[:-1] if c]
    absolute = target.startswith("/")
    depth = 0 if absolute else len(parent)
    out: list[str] = [".."] * len(parent) if absolute else []
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if depth == 0:
                continue
            depth -= 1
        else:
            depth += 1
        out.append(comp)
    return "/".join(out) or "."


def _add_meta(plan: _Plan, root: Path, host_path: str, source: str) -> _Entry | None:
    """Record `host_path` (not following a final link) and its parent directories; None when absent."""
    entry = plan.entries.get(host_path)
    if entry is not None:
        return entry
    st = _lstat(root, host_path)
    if st is None:
        plan.absent.add(host_path)
        return None
    target = None
    if stat_mod.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(root.joinpath(host_path.lstrip("/")))
        except OSError:
            target = ""
    entry = _Entry(meta=PathMeta.from_stat(st, target=target), source=source)
    plan.entries[host_path] = entry
    parent = host_path.rsplit("/", 1)[0] or "/"
    if parent != host_path:
        _add_meta(plan, root, parent, "parent directory")
    return entry


def _capture(plan: _Plan, root: Path, host_path: str, *, contents: Mapping[str, bytes],
             errors: Mapping[str, tuple[int, str]], listed: bool) -> None:
    links: list[tuple[str, str]] = []
    resolved = _walk(root, host_path, links)
    for link, _target in links:
        _add_meta(plan, root, link, f"symlink on the way to {host_path}")
    if resolved is None:
        plan.notes.append(f"{host_path}: too many levels of symbolic links (recorded as far as they go)")
        return
    entry = _add_meta(plan, root, resolved, host_path)
    if entry is None:
        plan.absent.add(host_path)
        return
    if resolved == host_path:
        entry.source = host_path  # a check used it directly (it may have come in as a parent first)
    meta = entry.meta
    data = contents.get(host_path)
    if data is not None and meta.kind == "file" and (entry.content is None or len(data) > len(entry.content)):
        if plan.content_bytes + len(data) > MAX_CONTENT_BYTES:
            plan.notes.append(f"{host_path}: contents left out (the bundle reached "
                              f"{MAX_CONTENT_BYTES // (1024 * 1024)} MiB)")
        else:
            plan.content_bytes += len(data) - len(entry.content or b"")
            entry.content = data
    error = errors.get(host_path)
    if error is not None and entry.content is None:
        entry.meta = _replace(meta, read_error=error)
    if listed and meta.kind == "dir":
        _capture_listing(plan, root, resolved)


def _capture_listing(plan: _Plan, root: Path, dir_path: str) -> None:
    real = root.joinpath(dir_path.lstrip("/")) if dir_path != "/" else root
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        plan.notes.append(f"{dir_path}: cannot list it again ({exc.strerror})")
        return
    if len(names) > MAX_LISTED_ENTRIES:
        plan.notes.append(f"{dir_path}: {len(names)} entries, only the first {MAX_LISTED_ENTRIES} recorded")
    for name in names[:MAX_LISTED_ENTRIES]:
        child = f"{dir_path.rstrip('/')}/{name}"
        _add_meta(plan, root, child, f"entry of {dir_path}")


def _replace(meta: PathMeta, **changes: Any) -> PathMeta:
    from dataclasses import replace

    return replace(meta, **changes)


def plan_capture(root: RecordingRoot) -> _Plan:
    """Everything the doctor used under `root`, as bundle entries (see the module docstring)."""
    plan = _Plan()
    norm = HostRoot.normalize
    # Checks name paths as they like (``/etc//x``); everything is keyed by the normalized form.
    contents: dict[str, bytes] = {}
    for path, data in root.reads().items():
        if len(data) >= len(contents.get(norm(path), b"")):
            contents[norm(path)] = data
    errors = {norm(path): error for path, error in root.read_errors().items()}
    listed = {norm(path) for path in root.listed()}
    paths = {norm(p) for p in root.accessed if "\0" not in p} | set(contents) | listed
    for host_path in sorted(paths):
        _capture(plan, root.root, host_path, contents=contents, errors=errors, listed=host_path in listed)
    for path, entry in plan.entries.items():
        if entry.meta.kind == "file" and entry.content is not None:
            # /proc and /sys report sizes (0, 4096) that say nothing about their contents.
            virtual = path.startswith(("/proc/", "/sys/"))
            full = virtual or len(entry.content) >= entry.meta.size
            entry.meta = _replace(entry.meta, content="full" if full else "partial")
    plan.absent -= set(plan.entries)
    return plan


# -- writing the bundle ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Writer:
    tar: tarfile.TarFile
    mtime: int
    members: list[dict[str, Any]] = field(default_factory=list)
    redactions: list[dict[str, Any]] = field(default_factory=list)

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add_file(self, name: str, data: bytes, *, source: Mapping[str, Any], host: PathMeta | None = None,
                 redact: bool = True) -> None:
        if redact:
            data, found = redact_bytes(data)
            self._note_redactions(name, source, found)
        info = self._info(name, tarfile.REGTYPE, 0o644)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        entry: dict[str, Any] = {"name": name, "type": "file", "size": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(), "source": dict(source)}
        if host is not None:
            entry["host"] = host.to_dict()
        self.members.append(entry)

    def add_json(self, name: str, data: Any, *, source: Mapping[str, Any]) -> None:
        clean, found = redact_data(data)
        self._note_redactions(name, source, found)
        text = json.dumps(clean, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        self.add_file(name, text.encode("utf-8"), source=source, redact=False)

    def add_dir(self, name: str, *, source: Mapping[str, Any], host: PathMeta) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))
        self.members.append({"name": name, "type": "dir", "sha256": None, "source": dict(source),
                             "host": host.to_dict()})

    def add_symlink(self, name: str, target: str, *, source: Mapping[str, Any], host: PathMeta) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)
        self.members.append({"name": name, "type": "symlink", "target": target, "sha256": None,
                             "source": dict(source), "host": host.to_dict()})

    def _note_redactions(self, name: str, source: Mapping[str, Any], found: list[Redaction]) -> None:
        origin = source.get("path") or " ".join(source.get("command") or []) or source.get("probe") or name
        for r in found:
            self.redactions.append({"member": name, "source": origin, **r.to_dict()})


def _write_entries(w: _Writer, plan: _Plan) -> None:
    for host_path in sorted(plan.entries):
        entry = plan.entries[host_path]
        name = member_name(host_path)
        meta = entry.meta
        source = {"path": host_path}
        if entry.source != host_path:  # not read by a check itself: say why it is here
            source["via"] = entry.source
        if meta.kind == "dir":
            w.add_dir(name, source=source, host=meta)
        elif meta.kind == "symlink":
            w.add_symlink(name, inside_target(host_path, meta.target or ""), source=source, host=meta)
        else:
            data = entry.content if meta.kind == "file" and entry.content is not None else b""
            if host_path.startswith(("/proc/", "/sys/")) and entry.content is not None:
                source["read"] = "contents as the checks read them (virtual file)"
            w.add_file(name, data, source=source, host=meta)


def _output_path(output: str | os.PathLike[str]) -> Path:
    path = Path(os.path.abspath(os.fspath(output)))
    if path.is_dir():
        raise SnapshotCollectError(f"{output} is a directory; give a file name such as {output}/snapshot.tar.gz")
    if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise SnapshotCollectError(f"{output}: the bundle's name must end in .tar.gz, .tgz or .tar "
                                   "(`gpudoctor --check --root FILE` recognises it by that)")
    if not path.parent.is_dir():
        raise SnapshotCollectError(f"{path.parent}: no such directory for the bundle")
    return path


def default_output_name(now: float | None = None) -> str:
    """``gpudoctor-snapshot-YYYYmmdd-HHMMSS.tar.gz`` (local time)."""
    return time.strftime("gpudoctor-snapshot-%Y%m%d-%H%M%S.tar.gz", time.localtime(now))


def collect_snapshot(
    output: str | os.PathLike[str],
    *,
    root: str = "/",
    offline: bool = False,
    docker_host: str | None = None,
    options: CheckOptions | None = None,
) -> SnapshotResult:
    """Run the doctor on `root` and write the bundle to `output` (see the module docstring).

    Raises SnapshotCollectError for an unusable output path or root; a check that fails is a finding in the
    bundle's report, not an error here.
    """
    from gpudoctor.doctor import run_doctor

    path = _output_path(output)
    if not os.path.isdir(root):
        raise SnapshotCollectError(f"--root {root}: not a directory (give the host's root directory, e.g. / or "
                                   "/host; a snapshot archive cannot be snapshotted again)")
    opts = options or CheckOptions()
    opts.offline = offline
    opts.docker_host = docker_host
    facts = recording_facts(root, offline=offline, docker_host=docker_host)
    report = run_doctor(facts, options=opts)
    return write_bundle(path, facts=facts, report=report, timeout=opts.timeout)


def recording_facts(root: str = "/", *, offline: bool = False, docker_host: str | None = None) -> HostFacts:
    """HostFacts on a RecordingRoot: run checks on them, then hand them to write_bundle."""
    return HostFacts(root=RecordingRoot(root, offline=offline), docker_host=docker_host)


def write_bundle(output: str | os.PathLike[str], *, facts: HostFacts, report: Report,
                 timeout: float = diag.COMMAND_TIMEOUT_S) -> SnapshotResult:
    """Pack what the checks run on `facts` (from recording_facts) used, their probes, the diagnostics and
    `report` into the bundle `output` (written to a temporary file, then renamed; mode 0600)."""
    recording = facts.root
    if not isinstance(recording, RecordingRoot):
        raise TypeError("write_bundle needs facts made by recording_facts()")
    path = _output_path(output)
    offline, docker_host = recording.offline, facts.docker_host
    plan = plan_capture(recording)
    extra = _diagnostics(recording, facts, offline=offline, docker_host=docker_host, timeout=timeout)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
            with tarfile.open(fileobj=raw, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                w = _Writer(tar=tar, mtime=int(time.time()))
                _write_entries(w, plan)
                for name, value in sorted(facts.probe_log.items()):
                    w.add_json(probe_member(name), value,
                               source={"probe": name, "what": _PROBE_WHAT.get(name, "a live probe's result")})
                for item in extra.items:
                    if item.name.endswith(".json"):
                        w.add_json(f"{DIAGNOSTICS_DIR}/{item.name}", json.loads(item.data), source=item.source)
                    else:
                        w.add_file(f"{DIAGNOSTICS_DIR}/{item.name}", item.data, source=item.source)
                w.add_json(REPORT, report.to_dict(), source={"command": ["gpudoctor", "--check", "--json"]})
                manifest = _manifest(w, plan, extra.notes, root=str(recording.root), offline=offline,
                                     docker_host=docker_host)
                data = (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
                info = w._info(MANIFEST, tarfile.REGTYPE, 0o644)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return SnapshotResult(path=path, members=len(w.members) + 1, size=path.stat().st_size, report=report,
                          redactions=len(w.redactions), notes=tuple(plan.notes + extra.notes))


_PROBE_WHAT = {
    "nvml": "the NVML query (driver version, GPUs) through the root's libnvidia-ml.so.1",
    "docker": "docker info / docker version as the Docker probe saw them",
    "parity": "the in-container nvidia-smi run of parity.nvidia_smi",
}


def _diagnostics(root: RecordingRoot, facts: HostFacts, *, offline: bool, docker_host: str | None,
                 timeout: float) -> diag.Collected:
    # A plain HostRoot: what diagnostics read is not something the checks used, so it stays out of root/.
    plain = HostRoot(root.root, offline=offline)
    url = diag.endpoint_url(facts.probe_log, docker_host)
    socket_path = url[len("unix://"):] if url and url.startswith("unix://") else None
    parts = [
        diag.docker_daemon(url, offline=offline, timeout=timeout),
        diag.dockerd_process(plain, socket_path=socket_path),
        diag.nvidia_smi(plain, offline=offline, timeout=timeout),
        diag.kernel_log(plain, offline=offline, timeout=timeout),
        diag.toolkit_logs(plain),
    ]
    return diag.merge(*parts)


def _manifest(w: _Writer, plan: _Plan, notes: list[str], *, root: str, offline: bool,
              docker_host: str | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "tool": {"name": "gpudoctor", "version": __version__},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"root": os.path.abspath(root), "offline": offline, "docker_host": docker_host,
                   "docker_host_env": redact_text(os.environ.get("DOCKER_HOST", ""))[0] or None},
        "members": w.members,
        "absent": sorted(plan.absent),
        "redactions": w.redactions,
        "notes": plan.notes + notes,
    }
