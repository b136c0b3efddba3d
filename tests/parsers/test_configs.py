"""daemon.json, the toolkit's config.toml and containerd's config (with imports), including parity with the
real dockerd and containerd installed here."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.configs import (
    ContainerdConfig,
    ToolkitConfig,
    find_duplicate_json_keys,
    parse_containerd_config_text,
    parse_daemon_json,
    parse_toolkit_config,
    read_containerd_config,
)
from gpudoctor.host.root import HostRoot
from tests.parsers.fuzzlib import FUZZ, FUZZ_SLOW, mutated_text, parse_or_error, sample

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DAEMON = "/etc/docker/daemon.json"
TOOLKIT = "/etc/nvidia-container-runtime/config.toml"
CONTAINERD = "/etc/containerd/config.toml"
LEGACY = (20, 10)

# ---------------------------------------------------------------------------------------------- daemon.json


def test_daemon_json_nvidia_ctk_output() -> None:
    cfg = parse_daemon_json(sample("daemon-nvidia-ctk.json"))
    assert cfg["default-runtime"] == "nvidia"
    assert cfg["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    assert cfg["features"] == {"cdi": True}


@pytest.mark.parametrize("text", ["", "  \n\t", "null", " null \n"])
def test_daemon_json_empty_and_null(text: str) -> None:
    assert parse_daemon_json(text) == {}


def test_daemon_json_empty_refused_by_old_dockerd() -> None:
    with pytest.raises(ParseError, match=r'^/etc/docker/daemon.json: file is empty.*"EOF"'):
        parse_daemon_json("\n", dockerd_version=LEGACY)
    assert parse_daemon_json("null", dockerd_version=LEGACY) == {}


def test_daemon_json_invalid_has_line_and_column() -> None:
    text = '{\n    "runtimes": {\n        "nvidia": {"path": "nvidia-container-runtime",}\n    }\n}\n'
    with pytest.raises(ParseError) as info:
        parse_daemon_json(text)
    assert (info.value.path, info.value.line) == (DAEMON, 3)
    assert info.value.column is not None and str(info.value).startswith(f"{DAEMON}:3:")


@pytest.mark.parametrize(
    ("text", "kind"), [("[]", "an array"), ('"x"', "a string"), ("1", "a number"), ("true", "a boolean")]
)
def test_daemon_json_top_level_must_be_object(text: str, kind: str) -> None:
    with pytest.raises(ParseError, match=f"top level must be a JSON object {{...}}, not {kind}"):
        parse_daemon_json(text)


def test_daemon_json_trailing_text() -> None:
    with pytest.raises(ParseError, match="unexpected text after the top-level value"):
        parse_daemon_json('{"debug": true}\n{"debug": false}\n')
    # dockerd 20.10 decodes the first value and ignores the rest.
    assert parse_daemon_json('{"debug": true} x', dockerd_version=LEGACY) == {"debug": True}


def test_daemon_json_encodings() -> None:
    assert parse_daemon_json(b'\xef\xbb\xbf{"debug": true}') == {"debug": True}
    assert parse_daemon_json('{"debug": true}'.encode("utf-16")) == {"debug": True}
    with pytest.raises(ParseError, match="byte order mark"):
        parse_daemon_json(b'\xef\xbb\xbf{"debug": true}', dockerd_version=LEGACY)
    with pytest.raises(ParseError) as info:
        parse_daemon_json(b'{\n"data-root": "/srv/\xff"}')
    assert info.value.line == 2 and "not valid UTF-8" in info.value.message


def test_daemon_json_rejects_nan_and_deep_nesting() -> None:
    with pytest.raises(ParseError, match="NaN is not valid JSON"):
        parse_daemon_json('{"x": NaN}')
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_daemon_json('{"x": ' + "[" * 200_000 + "]" * 200_000 + "}")


def _at_depth(frames: int, fn: Any, *args: Any) -> Any:
    return fn(*args) if frames == 0 else _at_depth(frames - 1, fn, *args)


def test_daemon_json_deep_valid_nesting_inside_a_deep_call_stack() -> None:
    # Parsing succeeds near the JSON decoder's own depth limit; post-processing must not then overflow.
    text = '{"x": ' + "[" * 300 + "]" * 300 + ', "y": 1, "y": 2}'
    assert _at_depth(500, parse_daemon_json, text)["y"] == 2
    assert _at_depth(500, find_duplicate_json_keys, text) == ["y"]


def test_daemon_json_duplicate_keys() -> None:
    text = (
        '{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}},\n'
        ' "runtimes": {"nvidia": {"path": "a", "path": "b"}}}'
    )
    assert parse_daemon_json(text)["runtimes"] == {"nvidia": {"path": "b"}}  # last one wins, as in dockerd
    assert find_duplicate_json_keys(text) == ["runtimes", "runtimes.nvidia.path"]
    assert find_duplicate_json_keys(sample("daemon-nvidia-ctk.json")) == []


def _dockerd_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    assert m, out
    return (int(m.group(1)), int(m.group(2)))


DAEMON_VARIANTS: list[bytes] = [
    b"{}",
    b'{"debug": true}',
    b"",
    b"  \n",
    b"null",
    b"[]",
    b'"debug"',
    b'{"debug": true,}',
    b'{"debug": tru}',
    b'{"debug": true} x',
    b'{"debug": true}\n{"debug": false}',
    b'\xef\xbb\xbf{"debug": true}',
    b'{"debug": true, "debug": false}',
    b'{"debug": NaN}',
    b'{"debug": true',
]


@pytest.mark.docker
def test_daemon_json_parity_with_real_dockerd(tmp_path: Path) -> None:
    """parse_daemon_json refuses exactly the files this machine's dockerd refuses to start with."""
    from tests.infra.dockerd import dockerd_binary

    binary = dockerd_binary()
    if binary is None or os.geteuid() != 0:
        pytest.skip("needs dockerd and root")
    version = _dockerd_version(binary)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    mismatches = []
    for i, content in enumerate(DAEMON_VARIANTS):
        cfg = tmp_path / f"daemon{i}.json"
        cfg.write_bytes(content)
        # A data-root below a regular file makes dockerd stop right after reading its config, before it
        # starts containerd or touches the network.
        result = subprocess.run(
            [
                binary,
                "--config-file",
                str(cfg),
                "--data-root",
                str(not_a_dir / "root"),
                "--exec-root",
                str(tmp_path / f"exec{i}"),
                "--pidfile",
                str(tmp_path / f"pid{i}"),
                "-H",
                f"unix://{tmp_path}/d{i}.sock",
                "--bridge=none",
                "--iptables=false",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        refused = "unable to configure the Docker daemon" in output
        try:
            parse_daemon_json(content, path=str(cfg), dockerd_version=version)
            ours = False
        except ParseError:
            ours = True
        if refused != ours:
            mismatches.append((content, output.strip().splitlines()[-1:]))
    assert mismatches == []


# ---------------------------------------------------------------------------------------------- toolkit


def test_toolkit_default_config() -> None:
    cfg = parse_toolkit_config(sample("toolkit-config-default.toml"))
    assert (
        cfg.ldconfig == "@/sbin/ldconfig"
        and cfg.ldconfig_is_host_path
        and cfg.ldconfig_path == "/sbin/ldconfig"
    )
    assert (cfg.mode, cfg.runtimes, cfg.log_level) == ("auto", ("runc", "crun"), "info")
    assert cfg.no_cgroups is None and cfg.debug_log is None and cfg.cli_debug_log is None
    assert cfg.load_kmods is True and cfg.driver_root is None
    assert cfg.cdi_spec_dirs == ("/etc/cdi", "/var/run/cdi") and cfg.cdi_default_kind == "nvidia.com/gpu"
    assert cfg.raw["supported-driver-capabilities"].startswith("compat32")


def test_toolkit_rootless_debug_config() -> None:
    text = (
        "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n"
        '[nvidia-container-cli]\nno-cgroups = true\nldconfig = "/sbin/ldconfig.real"\n'
        'debug = "/var/log/nvidia-container-toolkit.log"\nroot = "/run/nvidia/driver"\n'
        '[nvidia-container-runtime]\ndebug = "/var/log/nvidia-container-runtime.log"\nmode = "cdi"\n'
    )
    cfg = parse_toolkit_config(text)
    assert (
        cfg.no_cgroups is True
        and not cfg.ldconfig_is_host_path
        and cfg.ldconfig_path == "/sbin/ldconfig.real"
    )
    assert cfg.debug_log == "/var/log/nvidia-container-runtime.log"
    assert cfg.cli_debug_log == "/var/log/nvidia-container-toolkit.log"
    assert cfg.driver_root == "/run/nvidia/driver" and cfg.mode == "cdi"
    assert cfg.accept_envvar_unprivileged is False and cfg.runtimes == ()


def test_toolkit_empty_file() -> None:
    cfg = parse_toolkit_config("")
    assert cfg == ToolkitConfig(
        raw={}, ldconfig=None, mode=None, runtimes=(), no_cgroups=None, debug_log=None
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "[nvidia-container-runtime]\nmode = 3\n",
            "[nvidia-container-runtime] mode must be a string, not the number 3",
        ),
        (
            '[nvidia-container-cli]\nno-cgroups = "yes"\n',
            "no-cgroups must be true or false, not the string 'yes'",
        ),
        ("[nvidia-container-cli]\nno-cgroups = 1\n", "no-cgroups must be true or false"),
        ('[nvidia-container-runtime]\nruntimes = "runc"\n', "runtimes must be a list of strings"),
        ("nvidia-container-cli = 5\n", "nvidia-container-cli must be a table"),
    ],
)
def test_toolkit_type_errors(text: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_toolkit_config(text)
    assert info.value.path == TOOLKIT and needle in info.value.message


def test_toolkit_toml_error_position() -> None:
    with pytest.raises(ParseError) as info:
        parse_toolkit_config('[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig\nload-kmods = true\n')
    assert (info.value.line, info.value.column) == (2, 28)  # the end of the unterminated string
    assert "invalid TOML" in info.value.message and "(at line" not in info.value.message


# ---------------------------------------------------------------------------------------------- containerd


def write(root: Path, host_path: str, text: str) -> None:
    p = root / host_path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_containerd_text_validation() -> None:
    data = parse_containerd_config_text(sample("containerd-v2-default-1.6.toml"), path=CONTAINERD)
    assert data["version"] == 2
    for text, needle in [
        ('version = "2"\n', "version must be an integer"),
        ("version = 7\n", "unsupported config version 7"),
        ('imports = "/etc/containerd/conf.d/*.toml"\n', "imports must be a list of strings"),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\nSystemdCgroup = "true"\n',
            "SystemdCgroup must be true or false",
        ),
        (
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nruntimes = 1\n',
            "runtimes must be a table",
        ),
    ]:
        with pytest.raises(ParseError) as info:
            parse_containerd_config_text(text, path=CONTAINERD)
        assert info.value.path == CONTAINERD and needle in info.value.message, text


