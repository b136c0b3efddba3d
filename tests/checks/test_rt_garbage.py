"""No config file, however broken, makes a toolkit/runtime check crash.

Garbage bytes and well-formed-but-wrong structures go into daemon.json, the toolkit's config.toml,
containerd's config.toml and a CDI spec. Every toolkit.* / runtime.* check then runs on that host (through
the runner's `run_one`, which turns a crash into an `error` result). The contract: the status is never
`error`, and a file that does not parse gives a `fail` whose evidence is the parse error naming that file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gpudoctor.checks.base import REGISTRY, CheckContext, CheckOptions, CheckResult, Status
from gpudoctor.checks.runner import run_one
from gpudoctor.host.errors import ParseError
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.parsers.cdi import parse_cdi_spec
from gpudoctor.host.parsers.configs import parse_daemon_json, parse_toolkit_config, read_containerd_config
from gpudoctor.host.root import HostRoot
from tests.scenarios import runtime_fragments as frag

# The checks whose input these files are; importing the modules registers them.
import gpudoctor.checks.parity  # noqa: F401  isort: skip
import gpudoctor.checks.runtime  # noqa: F401  isort: skip
import gpudoctor.checks.toolkit  # noqa: F401  isort: skip

FILE_CHECKS = ("toolkit.installed", "toolkit.config", "runtime.docker_config", "runtime.containerd",
               "runtime.cdi", "runtime.cgroups")

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_BASE = frag.merge(frag.healthy_runtime_fragment(), frag.driver_version_file(), frag.driver_libs())


def _run_all(files: dict[str, bytes]) -> dict[str, CheckResult]:
    with tempfile.TemporaryDirectory(prefix="gd-garbage-") as tmp:
        frag.write_tree(tmp, _BASE)
        frag.write_tree(tmp, {path: frag.File(data) for path, data in files.items()})
        facts = HostFacts(root=HostRoot(tmp, offline=True))
        ctx_results: dict[str, CheckResult] = {}
        out: dict[str, CheckResult] = {}
        for cid in FILE_CHECKS:
            ctx = CheckContext(host=facts, options=CheckOptions(offline=True), results=ctx_results)
            # No dependency results: each check runs on its own, so every one sees the garbage.
            out[cid] = run_one(REGISTRY[cid], ctx, {})
        return out


def _assert_clean(results: dict[str, CheckResult]) -> None:
    for cid, res in results.items():
        assert res.status is not Status.ERROR, f"{cid} crashed: {res.summary}\n" + "\n".join(res.evidence)
        assert res.summary.strip(), cid
        assert all(isinstance(line, str) for line in res.evidence), cid


def _parse_error(parse: Any) -> ParseError | None:
    try:
        parse()
    except ParseError as exc:
        return exc
    return None


# -- strategies -------------------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=12),
                         st.sampled_from(["runc", "nvidia", "/usr/bin/nvidia-container-runtime", "", "\x00x",
                                          "native.cgroupdriver=systemd", "/etc/cdi", "../../etc"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
daemon_keys = st.sampled_from(["runtimes", "default-runtime", "exec-opts", "features", "cdi-spec-dirs", "hosts"])
runtime_entry = st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"path": json_scalars, "runtimeArgs": json_values, "runtimeType": json_scalars}))
daemon_structured = st.dictionaries(daemon_keys, st.one_of(
    json_values, st.dictionaries(st.sampled_from(["nvidia", "gpudoctor", "x"]), runtime_entry, max_size=3)),
    max_size=4).map(lambda d: json.dumps(d).encode())

garbage_bytes = st.binary(max_size=400)
json_like = st.text(alphabet='{}[]":,ntrufalse0123 \n\\', max_size=120).map(str.encode)
toml_like = st.text(alphabet='[]."=#\n abcdeimnoprstuv0123\'', max_size=160).map(str.encode)
yaml_like = st.text(alphabet="-:{}[]&*!|>'\" \nabcdeknsv0123./", max_size=160).map(str.encode)

toml_values = st.sampled_from(['"auto"', '"@/sbin/ldconfig.real"', "true", "5", "[]", '["runc", 3]', "{}",
                               '"x\\u0000y"', '"/nonexistent"', '""', "[[]]", "1979-05-27"])
toolkit_structured = st.builds(
    lambda section, key, value: f"[{section}]\n{key} = {value}\n".encode(),
    st.sampled_from(["nvidia-container-cli", "nvidia-container-runtime", "nvidia-container-runtime.modes.cdi"]),
    st.sampled_from(["ldconfig", "mode", "runtimes", "no-cgroups", "debug", "spec-dirs"]),
    toml_values,
)
containerd_structured = st.builds(
    lambda version, table, key, value: (
        (f"version = {version}\n" if version is not None else "")
        + f"[{table}]\n{key} = {value}\n"
    ).encode(),
    st.sampled_from([None, 1, 2, 3, 7, '"2"']),
    st.sampled_from([
        'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia',
        'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options',
        'plugins."io.containerd.cri.v1.runtime".containerd',
        "plugins.cri.containerd.runtimes.runc.options",
        'plugins."io.containerd.grpc.v1.cri"',
    ]),
    st.sampled_from(["BinaryName", "SystemdCgroup", "runtime_type", "default_runtime_name", "enable_cdi",
                     "cdi_spec_dirs", "imports"]),
    toml_values,
)
cdi_structured = st.fixed_dictionaries(
    {"cdiVersion": st.sampled_from(["0.5.0", 5, None]),
     "kind": st.sampled_from(["nvidia.com/gpu", "example.com/x", "bad", ""])},
    optional={
        "devices": st.lists(st.fixed_dictionaries(
            {"name": st.sampled_from(["0", "all", "GPU-1", "bad name", ""])},
            optional={"containerEdits": json_values}), max_size=3),
        "containerEdits": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "deviceNodes": st.lists(st.fixed_dictionaries({"path": json_scalars}), max_size=2),
            "mounts": st.lists(st.fixed_dictionaries({"hostPath": json_scalars, "containerPath": json_scalars}),
                               max_size=2),
            "hooks": st.lists(st.fixed_dictionaries({"hookName": json_scalars, "path": json_scalars,
                                                     "args": json_values}), max_size=2),
        })),
    },
).map(lambda d: json.dumps(d).encode())


# -- tests ------------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.one_of(garbage_bytes, json_like, daemon_structured))
@example(data=b'{"runtimes": {"nvidia": {"path": "/usr/bin/x\\u0000y"}}, "cdi-spec-dirs": ["/etc/\\u0000"]}')
@example(data=b'{"runtimes": {"nvidia": {"path": 5}}, "default-runtime": ["nvidia"], "exec-opts": [1, null]}')
@example(data=b'{"runtimes": [], "features": {"cdi": "yes"}, "hosts": "x"}')
def test_daemon_json_garbage_never_crashes(data: bytes) -> None:
    results = _run_all({frag.DAEMON_JSON: data})
    _assert_clean(results)
    err = _parse_error(lambda: parse_daemon_json(data, path=frag.DAEMON_JSON))
    res = results["runtime.docker_config"]
    if err is not None:
        assert res.status is Status.FAIL
        assert str(err) in res.evidence and str(err).startswith(frag.DAEMON_JSON)


@SETTINGS
@given(data=st.one_of(garbage_bytes, toml_like, toolkit_structured))
def test_toolkit_config_garbage_never_crashes(data: bytes) -> None:
    results = _run_all({frag.TOOLKIT_CONFIG: data})
    _assert_clean(results)
    text = data.decode("utf-8", errors="replace")
    err = _parse_error(lambda: parse_toolkit_config(text, path=frag.TOOLKIT_CONFIG))
    res = results["toolkit.config"]
    if err is not None:
        assert res.status is Status.FAIL
        assert str(err) in res.evidence and str(err).startswith(frag.TOOLKIT_CONFIG)


@SETTINGS
@given(data=st.one_of(garbage_bytes, toml_like, containerd_structured))
@example(data=b'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n'
         b'BinaryName = "/usr/bin/a\\u0000"\n')
@example(data=b'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\ncdi_spec_dirs = ["/x\\u0000"]\n')
def test_containerd_config_garbage_never_crashes(data: bytes) -> None:
    results = _run_all({frag.CONTAINERD_CONFIG: data})
    _assert_clean(results)
    with tempfile.TemporaryDirectory() as tmp:
        frag.write_tree(tmp, {frag.CONTAINERD_CONFIG: frag.File(data)})
        err = _parse_error(lambda: read_containerd_config(HostRoot(tmp), frag.CONTAINERD_CONFIG))
    res = results["runtime.containerd"]
    if err is not None:
        assert res.status is Status.FAIL
        assert str(err) in res.evidence


@SETTINGS
@given(data=st.one_of(garbage_bytes, yaml_like, json_like, cdi_structured))
@example(data=b'{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [{"name": "0", "containerEdits": '
         b'{"deviceNodes": [{"path": "/dev/\\u0000"}], "mounts": [{"hostPath": "rel/x", "containerPath": "/x"}]}}]}')
def test_cdi_spec_garbage_never_crashes(data: bytes) -> None:
    results = _run_all({frag.CDI_SPEC: data})
    _assert_clean(results)
    text = data.decode("utf-8", errors="replace")
    err = _parse_error(lambda: parse_cdi_spec(text, path=frag.CDI_SPEC))
    res = results["runtime.cdi"]
    if err is not None:
        assert res.status is Status.FAIL
        assert str(err) in res.evidence and str(err).startswith(frag.CDI_SPEC)


def test_mountinfo_garbage_falls_back_to_sysfs_then_skips_with_the_reason(tmp_path: Path) -> None:
    frag.write_tree(tmp_path, _BASE)
    frag.write_tree(tmp_path, {"/proc/self/mountinfo": frag.File(b"\x00\xff not a mountinfo line\n")})

    def cgroups() -> CheckResult:
        facts = HostFacts(root=HostRoot(tmp_path, offline=True))
        ctx = CheckContext(host=facts, options=CheckOptions(offline=True), results={})
        return run_one(REGISTRY["runtime.cgroups"], ctx, {})

    res = cgroups()
    assert res.status is not Status.ERROR
    assert any("/proc/self/mountinfo:1: contains a NUL byte" in e and "cgroup.controllers exists" in e
               for e in res.evidence)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").unlink()
    res = cgroups()
    assert res.status is Status.SKIP
    assert "/proc/self/mountinfo:1" in res.summary
