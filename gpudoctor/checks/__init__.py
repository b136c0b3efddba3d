"""Checks, one module per area, registered into :data:`gpudoctor.checks.base.REGISTRY` on import."""

from __future__ import annotations

import importlib

from gpudoctor.checks.base import REGISTRY, CheckSpec

# Order matters only for display: the report lists checks in registration order, layer by layer.
CHECK_MODULES: tuple[str, ...] = ("driver", "modules", "devices", "toolkit", "runtime", "parity")


def load_checks() -> dict[str, CheckSpec]:
    """Import every check module once and return the registry (id -> spec), in display order."""
    for name in CHECK_MODULES:
        importlib.import_module(f"gpudoctor.checks.{name}")
    # Registration order follows whichever module was imported first (a live-check module pulls in
    # toolkit.py early, say); the report's order must not, so put the specs in CHECK_MODULES order.
    rank = {f"gpudoctor.checks.{name}": i for i, name in enumerate(CHECK_MODULES)}
    ordered = sorted(REGISTRY.values(), key=lambda spec: rank.get(spec.func.__module__, len(rank)))
    if list(REGISTRY.values()) != ordered:
        REGISTRY.clear()
        REGISTRY.update((spec.id, spec) for spec in ordered)
    return REGISTRY
