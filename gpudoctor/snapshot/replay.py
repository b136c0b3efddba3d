"""Replay a snapshot bundle: ``gpudoctor --check --root FILE.tar.gz`` (and the TUI with the same flag).

:func:`open_snapshot` extracts the bundle safely (gpudoctor.snapshot.safety) into a private temporary
directory (``mkdtemp``, mode 0700), checks it against its manifest (every member listed, every sha256
right, nothing extra), and yields HostFacts whose root is the extracted ``root/`` seen through a
:class:`SnapshotRoot`: stat/lstat/readlink answer with the host's recorded metadata (device nodes, modes,
owners, times), reads that failed on the host fail the same way. Nothing live runs in a replay: every
probe answers from the recording (HostFacts ``replay``), and one that was not recorded is never run here.
The checks see the snapshotted run's ``offline`` flag, so a bundle taken live replays its live findings
(and the report's ``host.offline`` says false), one taken with ``--offline`` replays the offline ones.
The directory is removed when the block ends, whatever happens.

A bundle that cannot be used raises :class:`SnapshotError` (a HostOpenError, so ``gpudoctor --check``
and the TUI print it and exit 2): the message names the archive, the member and the reason.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import DEFAULT_MAX_BYTES, HostRoot
from gpudoctor.snapshot import safety
from gpudoctor.snapshot.manifest import (
    FORMAT,
    MANIFEST,
    PROBES_DIR,
    ROOT_DIR,
    ManifestError,
    PathMeta,
    member_name,
    probe_name,
)
from gpudoctor.snapshot.safety import CorruptSnapshot, Extracted, SnapshotError, extract_bundle

__all__ = ["Bundle", "SnapshotError", "SnapshotRoot", "load_bundle", "open_snapshot"]

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_PROBE_BYTES = 16 * 1024 * 1024


class SnapshotRoot(HostRoot):
    """The extracted ``root/`` of a bundle, answering with the host's recorded metadata (`meta`, keyed by
    resolved host path). Paths without metadata (none, in a bundle gpudoctor made) fall back to the disk."""

    def __init__(self, root: str | os.PathLike[str], *, meta: Mapping[str, PathMeta], label: str,
                 offline: bool = True) -> None:
        super().__init__(root, offline=offline)
        self.meta = dict(meta)
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    def _lookup(self, host_path: str, *, follow: bool) -> PathMeta | None:
        try:
            return self.meta.get(self.resolve(host_path, follow=follow))
        except OSError:
            return None

    def stat(self, host_path: str) -> os.stat_result | None:
        m = self._lookup(host_path, follow=True)
        if m is None:
            return super().stat(host_path)
        self._record(host_path)
        return None if m.kind == "absent" else m.stat_result()

    def lstat(self, host_path: str) -> os.stat_result | None:
        m = self._lookup(host_path, follow=False)
        if m is None:
            return super().lstat(host_path)
        self._record(host_path)
        return None if m.kind == "absent" else m.stat_result()

    def exists(self, host_path: str) -> bool:
        m = self._lookup(host_path, follow=True)
        if m is None:
            return super().exists(host_path)
        self._record(host_path)
        return m.kind != "absent"

    def is_file(self, host_path: str) -> bool:
        m = self._lookup(host_path, follow=True)
        return super().is_file(host_path) if m is None else m.kind == "file"

    def is_dir(self, host_path: str) -> bool:
        m = self._lookup(host_path, follow=True)
        return super().is_dir(host_path) if m is None else m.kind == "dir"

    def is_symlink(self, host_path: str) -> bool:
        m = self._lookup(host_path, follow=False)
        return super().is_symlink(host_path) if m is None else m.kind == "symlink"

    def readlink(self, host_path: str) -> str | None:
        m = self._lookup(host_path, follow=False)
        if m is None:
            return super().readlink(host_path)
        self._record(host_path)
        return m.target if m.kind == "symlink" else None

    def read_bytes(self, host_path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        m = self._lookup(host_path, follow=True)
        if m is not None:
            if m.read_error is not None:
                self._record(host_path)
                raise OSError(m.read_error[0], m.read_error[1], host_path)
            if m.kind == "file" and m.content == "none":
                self._record(host_path)
                raise OSError(errno_mod.ENODATA, "its contents are not in the snapshot (only its metadata)",
                              host_path)
            if m.kind in ("char", "block", "fifo", "socket"):
                self._record(host_path)
                raise OSError(errno_mod.ENODATA, f"a {m.kind} device in the snapshot has no contents", host_path)
        return super().read_bytes(host_path, max_bytes=max_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """An extracted, verified bundle: the manifest, the host metadata, the recorded probes."""

    archive: str
    directory: Path
    manifest: dict[str, Any]
    meta: dict[str, PathMeta]
    probes: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        src = self.manifest.get("source")
        return src if isinstance(src, dict) else {}

    @property
    def live(self) -> bool:
        """The bundle was taken without --offline, so its live checks ran and their probes are recorded."""
        return self.source.get("offline") is False

    def facts(self) -> HostFacts:
        """Facts replaying the snapshotted run: offline exactly when that run was, with `replay` set so that
        every probe answers from the recording and nothing live ever runs here."""
        root = SnapshotRoot(self.directory / ROOT_DIR, meta=self.meta, label=self.archive, offline=not self.live)
        docker_host = self.source.get("docker_host")
        return HostFacts(root=root, recorded_probes=dict(self.probes),
                         docker_host=docker_host if isinstance(docker_host, str) else None, replay=True)


def _read_json(path: Path, limit: int, what: str) -> Any:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise CorruptSnapshot(f"{what}: cannot be read ({exc.strerror})") from None
    if len(data) > limit:
        raise CorruptSnapshot(f"{what}: larger than {limit // (1024 * 1024)} MiB")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptSnapshot(f"{what}: not valid JSON ({exc})") from None


def _verify(archive: str, manifest: Any, extracted: Mapping[str, Extracted]) -> dict[str, PathMeta]:
    """The manifest must describe exactly the extracted members; returns the host metadata it holds."""
    if not isinstance(manifest, dict):
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {MANIFEST} says format {manifest.get('format')!r}; this gpudoctor reads "
                            f"{FORMAT}")
    members = manifest.get("members")
    if not isinstance(members, list):
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {MANIFEST} has no members list")
    meta: dict[str, PathMeta] = {}
    listed: set[str] = set()
    for i, entry in enumerate(members):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {MANIFEST}: members[{i}] has no name")
        name = entry["name"]
        if name in listed:
            raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {MANIFEST} lists {name!r} twice")
        listed.add(name)
        got = extracted.get(name)
        if got is None:
            raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: member {name!r} is in the manifest but not in the archive "
                                "(truncated or tampered snapshot)")
        if entry.get("type") != got.kind:
            raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: member {name!r} is a {got.kind} in the archive but a "
                                f"{entry.get('type')} in the manifest")
        if got.kind == "file" and entry.get("sha256") != got.sha256:
            raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: member {name!r}: sha256 {got.sha256} does not match the manifest "
                                "(damaged or tampered snapshot)")
        if got.kind == "symlink" and entry.get("target") != got.target:
            raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: member {name!r}: link target differs from the manifest")
        if name == ROOT_DIR or name.startswith(ROOT_DIR + "/"):
            host_path = "/" + name[len(ROOT_DIR) + 1:]
            if member_name(host_path) != name:
                raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: member {name!r}: not a host path")
            try:
                meta[host_path] = PathMeta.from_dict(entry.get("host"), where=f"{MANIFEST}: {name}")
            except ManifestError as exc:
                raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {exc}") from None
    extra = sorted(set(extracted) - listed - {MANIFEST})
    if extra:
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: member {extra[0]!r} is not listed in the manifest (tampered snapshot)")
    absent = manifest.get("absent", [])
    if not isinstance(absent, list):
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: {MANIFEST}: absent must be a list")
    for path in absent:
        if isinstance(path, str) and path.startswith("/") and path not in meta:
            meta[HostRoot.normalize(path)] = PathMeta(kind="absent")
    return meta


def load_bundle(archive: str, directory: Path, *, max_bytes: int | None = None,
                max_members: int | None = None) -> Bundle:
    """Extract `archive` into the empty private `directory` and verify it (SnapshotError when unusable).
    The caps default to gpudoctor.snapshot.safety's MAX_TOTAL_BYTES and MAX_MEMBERS."""
    extracted = extract_bundle(archive, directory,
                               max_bytes=safety.MAX_TOTAL_BYTES if max_bytes is None else max_bytes,
                               max_members=safety.MAX_MEMBERS if max_members is None else max_members)
    if MANIFEST not in extracted or extracted[MANIFEST].kind != "file":
        raise CorruptSnapshot(f"{archive}: cannot replay this snapshot: it has no {MANIFEST} (not a gpudoctor "
                              "snapshot, or a truncated one)")
    manifest = _read_json(directory / MANIFEST, MAX_MANIFEST_BYTES,
                          f"{archive}: cannot replay this snapshot: {MANIFEST}")
    meta = _verify(archive, manifest, extracted)
    if not (directory / ROOT_DIR).is_dir():
        (directory / ROOT_DIR).mkdir(mode=0o700)
    probes: dict[str, Any] = {}
    for name, member in sorted(extracted.items()):
        if member.kind == "file" and name.startswith(PROBES_DIR + "/"):
            probes[probe_name(name)] = _read_json(directory / name, MAX_PROBE_BYTES,
                                                  f"{archive}: cannot replay this snapshot: {name}")
    return Bundle(archive=archive, directory=directory, manifest=manifest, meta=meta, probes=probes)


@contextmanager
def open_snapshot(path: str, *, max_bytes: int | None = None, max_members: int | None = None) -> Iterator[HostFacts]:
    """Yield HostFacts replaying the bundle at `path` (see the module docstring); SnapshotError when the
    bundle is unsafe, corrupt or not a snapshot. Nothing is written outside a private temporary directory,
    which is removed on exit."""
    archive = os.path.abspath(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix="gpudoctor-replay-"))  # mode 0700, owned by us
    except OSError as exc:
        raise SnapshotError(f"{archive}: cannot replay this snapshot: no private temporary directory "
                            f"({exc.strerror or exc}; set TMPDIR)") from None
    try:
        directory = tmp / "bundle"
        directory.mkdir(mode=0o700)
        bundle = load_bundle(archive, directory, max_bytes=max_bytes, max_members=max_members)
        yield bundle.facts()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
