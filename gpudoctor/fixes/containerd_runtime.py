"""Fix ``containerd-runtime``: a drop-in with the GPU runtime, and an ``imports`` line in the main config.

The main ``/etc/containerd/config.toml`` changes by one line (``imports``, added or extended textually),
so every comment in it stays. The runtime goes into ``/etc/containerd/conf.d/99-gpudoctor.toml``:

- with the NVIDIA toolkit installed: ``runtimes.nvidia`` with ``runtime_type = io.containerd.runc.v2`` and
  runc's options copied (``SystemdCgroup`` must match runc's, or pods die seconds after they start), plus
  ``BinaryName`` = the toolkit's ``nvidia-container-runtime``;
- without it: CDI (``enable_cdi = true``), which containerd applies itself from the CDI spec (fix
  ``cdi-spec``), no vendor runtime needed.

containerd 1.x (config version 2) replaces a whole ``[plugins."<id>"]`` section with the one from a later
file, so the drop-in there carries a full copy of the CRI plugin section; containerd 2.x (version 3)
merges table by table, so the drop-in holds only what it adds. Either way the result is checked by
reading the would-be files back the way containerd merges them, before anything is written.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from gpudoctor.fixes.apply import read_config_text
from gpudoctor.fixes.base import Command, FileEdit, Fix, FixContext, FixError, Plan
from gpudoctor.fixes.paths import NVIDIA_RUNTIME, NVIDIA_RUNTIME_DEFAULT_PATH
from gpudoctor.fixes.tomledit import dumps, set_top_level_string_array
from gpudoctor.host import runtime_facts as rf
from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.configs import ContainerdConfig, read_containerd_config
from gpudoctor.host.root import HostRoot

MAIN_CONFIG = "/etc/containerd/config.toml"
DROPIN_DIR = "/etc/containerd/conf.d"
DROPIN = f"{DROPIN_DIR}/99-gpudoctor.toml"
RUNC_V2 = "io.containerd.runc.v2"
CDI_SPEC_DIRS = ["/etc/cdi", "/var/run/cdi"]

HEADER = (
    "# Written by `gpudoctor fix containerd-runtime`; {main} imports it.\n"
    "{why}"
    "# Edit it freely, or delete it and remove its directory from `imports` in {main} to undo.\n"
)
WHY_COPY = (
    "# containerd 1.x replaces a whole [plugins.\"...\"] section with the one from a later file, so this\n"
    "# file holds a full copy of the CRI plugin section as it was, plus what this fix adds.\n"
)


def _simulate(root: HostRoot, overrides: Mapping[str, str]) -> ContainerdConfig:
    """containerd's merged config as it would be with `overrides` (host path -> text) written.

    The whole /etc/containerd tree is copied to a scratch root, so imports resolve as they would.
    """
    scratch = tempfile.mkdtemp(prefix="gpudoctor-containerd-")
    try:
        src = root.path("/etc/containerd")
        dst = os.path.join(scratch, "etc/containerd")
        if os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=False, ignore_dangling_symlinks=True)
        for host_path, text in overrides.items():
            real = os.path.join(scratch, host_path.lstrip("/"))
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(real, "w", encoding="utf-8") as fh:
                fh.write(text)
        cfg = read_containerd_config(HostRoot(scratch, offline=True), MAIN_CONFIG)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if cfg is None:  # pragma: no cover - the main file is always among the overrides or the copy
        raise FixError(f"internal error: {MAIN_CONFIG} vanished while planning")
    return cfg


class ContainerdRuntimeFix(Fix):
    id = "containerd-runtime"
    title = "Give containerd a GPU runtime (or CDI) through a drop-in file"
    addresses = ("runtime.containerd",)

    def _route(self, ctx: FixContext) -> tuple[str, str | None]:
        """("nvidia", BinaryName) with the toolkit, else ("cdi", None)."""
        nvidia = rf.find_binary(ctx.facts, NVIDIA_RUNTIME)
        if ctx.runtime == "nvidia" or (ctx.runtime is None and nvidia.ok):
            return "nvidia", nvidia.path if nvidia.ok and nvidia.path else NVIDIA_RUNTIME_DEFAULT_PATH
        return "cdi", None

    def _satisfied(self, ctx: FixContext, cfg: ContainerdConfig, route: str, binary: str | None) -> bool:
        if route == "cdi":
            return rf.containerd_cdi_on(cfg)
        rt = cfg.runtimes.get("nvidia")
        if rt is None or not rt.runtime_type or rt.binary_name != binary:
            return False
        runc = cfg.runtimes.get("runc")
        return runc is None or bool(runc.systemd_cgroup) == bool(rt.systemd_cgroup)

    def _read(self, root: HostRoot) -> tuple[str, ContainerdConfig]:
        text = read_config_text(root, MAIN_CONFIG)
        if text is None:
            raise FixError(
                f"{MAIN_CONFIG} does not exist: containerd runs on built-in defaults. Write them out first "
                f"(`containerd config default > {MAIN_CONFIG}`), then run this fix again."
            )
        try:
            cfg = read_containerd_config(root, MAIN_CONFIG)
        except ParseError as exc:
            raise FixError(
                f"{exc}. gpudoctor will not edit containerd's config while it cannot be parsed; nothing was changed."
            ) from None
        if cfg is None:  # pragma: no cover - text was just read
            raise FixError(f"cannot read {MAIN_CONFIG}")
        return text, cfg

    def plan(self, ctx: FixContext) -> Plan:
        root = ctx.facts.root
        text, cfg = self._read(root)
        notes: list[str] = []
        off = rf.cri_disabled(cfg)
        if off is not None:
            return Plan(
                fix_id=self.id,
                notes=(f"{MAIN_CONFIG} disables the CRI plugin ({off!r}): this containerd only serves Docker, "
                       "which the docker-runtime fix covers",),
            )
        if cfg.version == 1:
            raise FixError(
                f"{MAIN_CONFIG} is a version 1 config (no `version` key), which cannot import drop-ins. Migrate it "
                f"(`containerd config migrate > new.toml`, review, replace {MAIN_CONFIG}) and run this fix again."
            )
        route, binary = self._route(ctx)

        # 1. imports for drop-in directories whose files nobody imports (the toolkit's config.d mix-up).
        imports = _main_imports(text)
        for d in rf.CONTAINERD_DROPIN_DIRS:
            files = [f"{d}/{n}" for n in _toml_files(root, d)]
            imports = _covering(imports, files, d)
        main_after = text
        if imports != _main_imports(text):
            main_after = set_top_level_string_array(text, "imports", imports, path=MAIN_CONFIG, after_key="version")

        # 2. the drop-in, unless those imports alone make containerd right.
        cfg1 = _simulate(root, {MAIN_CONFIG: main_after})
        edits: list[FileEdit] = []
        current_dropin = read_config_text(root, DROPIN)
        if not self._satisfied(ctx, cfg1, route, binary):
            imports = _covering(imports, [DROPIN], DROPIN_DIR)
            if imports != _main_imports(main_after):
                main_after = set_top_level_string_array(
                    text, "imports", imports, path=MAIN_CONFIG, after_key="version"
                )
            dropin = self._dropin(cfg1, route, binary)
            cfg2 = _simulate(root, {MAIN_CONFIG: main_after, DROPIN: dropin})
            if not self._satisfied(ctx, cfg2, route, binary):
                files = list(cfg2.files)
                later = files[files.index(DROPIN) + 1:] if DROPIN in files else []
                raise FixError(
                    f"even with {DROPIN}, containerd would not get the GPU runtime"
                    + (f": {', '.join(later)} is read after it and overrides it" if later else "")
                    + ". Nothing was changed; configure containerd by hand."
                )
            if dropin != current_dropin:
                edits.append(FileEdit(path=DROPIN, before=current_dropin, after=dropin))
        if main_after != text:
            # After the drop-in: a crash in between leaves an unread file, never an import of a missing one.
            edits.append(FileEdit(path=MAIN_CONFIG, before=text, after=main_after))
        if route == "nvidia":
            notes.append(f"runtime nvidia -> {binary} (options copied from runc, SystemdCgroup matched)")
        else:
            notes.append(
                "the NVIDIA toolkit is not installed, so containerd gets CDI (enable_cdi = true); it needs a CDI "
                "spec: fix cdi-spec writes /etc/cdi/nvidia.yaml"
            )
        commands: list[Command] = []
        if edits:
            commands.append(
                Command(
                    argv=("systemctl", "restart", "containerd"),
                    description="containerd reads its config only at start; running containers keep running "
                    "(their shims stay)",
                )
            )
        return Plan(
            fix_id=self.id,
            edits=tuple(edits),
            commands=tuple(commands),
            notes=tuple(notes) if edits else (),
            needs_root=ctx.live,
        )

    def _dropin(self, cfg: ContainerdConfig, route: str, binary: str | None) -> str:
        plugin = cfg.cri_plugin
        merged_cri = cfg.raw.get("plugins", {}).get(plugin, {})
        full_copy = cfg.version < 3
        cri: dict[str, Any] = copy.deepcopy(merged_cri) if full_copy else {}
        if route == "cdi":
            cri["enable_cdi"] = True
            if not merged_cri.get("cdi_spec_dirs"):
                cri["cdi_spec_dirs"] = list(CDI_SPEC_DIRS)
        else:
            runtimes = merged_cri.get("containerd", {}).get("runtimes", {})
            runc = runtimes.get("runc", {})
            existing = runtimes.get("nvidia", {})
            entry: dict[str, Any] = {k: copy.deepcopy(v) for k, v in existing.items() if k != "options"}
            entry.setdefault("runtime_type", runc.get("runtime_type") or RUNC_V2)
            if not entry.get("runtime_type"):
                entry["runtime_type"] = RUNC_V2
            options = copy.deepcopy(runc.get("options", {}))
            options.update(copy.deepcopy(existing.get("options", {})))
            options["BinaryName"] = binary
            if "SystemdCgroup" in runc.get("options", {}) or "SystemdCgroup" in options:
                options["SystemdCgroup"] = bool(runc.get("options", {}).get("SystemdCgroup", False))
            entry["options"] = options
            ctr = cri.setdefault("containerd", {})
            ctr.setdefault("runtimes", {})["nvidia"] = entry
        body = dumps({"version": cfg.version, "plugins": {plugin: cri}})
        header = HEADER.format(main=MAIN_CONFIG, why=WHY_COPY if full_copy else "")
        return header + "\n" + body


def _main_imports(text: str) -> list[str]:
    from gpudoctor.fixes.tomledit import load_toml

    value = load_toml(text, path=MAIN_CONFIG).get("imports", [])
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _covering(imports: list[str], files: list[str], directory: str) -> list[str]:
    """`imports`, plus ``<directory>/*.toml`` when some of `files` is not imported yet."""
    if all(any(f == pat or fnmatch.fnmatchcase(f, pat) for pat in imports) for f in files):
        return imports
    return [*imports, f"{directory}/*.toml"]


def _toml_files(root: HostRoot, directory: str) -> list[str]:
    return [n for n in root.listdir(directory) if n.endswith(".toml")]
