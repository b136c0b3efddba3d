"""What `gpudoctor --check --json --offline` loads: only what a file-based run needs.

The headless doctor must start in under 4x a bare interpreter (benchmarks/bench_check.py). Live-probe
modules, ``socket``, ``platform`` and ``dataclasses`` (which pulls in ``inspect``) cost start-up time on
every CI gate and are only needed by live runs, so an offline run must not import them. The check is on
modules new to the process, so an interpreter whose site already loads one of them does not fail it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.scenarios.builder import fake_dev_env
from tests.scenarios.catalog import by_name
from tests.scenarios.hosts import REPO_ROOT, BuiltHosts, built_hosts

_PROBE = textwrap.dedent(
    """
    import io, json, sys
    from contextlib import redirect_stdout
    before = set(sys.modules)
    from gpudoctor.cli import main
    with redirect_stdout(io.StringIO()):
        code = main(sys.argv[1:])
    print(json.dumps({"code": code, "new": sorted(set(sys.modules) - before)}))
    """
)

LIVE_ONLY = (
    "socket",
    "platform",
    "dataclasses",
    "inspect",
    "textual",
    "docker",
    "gpudoctor.host.docker_probe",
    "gpudoctor.host.parity_probe",
    "gpudoctor.host.nvml",
    "gpudoctor.checks.live_docker",
    "gpudoctor.checks.live_parity",
)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hosts: BuiltHosts = built_hosts(tmp_path_factory)
    return hosts.get(by_name()["healthy_2gpu"])


def test_offline_check_leaves_live_only_modules_unloaded(healthy: Path) -> None:
    argv = ["--check", "--json", "--offline", "--root", str(healthy)]
    env = {**os.environ, **fake_dev_env(healthy)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["code"] == 0
    loaded = set(result["new"])
    # The healthy tree has a YAML CDI spec, TOML configs and an os-release: those parsers do load.
    assert {"yaml", "distro", "gpudoctor.host.model", "gpudoctor.host.runtime_facts"} <= loaded
    assert loaded & {"tomllib", "tomli"}  # tomli on Python 3.10
    assert sorted(loaded & set(LIVE_ONLY)) == []