def test_containerd_default_v2(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, sample("containerd-v2-default-1.6.toml"))
    cfg = read_containerd_config(HostRoot(tmp_path))
    assert cfg is not None and cfg.version == 2 and cfg.cri_plugin == "io.containerd.grpc.v1.cri"
    assert list(cfg.runtimes) == ["runc"]
    runc = cfg.runtimes["runc"]
    assert (runc.runtime_type, runc.binary_name, runc.systemd_cgroup) == (
        "io.containerd.runc.v2",
        None,
        False,
    )
    assert runc.defined_in == CONTAINERD
    assert cfg.default_runtime_name == "runc" and cfg.files == (CONTAINERD,) and cfg.warnings == ()


def test_containerd_v1_without_version_key(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, sample("containerd-v1-k8s.toml"))
    cfg = read_containerd_config(HostRoot(tmp_path))
    assert cfg is not None and cfg.version == 1 and cfg.cri_plugin == "cri"
    assert cfg.default_runtime_name == "nvidia"
    nvidia = cfg.runtimes["nvidia"]
    assert nvidia.binary_name == "/usr/bin/nvidia-container-runtime" and nvidia.systemd_cgroup is True
    assert nvidia.options["Runtime"] == "/usr/bin/nvidia-container-runtime"


def test_containerd_v3_with_nvidia_dropin(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, sample("containerd-v3-main.toml"))
    write(tmp_path, "/etc/containerd/conf.d/99-nvidia.toml", sample("containerd-v3-99-nvidia.toml"))
    root = HostRoot(tmp_path)
    cfg = read_containerd_config(root)
    assert cfg is not None and cfg.version == 3 and cfg.cri_plugin == "io.containerd.cri.v1.runtime"
    assert cfg.files == (CONTAINERD, "/etc/containerd/conf.d/99-nvidia.toml")
    assert set(cfg.runtimes) == {"runc", "nvidia"}
    assert cfg.runtimes["runc"].systemd_cgroup is True and cfg.runtimes["runc"].defined_in == CONTAINERD
    nvidia = cfg.runtimes["nvidia"]
    assert nvidia.binary_name == "/usr/bin/nvidia-container-runtime"
    assert nvidia.defined_in == "/etc/containerd/conf.d/99-nvidia.toml"
    assert cfg.default_runtime_name == "nvidia" and cfg.cdi_enabled is True
    assert cfg.raw["plugins"]["io.containerd.cri.v1.images"]["snapshotter"] == "overlayfs"
    assert "/etc/containerd/conf.d/99-nvidia.toml" in root.accessed


