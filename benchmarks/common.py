"""Interleaved timing of whole commands: each round runs every command once, in rotating order, so drift
on a busy machine hits all of them alike. Results are medians; what we report is the ratio to a baseline
measured in the same run."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence


def time_command(argv: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = True) -> float:
    """Wall time of one run of `argv`, in seconds. Output is discarded; a failing run raises when `check`."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=dict(env) if env is not None else None, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if check and proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return elapsed


def interleave(runs: Mapping[str, Callable[[], float]], *, rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run each callable `rounds` times, interleaved with rotating order; returns the samples per name."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            samples[name].append(runs[name]())
    return samples


def report(title: str, samples: Mapping[str, list[float]], *, baseline: str, targets: Mapping[str, float]) -> bool:
    """Print medians and the median ratio of each command to `baseline`; True when every target is met."""
    base = statistics.median(samples[baseline])
    print(f"\n{title}")
    print(f"  {'command':<44} {'median':>10} {'ratio':>8}  target")
    ok = True
    for name, values in samples.items():
        med = statistics.median(values)
        ratio = med / base
        target = targets.get(name)
        verdict = ""
        if target is not None:
            met = ratio <= target
            ok &= met
            verdict = f"≤ {target:.2f} {'ok' if met else 'MISSED'}"
        print(f"  {name:<44} {med * 1000:>8.1f}ms {ratio:>7.2f}x  {verdict}")
    print(f"  ({len(next(iter(samples.values())))} interleaved rounds, {os.cpu_count()} CPUs)")
    return ok
