"""``gpudoctor cdi generate|list|validate``: CDI specs for the host's NVIDIA GPUs.

    gpudoctor cdi generate [--driver-root R] [--dev-root D] [--output F] [--format yaml|json]
    gpudoctor cdi list [--spec-dir DIR ...]
    gpudoctor cdi validate FILE [--driver-root R] [--dev-root D] [--no-host-check]

Exit codes follow the doctor's: 0 fine, 1 a listed or validated spec has problems, 2 usage, 3 the command
could not run (no GPU to describe, a file that cannot be written).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
PROG = "gpudoctor cdi"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="CDI specs for the host's NVIDIA GPUs.")
    sub = parser.add_subparsers(dest="command", metavar="generate|list|validate")
    sub.required = True

    gen = sub.add_parser("generate", help="write a CDI spec for this host's GPUs")
    gen.add_argument(
        "--driver-root", default="/", metavar="DIR", help="where the driver files live (default /)"
    )
    gen.add_argument(
        "--dev-root", default=None, metavar="DIR", help="where /dev and /proc are read (default: driver root)"
    )
    gen.add_argument(
        "--output", "-o", default=None, metavar="FILE", help="write here atomically (default: stdout)"
    )
    gen.add_argument(
        "--format", choices=("yaml", "json"), default=None, help="default: json for *.json, else yaml"
    )
    gen.add_argument(
        "--kind", default="nvidia.com/gpu", help="vendor/class of the devices (default nvidia.com/gpu)"
    )
    gen.add_argument("--no-hooks", action="store_true", help="leave out the ld cache and symlink hooks")

    lst = sub.add_parser("list", help="list the CDI devices in the spec directories")
    lst.add_argument("--spec-dir", action="append", default=None, metavar="DIR",
                     help="directory to search (repeatable; default /etc/cdi and /var/run/cdi)")  # fmt: skip

    val = sub.add_parser("validate", help="check a spec: CDI schema rules, and that it matches this host")
    val.add_argument("file", metavar="FILE")
    val.add_argument("--driver-root", default="/", metavar="DIR")
    val.add_argument("--dev-root", default=None, metavar="DIR")
    val.add_argument("--no-host-check", action="store_true", help="check the spec's form only")
    return parser


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _generate(args: argparse.Namespace) -> int:
    from gpudoctor.engine.cdi import CdiError, build_spec, check_kind, check_spec, dump_spec, write_spec
    from gpudoctor.engine.inventory import DiscoveryError, discover

    bad = check_kind(args.kind)
    if bad:
        _err(bad)
        return EXIT_USAGE
    fmt = args.format or ("json" if args.output and args.output.endswith(".json") else "yaml")
    try:
        inventory = discover(args.driver_root, args.dev_root)
        for warning in inventory.warnings:
            _err(f"warning: {warning}")
        spec = build_spec(inventory, hooks=not args.no_hooks, kind=args.kind)
    except (DiscoveryError, CdiError) as exc:
        _err(str(exc))
        return EXIT_ERROR
    problems = check_spec(spec)
    if problems:  # a bug in the generator: never write a spec that consumers would reject
        _err("internal error: the generated spec is invalid: " + "; ".join(problems))
        return EXIT_ERROR
    text = dump_spec(spec, fmt)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        write_spec(args.output, text)
    except CdiError as exc:
        _err(str(exc))
        return EXIT_ERROR
    names = ", ".join(d["name"] for d in spec["devices"])
    print(
        f"wrote {args.output}: cdiVersion {spec['cdiVersion']}, kind {spec['kind']}, devices {names}",
        file=sys.stderr,
    )
    return EXIT_OK


def _load(path: str) -> tuple[Any, str | None]:
    """(spec, None) or (None, why it could not be read)."""
    from gpudoctor.engine.cdi import load_spec_text

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(16 * 1024 * 1024)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path}: {exc}"
    try:
        return load_spec_text(text, path=path), None
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError, both with a position
        return None, f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}"


def _list(args: argparse.Namespace) -> int:
    from gpudoctor.engine.cdi import DEFAULT_SPEC_DIRS, check_spec

    dirs = args.spec_dir or list(DEFAULT_SPEC_DIRS)
    status = EXIT_OK
    found = 0
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue
        except OSError as exc:
            _err(f"cannot list {directory}: {exc.strerror}")
            status = EXIT_PROBLEMS
            continue
        for name in names:
            if not name.endswith((".json", ".yaml", ".yml")) or name.startswith("."):
                continue
            path = os.path.join(directory, name)
            spec, why = _load(path)
            problems = [why] if why else check_spec(spec)
            if problems:
                _err(
                    f"{path} is not a valid CDI spec: {problems[0]}"
                    + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                )
                status = EXIT_PROBLEMS
                continue
            for device in spec["devices"]:
                print(f"{spec['kind']}={device['name']}")
                found += 1
    if not found:
        _err(f"no CDI devices found in {', '.join(dirs)}")
    return status


def _validate(args: argparse.Namespace) -> int:
    from gpudoctor.engine.cdi import check_against_host, check_spec
    from gpudoctor.engine.inventory import DiscoveryError, discover

    if not os.path.isfile(args.file):
        _err(f"{args.file} does not exist or is not a file")
        return EXIT_USAGE
    spec, why = _load(args.file)
    problems = [why] if why else check_spec(spec)
    host_note = ""
    if not problems and not args.no_host_check:
        try:
            inventory = discover(args.driver_root, args.dev_root)
        except DiscoveryError as exc:
            _err(str(exc))
            return EXIT_ERROR
        problems = check_against_host(spec, inventory)
        host_note = f" and matches driver {inventory.driver_version or '(unknown version)'} on this host"
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
        print(f"fix: regenerate it: gpudoctor cdi generate --output {args.file}")
        return EXIT_PROBLEMS
    devices = ", ".join(d["name"] for d in spec["devices"])
    print(
        f"{args.file}: valid CDI {spec['cdiVersion']} spec, kind {spec['kind']}, devices {devices}{host_note}"
    )
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    """Entry point for ``gpudoctor cdi ...``."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.command == "generate":
        return _generate(args)
    if args.command == "list":
        return _list(args)
    return _validate(args)