def test_containerd_1x_dropin_replaces_plugin_section(tmp_path: Path) -> None:
    main = (
        sample("containerd-v3-main.toml")
        .replace("version = 3", "version = 2")
        .replace("'io.containerd.cri.v1.runtime'", '"io.containerd.grpc.v1.cri"')
    )
    dropin = (
        sample("containerd-v3-99-nvidia.toml")
        .replace("version = 3", "version = 2")
        .replace('"io.containerd.cri.v1.runtime"', '"io.containerd.grpc.v1.cri"')
    )
    write(tmp_path, CONTAINERD, main)
    write(tmp_path, "/etc/containerd/conf.d/99-nvidia.toml", dropin)
    root = HostRoot(tmp_path)
    v1x = read_containerd_config(root)
    assert v1x is not None and set(v1x.runtimes) == {"nvidia"}  # runc and its SystemdCgroup are gone
    assert any("replaces the whole" in w and "io.containerd.grpc.v1.cri" in w for w in v1x.warnings)
    v2x = read_containerd_config(root, containerd_major=2)
    assert v2x is not None and set(v2x.runtimes) == {"runc", "nvidia"} and v2x.warnings == ()


def test_containerd_relative_imports(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, 'version = 2\nimports = ["extra.toml", "conf.d/*.toml"]\n')
    write(
        tmp_path,
        "/etc/containerd/extra.toml",
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\ndefault_runtime_name = "extra"\n',
    )
    write(
        tmp_path,
        "/etc/containerd/conf.d/a.toml",
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.a]\nruntime_type = "io.containerd.runc.v2"\n',
    )
    root = HostRoot(tmp_path)
    old = read_containerd_config(root)
    # containerd 1.x: the plain relative path is relative to the file, the relative glob to "/" (finds nothing).
    assert old is not None and old.files == (CONTAINERD, "/etc/containerd/extra.toml")
    assert any("relative glob" in w for w in old.warnings)
    new = read_containerd_config(root, containerd_major=2)
    assert new is not None and new.files == (
        CONTAINERD,
        "/etc/containerd/extra.toml",
        "/etc/containerd/conf.d/a.toml",
    )
    assert new.default_runtime_name == "extra" and "a" in new.runtimes


