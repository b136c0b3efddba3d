"""The runner: runs checks in dependency order, concurrently where they are independent.

Contract:
- A check whose dependency ended `fail`, `error` or `skip` is not run; it becomes `skip` with the reason.
- A check that raises becomes an `error` result with the exception in its evidence; the run goes on.
- A `live` check under ``--offline`` becomes `skip`. In a snapshot replay (``host.replay``) live checks run
  on the recorded probes; one that asks for a probe the snapshot did not record becomes `skip` saying so.
- Each result records its duration. Results come back in registry order, whatever order they finished in.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping

from gpudoctor.checks.base import CheckContext, CheckOptions, CheckResult, CheckSpec, Finding, Status
from gpudoctor.host.facts import HostFacts, ProbeNotRecorded

EventCallback = Callable[[str, CheckResult | None], None]
"""Called with (check_id, None) when a check starts and (check_id, result) when it ends. Any thread."""

_BLOCKING = (Status.FAIL, Status.ERROR, Status.SKIP)
_SKIP_PREFIX = "skipped because "


def select_checks(
    specs: Mapping[str, CheckSpec], *, only: Iterable[str] = (), skip: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """Resolve ``--only``/``--skip`` (ids or group names) into (ids to run, ids to report).

    The run set includes the dependencies of what was asked for, so skip-propagation stays truthful;
    only the asked-for checks are reported. Raises KeyError naming an unknown id or group.
    """
    groups = {spec.group for spec in specs.values()}

    def expand(names: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            if name in specs:
                out.add(name)
            elif name in groups:
                out.update(i for i, s in specs.items() if s.group == name)
            else:
                raise KeyError(name)
        return out

    only_set = expand(only)
    skip_set = expand(skip)
    reported = [i for i in specs if (not only_set or i in only_set) and i not in skip_set]
    run: set[str] = set()
    stack = list(reported)
    while stack:
        cid = stack.pop()
        if cid in run or cid in skip_set:
            continue
        run.add(cid)
        stack.extend(specs[cid].depends_on)
    return [i for i in specs if i in run], reported


def _blocked_reason(spec: CheckSpec, results: Mapping[str, CheckResult]) -> str | None:
    for dep in spec.depends_on:
        res = results.get(dep)
        if res is not None and res.status in _BLOCKING:
            if res.status is Status.SKIP and res.summary.startswith(_SKIP_PREFIX):
                # Name the root cause once, not a chain of "skipped because ... skipped because ...".
                return res.summary
            return f"{_SKIP_PREFIX}{dep} is {res.status.value}: {res.summary}"
    return None


def run_one(spec: CheckSpec, ctx: CheckContext, results: Mapping[str, CheckResult]) -> CheckResult:
    """Run a single check with the contract above (never raises for a check's own failure)."""
    start = time.perf_counter()
    reason = _blocked_reason(spec, results)
    finding: Finding
    if reason is not None:
        finding = Finding(status=Status.SKIP, summary=reason)
    elif spec.live and ctx.options.offline:
        finding = Finding(status=Status.SKIP, summary="needs a live probe; skipped because of --offline")
    else:
        try:
            finding = spec.func(ctx)
        except ProbeNotRecorded as exc:
            finding = Finding(status=Status.SKIP, summary=f"needs a live probe: {exc}")
        except Exception as exc:  # a crashing check must never crash the tool
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            finding = Finding(
                status=Status.ERROR,
                summary=f"the check itself crashed: {type(exc).__name__}: {exc}",
                evidence=[line.rstrip("\n") for chunk in tb[-3:] for line in chunk.splitlines()],
                remedy="This is a bug in gpudoctor; please report it with `gpudoctor snapshot`.",
            )
    return CheckResult(
        id=spec.id,
        group=spec.group,
        title=spec.title,
        status=finding.status,
        summary=finding.summary,
        evidence=tuple(finding.evidence),
        remedy=finding.remedy,
        fixes=tuple(finding.fixes),
        depends_on=spec.depends_on,
        duration_ms=(time.perf_counter() - start) * 1000.0,
        layer=spec.layer,
    )


def run_checks(
    specs: Mapping[str, CheckSpec],
    *,
    host: HostFacts,
    options: CheckOptions,
    ids: Iterable[str] | None = None,
    on_event: EventCallback | None = None,
    workers: int = 4,
) -> list[CheckResult]:
    """Run the checks named by `ids` (default: all) and return their results in registry order."""
    todo = [i for i in (ids if ids is not None else specs) if i in specs]
    todo_set = set(todo)
    # Dependencies outside the run set (excluded with --skip) are treated as satisfied.
    deps = {i: [d for d in specs[i].depends_on if d in todo_set] for i in todo}
    results: dict[str, CheckResult] = {}
    ctx = CheckContext(host=host, options=options, results=results)
    lock = threading.Lock()
    done_q: queue.Queue[tuple[str, CheckResult]] = queue.Queue()
    work_q: queue.Queue[str | None] = queue.Queue()

    def worker() -> None:
        while True:
            cid = work_q.get()
            if cid is None:
                return
            if on_event:
                on_event(cid, None)
            with lock:
                snapshot = dict(results)
            res = run_one(specs[cid], CheckContext(host=host, options=options, results=snapshot), snapshot)
            done_q.put((cid, res))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(workers, len(todo))))]
    for t in threads:
        t.start()
    started: set[str] = set()

    def dispatch() -> None:
        for cid in todo:
            if cid not in started and all(d in results for d in deps[cid]):
                started.add(cid)
                work_q.put(cid)

    del ctx
    dispatch()
    while len(results) < len(todo):
        if len(started) == len(results):
            stuck = sorted(set(todo) - started)
            raise RuntimeError(f"dependency cycle among checks: {', '.join(stuck)}")
        cid, res = done_q.get()
        with lock:
            results[cid] = res
        if on_event:
            on_event(cid, res)
        dispatch()
    for _ in threads:
        work_q.put(None)
    return [results[i] for i in todo]
