"""``gpudoctor snapshot``: a bug-report bundle of this host, replayable elsewhere.

``gpudoctor snapshot [-o FILE.tar.gz] [--root DIR] [--offline] [--docker-host URL] [--image IMAGE]``

Runs the checks (as ``gpudoctor --check`` would, honouring ``--root`` and ``--offline``) and writes one
archive with every file they read, the live probe results, ``docker info``, dockerd's command line and
environment, ``nvidia-smi -q``, kernel log lines about NVRM/nvidia, the toolkit's logs and the report.
Secrets are redacted; the bundle's manifest.json says where. ``gpudoctor --check --root FILE.tar.gz``
replays it offline with the same findings.

Exit status: 0 when the bundle was written (whatever the checks found: the report is inside it), 2 for a
usage error (bad option, unusable output path or root), 3 when the bundle could not be written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gpudoctor.report.model import EXIT_ERROR, EXIT_OK, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    from gpudoctor.cli import add_host_options

    parser = argparse.ArgumentParser(
        prog="gpudoctor snapshot",
        description="Collect a bug-report bundle (files the checks read, probe results, docker info, logs, "
        "the report), secrets redacted. Replay it with `gpudoctor --check --root FILE.tar.gz`.",
    )
    parser.add_argument("-o", "--output", metavar="FILE.tar.gz", default=None,
                        help="where to write the bundle (.tar.gz, .tgz or .tar; default "
                        "./gpudoctor-snapshot-DATE-TIME.tar.gz)")
    add_host_options(parser)
    parser.add_argument("--image", default=None, metavar="IMAGE",
                        help="image for the in-container nvidia-smi parity check")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SEC",
                        help="per-probe and per-command timeout (default 10)")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    from gpudoctor.checks.base import CheckOptions
    from gpudoctor.doctor import UsageError
    from gpudoctor.host.open import is_archive
    from gpudoctor.snapshot.collect import SnapshotCollectError, collect_snapshot, default_output_name

    if is_archive(args.root):
        print(f"gpudoctor snapshot: --root {args.root} is a snapshot archive already; replay it with "
              f"`gpudoctor --check --root {args.root}`", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout <= 0:
        print("gpudoctor snapshot: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    options = CheckOptions(offline=args.offline, docker_host=args.docker_host, timeout=args.timeout)
    if args.image:
        options.image = args.image
    output = args.output or default_output_name()
    try:
        result = collect_snapshot(output, root=args.root, offline=args.offline, docker_host=args.docker_host,
                                  options=options)
    except (SnapshotCollectError, UsageError) as exc:
        print(f"gpudoctor snapshot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"gpudoctor snapshot: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    counts = result.report.counts
    found = ", ".join(f"{counts[s]} {s}" for s in ("fail", "error", "warn") if counts[s]) or "no problems"
    size_kib = max(1, result.size // 1024)
    print(f"wrote {result.path} ({result.members} members, {size_kib} KiB); the checks found {found}")
    if result.redactions:
        print(f"redacted {result.redactions} secret value(s); manifest.json lists where")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"replay it with: gpudoctor --check --root {result.path}")
    return EXIT_OK
