"""The fast entry point for the runtime shim and the OCI hooks.

    python3 -I -S /path/to/gpudoctor/engine/entry.py runtime RUNC-ARGS...   (what the sh launcher runs)
    python3 -I -S /path/to/gpudoctor/engine/entry.py hook COMMAND ARGS...   (one hook command)
    python3 -I -S /path/to/gpudoctor/engine/entry.py hooks COMMAND ARGS... -- COMMAND ARGS...

``-I -S`` keeps the environment, the current directory and site-packages out of the interpreter: on a
host with many ``.pth`` files site-packages alone costs ~80 ms per start, and every container start pays
each start. This file then makes the directory that holds the ``gpudoctor`` package importable, *after*
the standard library, and hands over. gpudoctor's engine needs nothing outside the standard library.

``hooks`` runs several ``gpudoctor hook`` commands in one process, in order, stopping at the first that
fails: the engine emits create-symlinks and update-ldcache as one createContainer hook, so a GPU container
start pays for one interpreter instead of two. The OCI state on stdin is read once (bounded, with a
deadline) and handed to each command on its own memfd.

The process ends with ``os._exit`` after flushing stdout and stderr: the interpreter's teardown would
only cost time on every container start.
"""

import os
import sys
import time

STATE_LIMIT = 1024 * 1024
STATE_DEADLINE_S = 10.0


def _read_state_bytes(fd: int = 0) -> bytes:
    """stdin up to EOF: at most STATE_LIMIT bytes within STATE_DEADLINE_S seconds (else ValueError)."""
    from gpudoctor.engine.libc import wait_readable  # poll(2) without the select module (~0.5 ms)

    end = time.monotonic() + STATE_DEADLINE_S
    chunks: list[bytes] = []
    size = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise ValueError(f"the OCI state on stdin was not complete within {STATE_DEADLINE_S:g} s")
        if not wait_readable(fd, left):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > STATE_LIMIT:
            raise ValueError(f"the OCI state on stdin is larger than {STATE_LIMIT} bytes")
        chunks.append(chunk)


def _split(args: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for arg in args:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    return [g for g in groups if g]


def run_hooks(args: list[str], *, stdin_fd: int = 0) -> int:
    """Run ``COMMAND ARGS [-- COMMAND ARGS ...]`` with gpudoctor.engine.hooks.run, sharing stdin."""
    from gpudoctor.engine.hooks import run

    groups = _split(args)
    if not groups:
        sys.stderr.write("gpudoctor hooks: no hook command given\n")
        return 2
    try:
        state = _read_state_bytes(stdin_fd)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"gpudoctor hooks: {exc}\n")
        return 1
    for group in groups:
        fd = os.memfd_create("gpudoctor-oci-state", os.MFD_CLOEXEC)
        try:
            os.write(fd, state)
            os.lseek(fd, 0, os.SEEK_SET)
            code = run(group, stdin_fd=fd)
        finally:
            os.close(fd)
        if code != 0:
            return code
    return 0


def _main() -> int:
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if package_parent not in sys.path:
        sys.path.append(package_parent)
    args = sys.argv[1:]
    if args and args[0] == "runtime":
        from gpudoctor.engine.shim import main as runtime_main

        return runtime_main(args[1:])
    if args and args[0] == "hook":
        from gpudoctor.commands.hook import main as hook_main

        return hook_main(args[1:])
    if args and args[0] == "hooks":
        return run_hooks(args[1:])
    sys.stderr.write(
        "usage: entry.py runtime RUNC-ARGS... | hook COMMAND ARGS... | hooks COMMAND ARGS... -- ...\n"
    )
    return 2


def _exit(code: int) -> None:
    """Flush and leave without the interpreter's teardown: freeing every module and type at exit costs a
    hook ~5 ms of CPU on every GPU container start, and nothing here needs it (no atexit handlers, every
    file is a raw fd that the kernel closes)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 1  # the output was lost: do not report success
    os._exit(code)


if __name__ == "__main__":
    _exit(_main())