def test_containerd_import_errors_name_the_import(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, 'version = 2\nimports = ["/etc/containerd/missing.toml"]\n')
    with pytest.raises(ParseError) as info:
        read_containerd_config(HostRoot(tmp_path))
    assert info.value.path == "/etc/containerd/missing.toml" and CONTAINERD in info.value.message

    write(tmp_path, CONTAINERD, 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n')
    write(tmp_path, "/etc/containerd/conf.d/bad.toml", 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n')
    with pytest.raises(ParseError) as info:
        read_containerd_config(HostRoot(tmp_path))
    assert (info.value.path, info.value.line) == ("/etc/containerd/conf.d/bad.toml", 2)

    write(tmp_path, "/etc/containerd/conf.d/bad.toml", b"\xff\xfe".decode("latin-1"))
    (tmp_path / "etc/containerd/conf.d/bad.toml").write_bytes(b"version = 2\n# \xff\n")
    with pytest.raises(ParseError, match="not valid UTF-8") as info:
        read_containerd_config(HostRoot(tmp_path))
    assert info.value.path == "/etc/containerd/conf.d/bad.toml"


def test_containerd_2x_version_rules(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n')
    write(tmp_path, "/etc/containerd/conf.d/v3.toml", "version = 3\n")
    with pytest.raises(ParseError, match="higher than the main config version 2") as info:
        read_containerd_config(HostRoot(tmp_path), containerd_major=2)
    assert info.value.path == "/etc/containerd/conf.d/v3.toml"

    # A version 2 drop-in under a version 3 main file is migrated before merging.
    write(
        tmp_path,
        CONTAINERD,
        sample("containerd-v3-main.toml").replace(
            "/etc/containerd/conf.d/*.toml", "/etc/containerd/v2/*.toml"
        ),
    )
    write(
        tmp_path,
        "/etc/containerd/v2/nvidia.toml",
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nenable_cdi = true\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\nBinaryName = "/usr/bin/nvidia-container-runtime"\n',
    )
    cfg = read_containerd_config(HostRoot(tmp_path))
    assert cfg is not None and cfg.version == 3
    assert cfg.runtimes["nvidia"].binary_name == "/usr/bin/nvidia-container-runtime"
    assert cfg.runtimes["nvidia"].defined_in == "/etc/containerd/v2/nvidia.toml"
    assert cfg.cdi_enabled is True and "runc" in cfg.runtimes


def test_containerd_cycle_and_version_mismatch_warning(tmp_path: Path) -> None:
    write(tmp_path, CONTAINERD, 'version = 3\nimports = ["/etc/containerd/b.toml"]\n')
    write(
        tmp_path,
        "/etc/containerd/b.toml",
        'version = 3\nimports = ["/etc/containerd/config.toml"]\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\nruntime_type = "io.containerd.runc.v2"\n',
    )
    cfg = read_containerd_config(HostRoot(tmp_path))
    assert cfg is not None and cfg.files == (CONTAINERD, "/etc/containerd/b.toml")
    assert "nvidia" not in cfg.runtimes
    assert any("only a version 2 config reads them" in w for w in cfg.warnings)


def test_containerd_missing_main(tmp_path: Path) -> None:
    root = HostRoot(tmp_path)
    assert read_containerd_config(root) is None
    assert CONTAINERD in root.accessed


CONTAINERD_BIN = shutil.which("containerd")


def _dump(main: Path) -> dict[str, Any]:
    assert CONTAINERD_BIN is not None
    out = subprocess.run(
        [CONTAINERD_BIN, "-c", str(main), "config", "dump"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return tomllib.loads(out.stdout)


def _containerd_major() -> int:
    assert CONTAINERD_BIN is not None
    out = subprocess.run([CONTAINERD_BIN, "--version"], capture_output=True, text=True).stdout
    m = re.search(r" v?(\d+)\.(\d+)", out)
    assert m, out
    return int(m.group(1))


@pytest.mark.skipif(CONTAINERD_BIN is None, reason="containerd is not installed")
@pytest.mark.parametrize("layout", ["replace", "relative", "v1"])
def test_containerd_parity_with_config_dump(tmp_path: Path, layout: str) -> None:
    """The runtimes we compute are the ones `containerd config dump` shows for the same files."""
    major = _containerd_major()
    if major >= 2:
        pytest.skip("these layouts exercise containerd 1.x merge rules")
    base = tmp_path / "etc"
    if layout == "v1":
        write(base, "config.toml", sample("containerd-v1-k8s.toml"))
    else:
        imports = (
            f'"{base}/conf.d/*.toml", "extra.toml"'
            if layout == "replace"
            else '"conf.d/*.toml", "extra.toml"'
        )
        write(
            base,
            "config.toml",
            f"version = 2\nimports = [{imports}]\n"
            + sample("containerd-v3-main.toml")
            .split("[plugins]", 1)[1]
            .replace("'io.containerd.cri.v1.runtime'", '"io.containerd.grpc.v1.cri"')
            .replace("'io.containerd.cri.v1.images'", '"io.containerd.grpc.v1.cri"'),
        )
        write(
            base,
            "conf.d/99-nvidia.toml",
            sample("containerd-v3-99-nvidia.toml")
            .replace("version = 3", "version = 2")
            .replace('"io.containerd.cri.v1.runtime"', '"io.containerd.grpc.v1.cri"'),
        )
        write(base, "extra.toml", 'version = 2\n[metrics]\naddress = "127.0.0.1:1338"\n')
    main = base / "config.toml"
    dump = _dump(main)
    ours = read_containerd_config(HostRoot("/"), str(main), containerd_major=major)
    assert ours is not None
    theirs = dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert set(ours.runtimes) == set(theirs)
    for name, rt in ours.runtimes.items():
        options = theirs[name].get("options", {})
        assert rt.binary_name == (options.get("BinaryName") or None)
        if rt.systemd_cgroup is not None:
            assert rt.systemd_cgroup == options.get("SystemdCgroup")
    if ours.default_runtime_name is not None:
        assert (
            ours.default_runtime_name
            == dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["default_runtime_name"]
        )
    assert sorted(ours.files) == sorted(dump["imports"])


# ---------------------------------------------------------------------------------------------- fuzz


@FUZZ
@given(st.one_of(st.text(), mutated_text(sample("daemon-nvidia-ctk.json"))))
def test_fuzz_daemon_json_text(text: str) -> None:
    for version in (None, LEGACY):
        parse_or_error(
            functools.partial(parse_daemon_json, dockerd_version=version),
            text,
            path=DAEMON,
            expected=dict,
        )


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_daemon_json_bytes(data: bytes) -> None:
    parse_or_error(parse_daemon_json, data, path=DAEMON, expected=dict)
    parse_or_error(find_duplicate_json_keys, data, path=DAEMON, expected=list)


@FUZZ
@given(st.one_of(st.text(), mutated_text(sample("toolkit-config-default.toml"))))
def test_fuzz_toolkit_config(text: str) -> None:
    parse_or_error(parse_toolkit_config, text, path=TOOLKIT, expected=ToolkitConfig)


@FUZZ
@given(
    st.one_of(
        st.text(),
        st.sampled_from(
            ["containerd-v2-default-1.6.toml", "containerd-v1-k8s.toml", "containerd-v3-main.toml"]
        ).flatmap(lambda n: mutated_text(sample(n))),
    )
)
def test_fuzz_containerd_text(text: str) -> None:
    parse_or_error(parse_containerd_config_text, text, path=CONTAINERD, expected=dict)


@FUZZ_SLOW
@given(
    main=mutated_text(sample("containerd-v3-main.toml")),
    dropin=mutated_text(sample("containerd-v3-99-nvidia.toml")),
    major=st.sampled_from([None, 1, 2]),
)
def test_fuzz_containerd_with_imports(main: str, dropin: str, major: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), CONTAINERD, main)
        write(Path(tmp), "/etc/containerd/conf.d/99-nvidia.toml", dropin)
        try:
            cfg = read_containerd_config(HostRoot(tmp), containerd_major=major)
        except ParseError as exc:
            assert exc.path.startswith("/etc/containerd/"), exc.path
            assert exc.path in str(exc)
        else:
            assert isinstance(cfg, ContainerdConfig) and cfg.version in (1, 2, 3)


def test_containerd_1x_dropin_that_keeps_every_setting_is_not_a_finding(tmp_path: Path) -> None:
    main = 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n'
    dropin = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n'
        '  default_runtime_name = "nvidia"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n  runtime_type = "io.containerd.runc.v2"\n'
    )
    write(tmp_path, CONTAINERD, main)
    write(tmp_path, "/etc/containerd/conf.d/99-nvidia.toml", dropin)
    cfg = read_containerd_config(HostRoot(tmp_path))
    assert cfg is not None and set(cfg.runtimes) == {"nvidia"} and cfg.warnings == ()
    write(tmp_path, "/etc/containerd/conf.d/99-nvidia.toml", dropin.replace('  snapshotter = "overlayfs"\n', ""))
    lossy = read_containerd_config(HostRoot(tmp_path))
    assert lossy is not None and any("replaces the whole" in w for w in lossy.warnings)
