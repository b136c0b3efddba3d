"""docker-runtime on fake roots: golden diffs, idempotency, what it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpudoctor.fixes.base import FixError
from gpudoctor.fixes.docker_runtime import DockerRuntimeFix
from gpudoctor.fixes.paths import LAUNCHER_PATH
from gpudoctor.fixes.render import render_plan
from tests.fixes.helpers import STUB, assert_golden, ctx_for, normalize, write_files

DAEMON_JSON = "/etc/docker/daemon.json"
TOOLKIT = {"/usr/bin/nvidia-container-runtime": STUB, "/usr/bin/dockerd": STUB, "/usr/sbin/runc": STUB}
NO_TOOLKIT = {"/usr/bin/dockerd": STUB, "/usr/sbin/runc": STUB}

USER_CONFIG = """{
    "log-driver": "json-file",
    "log-opts": {
        "max-size": "10m",
        "max-file": "3"
    },
    "storage-driver": "overlay2",
    "runtimes": {
        "foo": {
            "path": "/usr/bin/foo",
            "runtimeArgs": ["--debug"]
        }
    },
    "features": {"cdi": true}
}
"""

SCENARIOS: dict[str, tuple[dict[str, str], dict[str, object]]] = {
    "no-daemon-json": (TOOLKIT, {}),
    "empty-file": ({**TOOLKIT, DAEMON_JSON: ""}, {}),
    "keeps-other-keys": ({**TOOLKIT, "/usr/bin/foo": STUB, DAEMON_JSON: USER_CONFIG}, {}),
    "tab-indented": ({**TOOLKIT, DAEMON_JSON: '{\n\t"debug": true\n}\n'}, {}),
    "one-line-set-default": ({**TOOLKIT, DAEMON_JSON: '{"debug": true, "runtimes": {}}'}, {"set_default_runtime": True}),
    "stale-nvidia-path": (
        {**TOOLKIT, DAEMON_JSON: '{\n  "default-runtime": "nvidia",\n  "runtimes": {\n    "nvidia": {\n'
         '      "path": "/opt/old/nvidia-container-runtime",\n      "runtimeArgs": []\n    }\n  }\n}\n'},
        {},
    ),
    "no-toolkit-stale-nvidia-entry": (
        {**NO_TOOLKIT, DAEMON_JSON: '{\n  "default-runtime": "nvidia",\n  "runtimes": {\n    "nvidia": {\n'
         '      "path": "/usr/bin/nvidia-container-runtime"\n    }\n  },\n  "live-restore": true\n}\n'},
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_diff_then_idempotent(tmp_path: Path, name: str) -> None:
    files, options = SCENARIOS[name]
    root = write_files(tmp_path / "root", files)
    before = (root / DAEMON_JSON.lstrip("/")).read_bytes() if DAEMON_JSON in files else None
    fix = DockerRuntimeFix()
    ctx = ctx_for(root, **options)
    plan = fix.plan(ctx)
    assert_golden(f"docker-runtime/{name}.txt", normalize(render_plan(plan, fix, live=ctx.live), root))

    result = fix.apply(ctx, plan)
    assert result.ok, result.error
    after = json.loads((root / DAEMON_JSON.lstrip("/")).read_text())
    name_registered = "nvidia" if "/usr/bin/nvidia-container-runtime" in files else "gpudoctor"
    assert after["runtimes"][name_registered]["path"]
    if before is not None:
        backup = result.backups[DAEMON_JSON]
        assert (root / backup.lstrip("/")).read_bytes() == before
    else:
        assert DAEMON_JSON not in result.backups

    again = fix.plan(ctx_for(root, **options))
    assert again.empty, render_plan(again)
    second = fix.apply(ctx_for(root, **options), again)
    assert second.ok and second.changed == []


def test_gpudoctor_route_writes_the_launcher_before_daemon_json(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", NO_TOOLKIT)
    fix = DockerRuntimeFix()
    plan = fix.plan(ctx_for(root))
    assert [e.path for e in plan.edits] == [LAUNCHER_PATH, DAEMON_JSON]
    result = fix.apply(ctx_for(root), plan)
    assert result.ok, result.error
    launcher = root / LAUNCHER_PATH.lstrip("/")
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith("#!/bin/sh\n")
    assert "RUNC='/usr/sbin/runc'" in launcher.read_text()
    assert json.loads((root / DAEMON_JSON.lstrip("/")).read_text()) == {"runtimes": {"gpudoctor": {"path": LAUNCHER_PATH}}}


def test_an_existing_working_gpudoctor_registration_is_kept(tmp_path: Path) -> None:
    config = '{"runtimes": {"gpudoctor": {"path": "/usr/local/bin/gpudoctor-runtime"}}}\n'
    root = write_files(tmp_path / "root", {**NO_TOOLKIT, "/usr/local/bin/gpudoctor-runtime": STUB, DAEMON_JSON: config})
    assert DockerRuntimeFix().plan(ctx_for(root)).empty


def test_symlinked_daemon_json_is_written_through_the_link(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {**TOOLKIT, "/etc/docker/real.json": '{"debug": true}\n'})
    (root / "etc/docker/daemon.json").symlink_to("real.json")
    plan, result = (fix := DockerRuntimeFix()).plan(ctx_for(root)), None
    result = fix.apply(ctx_for(root), plan)
    assert result.ok, result.error
    assert (root / "etc/docker/daemon.json").is_symlink()
    assert "nvidia" in json.loads((root / "etc/docker/real.json").read_text())["runtimes"]


def test_mode_and_owner_are_kept(tmp_path: Path) -> None:
    root = write_files(tmp_path / "root", {**TOOLKIT, DAEMON_JSON: '{"debug": true}\n'})
    target = root / DAEMON_JSON.lstrip("/")
    target.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(target, 1234, 5678)
    fix = DockerRuntimeFix()
    result = fix.apply(ctx_for(root), fix.plan(ctx_for(root)))
    assert result.ok, result.error
    st = target.stat()
    assert st.st_mode & 0o7777 == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)


@pytest.mark.parametrize(
    ("config", "expect"),
    [
        ('{"runtimes": ["nvidia"]}', '"runtimes" is a JSON list, not an object'),
        ('{"runtimes": {"foo": "/usr/bin/foo"}}', "runtimes.foo is not an object"),
        ('{\n  "debug": true,\n  "runtimes": {\n', f"{DAEMON_JSON}:4:1: not valid JSON"),
    ],
)
def test_refuses_what_it_cannot_merge_safely(tmp_path: Path, config: str, expect: str) -> None:
    root = write_files(tmp_path / "root", {**TOOLKIT, DAEMON_JSON: config})
    with pytest.raises(FixError) as info:
        DockerRuntimeFix().plan(ctx_for(root))
    assert expect in str(info.value)
    assert (root / DAEMON_JSON.lstrip("/")).read_text() == config


def test_add_runtime_flag_in_the_unit_is_a_conflict(tmp_path: Path) -> None:
    unit = "[Service]\nExecStart=/usr/bin/dockerd --add-runtime foo=/usr/bin/foo\n"
    root = write_files(tmp_path / "root", {**TOOLKIT, "/lib/systemd/system/docker.service": unit})
    with pytest.raises(FixError, match="--add-runtime"):
        DockerRuntimeFix().plan(ctx_for(root))


def test_unit_config_file_flag_is_honoured(tmp_path: Path) -> None:
    unit = "[Service]\nExecStart=/usr/bin/dockerd --config-file /etc/docker/custom.json\n"
    root = write_files(tmp_path / "root", {**TOOLKIT, "/lib/systemd/system/docker.service": unit})
    plan = DockerRuntimeFix().plan(ctx_for(root))
    assert [e.path for e in plan.edits] == ["/etc/docker/custom.json"]
