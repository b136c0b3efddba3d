"""The runner's contract: dependency order, skip propagation, crash -> error, --only/--skip, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gpudoctor.checks.base import (
    CheckContext,
    CheckOptions,
    CheckSpec,
    Finding,
    Status,
    failed,
    passed,
    skipped,
)
from gpudoctor.checks.runner import run_checks, select_checks
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.root import HostRoot


def _spec(cid: str, func, deps=(), live=False) -> CheckSpec:  # type: ignore[no-untyped-def]
    return CheckSpec(id=cid, title=cid, func=func, depends_on=tuple(deps), layer="hardware", live=live)


@pytest.fixture
def facts(tmp_path: Path) -> HostFacts:
    return HostFacts(root=HostRoot(tmp_path))


def test_failed_dependency_skips_dependents_with_reason(facts: HostFacts) -> None:
    specs = {
        "a.base": _spec("a.base", lambda ctx: failed("module not loaded", ["/proc/modules: no nvidia"])),
        "a.mid": _spec("a.mid", lambda ctx: passed("fine"), deps=["a.base"]),
        "a.top": _spec("a.top", lambda ctx: passed("fine"), deps=["a.mid"]),
        "a.other": _spec("a.other", lambda ctx: passed("independent")),
    }
    results = {r.id: r for r in run_checks(specs, host=facts, options=CheckOptions())}
    assert results["a.base"].status is Status.FAIL
    assert results["a.mid"].status is Status.SKIP
    assert "a.base is fail" in results["a.mid"].summary
    assert results["a.top"].status is Status.SKIP
    # The root cause is named once, not nested through a.mid.
    assert results["a.top"].summary == results["a.mid"].summary
    assert results["a.other"].status is Status.PASS


def test_crash_becomes_error_with_exception_in_evidence(facts: HostFacts) -> None:
    def boom(ctx: CheckContext) -> Finding:
        raise ValueError("unexpected byte 0xff")

    specs = {"b.crash": _spec("b.crash", boom), "b.after": _spec("b.after", lambda c: passed("x"), ["b.crash"])}
    results = {r.id: r for r in run_checks(specs, host=facts, options=CheckOptions())}
    assert results["b.crash"].status is Status.ERROR
    assert "ValueError: unexpected byte 0xff" in results["b.crash"].summary
    assert any("ValueError" in line for line in results["b.crash"].evidence)
    assert results["b.after"].status is Status.SKIP


def test_live_checks_skip_offline(facts: HostFacts) -> None:
    specs = {"c.live": _spec("c.live", lambda c: passed("ran"), live=True)}
    (res,) = run_checks(specs, host=facts, options=CheckOptions(offline=True))
    assert res.status is Status.SKIP and "--offline" in res.summary
    (res,) = run_checks(specs, host=facts, options=CheckOptions(offline=False))
    assert res.status is Status.PASS


def test_dependents_see_dependency_results_and_run_after(facts: HostFacts) -> None:
    order: list[str] = []

    def first(ctx: CheckContext) -> Finding:
        order.append("first")
        return passed("one")

    def second(ctx: CheckContext) -> Finding:
        order.append("second")
        dep = ctx.result("d.first")
        assert dep is not None
        return passed(f"saw {dep.summary}")

    specs = {"d.second": _spec("d.second", second, ["d.first"]), "d.first": _spec("d.first", first)}
    results = run_checks(specs, host=facts, options=CheckOptions())
    assert [r.id for r in results] == ["d.second", "d.first"]  # registry order in the report
    assert order == ["first", "second"]
    assert results[0].summary == "saw one"


def test_independent_checks_run_concurrently(facts: HostFacts) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def meet(ctx: CheckContext) -> Finding:
        barrier.wait()  # deadlocks (then BrokenBarrierError -> error) unless both run at once
        return passed("met")

    specs = {"e.one": _spec("e.one", meet), "e.two": _spec("e.two", meet)}
    results = run_checks(specs, host=facts, options=CheckOptions(), workers=2)
    assert [r.status for r in results] == [Status.PASS, Status.PASS]


def test_select_only_includes_dependencies_but_reports_selection() -> None:
    specs = {
        "f.a": _spec("f.a", lambda c: passed("a")),
        "f.b": _spec("f.b", lambda c: passed("b"), ["f.a"]),
        "g.c": _spec("g.c", lambda c: passed("c")),
    }
    run, reported = select_checks(specs, only=["f.b"])
    assert run == ["f.a", "f.b"] and reported == ["f.b"]
    run, reported = select_checks(specs, only=["f"], skip=["f.a"])
    assert run == ["f.b"] and reported == ["f.b"]
    with pytest.raises(KeyError):
        select_checks(specs, only=["nope.nothing"])


def test_skipped_by_option_dependency_is_treated_as_satisfied(facts: HostFacts) -> None:
    specs = {
        "h.a": _spec("h.a", lambda c: failed("broken")),
        "h.b": _spec("h.b", lambda c: passed("b"), ["h.a"]),
    }
    run, _ = select_checks(specs, skip=["h.a"])
    (res,) = run_checks(specs, host=facts, options=CheckOptions(), ids=run)
    assert res.id == "h.b" and res.status is Status.PASS


def test_dependency_cycle_is_reported_not_hung(facts: HostFacts) -> None:
    specs = {
        "i.a": _spec("i.a", lambda c: passed("a"), ["i.b"]),
        "i.b": _spec("i.b", lambda c: passed("b"), ["i.a"]),
    }
    with pytest.raises(RuntimeError, match="dependency cycle"):
        run_checks(specs, host=facts, options=CheckOptions())


def test_events_report_start_and_finish(facts: HostFacts) -> None:
    events: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def on_event(cid: str, res: object) -> None:
        with lock:
            events.append((cid, res is not None))

    specs = {"j.a": _spec("j.a", lambda c: skipped("n/a")), "j.b": _spec("j.b", lambda c: passed("b"), ["j.a"])}
    run_checks(specs, host=facts, options=CheckOptions(), on_event=on_event)
    assert ("j.a", False) in events and ("j.a", True) in events
    assert events.index(("j.a", True)) < events.index(("j.b", True))


def test_memo_computes_once_across_threads(facts: HostFacts) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    threads = [threading.Thread(target=lambda: facts.memo("k", compute)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert facts.memo("k", compute) == 42
    assert len(calls) == 1



def test_report_order_does_not_depend_on_import_order() -> None:
    import subprocess
    import sys

    code = (
        "import gpudoctor.checks.toolkit\n"  # imported before the others, as a live-check module does
        "from gpudoctor.checks import load_checks\n"
        "print(' '.join(load_checks()))\n"
    )
    early = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from gpudoctor.checks import load_checks

    assert early == [i for i in load_checks() if not i.startswith(("zz.",))]
    assert early[0] == "driver.gpus" and early[-1] == "parity.nvidia_smi"
