"""The engine's cost: container start through gpudoctor-runtime, and ``gpudoctor cdi generate``.

Run: ``python3 -m benchmarks.bench_engine`` (root: it starts a private dockerd and makes device nodes).

Interleaved in one run, medians compared (benchmarks.common):

1. ``docker run --rm --network none IMAGE true`` with ``--runtime gpudoctor`` and no GPU requested, against
   ``--runtime runc``. Target <= 1.05.
2. The same with every simulated GPU attached (``-e NVIDIA_VISIBLE_DEVICES=all``) against plain runc.
   Target <= 1.20. For scale, NVIDIA's runtime in CDI mode measured the same way: 1.09 and 1.36.
3. ``python -m gpudoctor cdi generate`` for a 2-GPU simulated driver against a bare ``python -c pass``.

The daemon is Debian's dockerd 20.10 with its runc; the host driver is the test kit's simulated driver
(tests.kit) in a temporary root; ``gpudoctor`` is registered as ``{"path": <launcher>}``, the sh launcher
that install writes (gpudoctor.engine.launcher), with a runtime.toml pointing at the kit root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import interleave, report, time_command


def _docker_runs(base: Path, rounds: int) -> bool:
    from gpudoctor.engine.launcher import write_launcher
    from gpudoctor.engine.settings import Settings, find_runc, render_settings
    from tests.engine.engine_kit import kit_root
    from tests.infra.dockerd import DOCKER_CLI, start_dockerd
    from tests.infra.image import build_rootfs, import_image

    kit = kit_root(base / "driver")
    runc = find_runc()
    settings = base / "runtime.toml"
    settings.write_text(
        render_settings(Settings(runc=runc, driver_root=str(kit.root), cache_dir=str(base / "cache")))
    )
    launcher = base / "gpudoctor-runtime"
    write_launcher(str(launcher), runc=runc, config=str(settings))
    daemon = start_dockerd(base / "docker", runtimes={"gpudoctor": {"path": str(launcher)}})
    try:
        image = import_image(daemon, build_rootfs(base / "rootfs"), "gpudoctor-bench/busybox-glibc:latest")
        env = daemon.env()

        def run(*options: str) -> float:
            argv = [str(DOCKER_CLI), "run", "--rm", "--network", "none", *options, image, "true"]
            return time_command(argv, env=env)

        # Prove each variant does what it says before timing it.
        probe = subprocess.run(
            [str(DOCKER_CLI), "run", "--rm", "--network", "none", "--runtime", "gpudoctor",
             "-e", "NVIDIA_VISIBLE_DEVICES=all", image, "sh", "-c", "ls /dev/nvidia0 /dev/nvidia1 && nvidia-smi -L"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if probe.returncode != 0 or probe.stdout.count("GPU ") != len(kit.spec.gpus):
            raise RuntimeError(f"the GPU container does not see the GPUs:\n{probe.stdout}\n{probe.stderr}")
        runs = {
            "runc (no GPU)": lambda: run("--runtime", "runc"),
            "gpudoctor (no GPU)": lambda: run("--runtime", "gpudoctor"),
            f"gpudoctor (all {len(kit.spec.gpus)} GPUs)": lambda: run(
                "--runtime", "gpudoctor", "-e", "NVIDIA_VISIBLE_DEVICES=all"
            ),
        }
        samples = interleave(runs, rounds=rounds)
        return report(
            "container start: docker run --rm IMAGE true",
            samples,
            baseline="runc (no GPU)",
            targets={"gpudoctor (no GPU)": 1.05, f"gpudoctor (all {len(kit.spec.gpus)} GPUs)": 1.20},
        )
    finally:
        daemon.stop()


def _generate_runs(base: Path, rounds: int) -> bool:
    from tests.engine.engine_kit import kit_root

    kit = kit_root(base / "driver-cdi")
    py = sys.executable
    out = base / "nvidia.yaml"
    generate = [
        py,
        "-m",
        "gpudoctor",
        "cdi",
        "generate",
        "--driver-root",
        str(kit.root),
        "--output",
        str(out),
    ]
    runs = {
        "python -c pass": lambda: time_command([py, "-c", "pass"]),
        "python -m gpudoctor cdi generate": lambda: time_command(generate),
    }
    samples = interleave(runs, rounds=rounds)
    return report(
        "gpudoctor cdi generate vs bare interpreter", samples, baseline="python -c pass", targets={}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="interleaved rounds per measurement (default 20)"
    )
    parser.add_argument("--skip-docker", action="store_true", help="only time cdi generate")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "bench_engine: needs root (a private dockerd and mknod for the simulated driver)", file=sys.stderr
        )
        return 2
    base = Path(tempfile.mkdtemp(prefix="gd-bench-", dir="/tmp"))
    try:
        ok = _generate_runs(base, args.rounds)
        if not args.skip_docker:
            ok = _docker_runs(base, args.rounds) and ok
        return 0 if ok else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
