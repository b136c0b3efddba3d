"""Fix ``cdi-spec``: generate the NVIDIA CDI spec through gpudoctor's engine, or regenerate a stale one.

The spec describes this host as it is now (driver version, libraries, device nodes), with devices by
index, UUID and ``all``. An existing NVIDIA spec is regenerated where it is (one spec per kind: two files
defining ``nvidia.com/gpu=0`` make CDI refuse both); with none, ``/etc/cdi/nvidia.yaml`` is created.
Nothing needs a restart: podman, containerd and Docker read CDI specs when a container is created.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.fixes.apply import read_config_text
from gpudoctor.fixes.base import FileEdit, Fix, FixContext, FixError, Plan
from gpudoctor.host import runtime_facts as rf

DEFAULT_SPEC = "/etc/cdi/nvidia.yaml"


def generate_spec_text(ctx: FixContext, fmt: str) -> str:
    """The engine's spec for the host under ctx's root, as text; FixError when it cannot describe it."""
    from gpudoctor.engine.cdi import CdiError, build_spec, dump_spec
    from gpudoctor.engine.inventory import DiscoveryError, discover

    root = str(ctx.facts.root.root)
    try:
        inventory = discover(root, root)
        spec = build_spec(inventory)
    except (DiscoveryError, CdiError) as exc:
        raise FixError(f"cannot generate a CDI spec: {exc}") from None
    if not ctx.facts.root.is_live_root:
        # The spec lives on that host and its runtime reads it there: paths as the host sees them.
        spec = _host_view(spec, root.rstrip("/") + "/")
    return dump_spec(spec, fmt)


def _host_view(value: Any, prefix: str) -> Any:
    """`value` with every string that is a path under `prefix` (the --root directory) made host-relative."""
    if isinstance(value, dict):
        return {k: _host_view(v, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_host_view(v, prefix) for v in value]
    if isinstance(value, str) and value.startswith(prefix):
        return "/" + value[len(prefix):]
    return value


def spec_target(ctx: FixContext) -> tuple[str, list[str]]:
    """(the spec file to write, notes): the one NVIDIA spec there is, else /etc/cdi/nvidia.yaml."""
    existing = [f.loaded.path for f in rf.cdi_files(ctx.facts) if f.is_nvidia]
    if len(existing) > 1:
        raise FixError(
            f"several NVIDIA CDI specs define the same devices ({', '.join(existing)}); CDI refuses duplicate "
            "device names. Remove all but one, then run this fix again to regenerate it."
        )
    if existing:
        return existing[0], [f"{existing[0]} is regenerated in place"]
    return DEFAULT_SPEC, []


class CdiSpecFix(Fix):
    id = "cdi-spec"
    title = "Generate (or regenerate) the NVIDIA CDI spec"
    addresses = ("runtime.cdi",)

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        path, notes = spec_target(ctx)
        fmt = "json" if path.endswith(".json") else "yaml"
        after = generate_spec_text(ctx, fmt)
        before = read_config_text(root, path)
        if before == after:
            return Plan(fix_id=self.id, notes=(f"{path} already describes this host",))
        if path.startswith(("/var/run/", "/run/")):
            notes.append(f"{path} is on a tmpfs: it is gone after a reboot (regenerate it at boot)")
        notes.append("regenerate it after every driver or GPU change (`gpudoctor cdi generate`)")
        if not root.is_live_root:
            from gpudoctor.engine.launcher import python_path

            notes.append(f"its hooks run {python_path()} (gpudoctor): that must exist on the host at that path too")
        return Plan(
            fix_id=self.id,
            edits=(FileEdit(path=path, before=before, after=after),),
            notes=tuple(notes),
            needs_root=ctx.live,
        )
