"""gpudoctor-runtime: argv parsing, settings, the create edit, pass-through, errors and the sh launcher.

The shim runs as a real process (through entry.py, the launcher, and the console script) in front of a
recording stand-in for runc, so what runc would receive is checked byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.engine.launcher import entry_path, render_launcher, write_launcher
from gpudoctor.engine.settings import (
    Settings,
    SettingsError,
    load_settings,
    parse_settings_text,
    render_settings,
)
from gpudoctor.engine.shim import RuncArgs, parse_runc_args
from tests.engine.engine_kit import docker_like_config
from tests.kit.driver_root import DriverRootInfo

# -------------------------------------------------------------------------------------------- argv parsing


@pytest.mark.parametrize(
    ("argv", "verb", "bundle", "log"),
    [
        (["create", "--bundle", "/b", "id"], "create", "/b", None),
        (["create", "--bundle=/b", "id"], "create", "/b", None),
        (["create", "-b", "/b", "id"], "create", "/b", None),
        (["create", "-b=/b", "id"], "create", "/b", None),
        (["create", "-bundle", "/b", "id"], "create", "/b", None),
        (
            ["create", "--bundle", "/b1", "--bundle", "/b2", "id"],
            "create",
            "/b2",
            None,
        ),  # last wins, as in Go
        (["create", "--bundle", "/b1", "-b", "/b2", "id"], "create", "/b2", None),
        (["create", "id"], "create", None, None),
        (["create", "--bundle", "/tmp/b with spaces", "id"], "create", "/tmp/b with spaces", None),
        (["create", "--bundle", "create", "create"], "create", "create", None),  # a bundle dir named create
        (
            [
                "--root",
                "/run/runc",
                "--log",
                "create",
                "--log-format",
                "json",
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/p",
                "--console-socket",
                "/s",
                "id",
            ],
            "create",
            "/b",
            "create",
        ),  # fmt: skip
        (["--debug", "run", "--detach", "-b", "/b", "id"], "run", "/b", None),
        (["--log=/l", "start", "id"], "start", None, "/l"),
        (["delete", "--force", "id"], "delete", None, None),
        (["--", "create", "--bundle", "/b", "id"], "create", "/b", None),
        ([], None, None, None),
        (["--help"], None, None, None),
    ],
)
def test_runc_argv_is_read_like_runc(
    argv: list[str], verb: str | None, bundle: str | None, log: str | None
) -> None:
    args = parse_runc_args(argv)
    assert args is not None
    assert (args.verb, args.bundle, args.log) == (verb, bundle, log)


@pytest.mark.parametrize(
    "argv",
    [
        ["--root"],  # a value flag without its value
        ["--bogus", "create", "--bundle", "/b", "id"],
        ["create", "--bogus", "--bundle", "/b", "id"],
        ["create", "--bundle"],
    ],
)
def test_argv_runc_would_reject_is_not_interpreted(argv: list[str]) -> None:
    assert parse_runc_args(argv) is None


def test_container_id() -> None:
    args = parse_runc_args(["create", "--bundle", "/b", "--pid-file", "/p", "abc123"])
    assert isinstance(args, RuncArgs) and args.container_id == "abc123"


# ------------------------------------------------------------------------------------------------ settings


def test_settings_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings({})  # /etc/gpudoctor/runtime.toml does not exist on a test host
    if os.path.exists("/etc/gpudoctor/runtime.toml"):
        pytest.skip("this host has a real /etc/gpudoctor/runtime.toml")
    assert settings.driver_root == settings.dev_root == "/"
    assert (
        settings.runc.endswith("/runc") and settings.log_file == "" and settings.cache_dir == "/run/gpudoctor"
    )


def test_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "runtime.toml"
    path.write_text(
        "# comment\nrunc = \"/usr/sbin/runc\"  # trailing comment\ndriver_root = '/run/nvidia/driver'\n"
        'log_file = "/var/log/gpudoctor-runtime.log"\ncache_dir = ""\n'
    )
    settings = load_settings({"GPUDOCTOR_RUNTIME_CONFIG": str(path)})
    assert (settings.runc, settings.driver_root, settings.dev_root) == (
        "/usr/sbin/runc", "/run/nvidia/driver", "/run/nvidia/driver",
    )  # fmt: skip
    assert settings.log_file == "/var/log/gpudoctor-runtime.log" and settings.cache_dir == ""


def test_render_settings_round_trips(tmp_path: Path) -> None:
    original = Settings(runc='/opt/r"u\\nc', driver_root="/d", dev_root="/e", log_file="/l", cache_dir="/c")
    path = tmp_path / "runtime.toml"
    path.write_text(render_settings(original))
    loaded = load_settings({"GPUDOCTOR_RUNTIME_CONFIG": str(path)})
    assert [getattr(loaded, k) for k in ("runc", "driver_root", "dev_root", "log_file", "cache_dir")] == [
        '/opt/r"u\\nc', "/d", "/e", "/l", "/c",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("runc = /usr/sbin/runc\n", "must be a quoted string"),
        ('bogus = "x"\n', "unknown setting 'bogus'"),
        ('runc = "a"\nrunc = "b"\n', "runc is set twice"),
        ("[section]\n", 'expected key = "value"'),
        ('runc = "a\\q"\n', "unsupported escape"),
        ('driver_root = "relative"\n', "must be an absolute path"),
    ],
)
def test_bad_settings_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "runtime.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message) as exc:
        load_settings({"GPUDOCTOR_RUNTIME_CONFIG": str(path)})
    assert str(path) in str(exc.value)


def test_a_named_settings_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"GPUDOCTOR_RUNTIME_CONFIG": str(tmp_path / "nope.toml")})


def test_parse_settings_text_has_no_other_syntax() -> None:
    assert parse_settings_text("\n  # only comments\n", path="x") == {}


# -------------------------------------------------------------------------------------- the shim, for real


FAKE_RUNC = """#!/bin/sh
# Stand-in for runc: records its argv and the config.json it would run, then exits 0.
out={out}
printf '%s\\n' "$@" > "$out/argv"
bundle=.
take=
for a do
    if [ -n "$take" ]; then bundle=$a; take=; fi
    case $a in --bundle|-b) take=1 ;; --bundle=*|-b=*) bundle=${{a#*=}} ;; esac
done
if [ -f "$bundle/config.json" ]; then cp "$bundle/config.json" "$out/config.json"; fi
ls -l /proc/$$/fd > "$out/fds" 2>/dev/null
exit 0
"""


class ShimHarness:
    """A bundle, settings pointing at a kit driver root, and a recording runc."""

    def __init__(self, base: Path, kit: DriverRootInfo, *, log: bool = True) -> None:
        self.base = base
        self.record = base / "record"
        self.record.mkdir()
        self.runc = base / "runc"
        self.runc.write_text(FAKE_RUNC.format(out=self.record))
        self.runc.chmod(0o755)
        self.log = base / "shim.log"
        self.settings_path = base / "runtime.toml"
        self.settings_path.write_text(
            render_settings(
                Settings(
                    runc=str(self.runc),
                    driver_root=str(kit.root),
                    log_file=str(self.log) if log else "",
                    cache_dir=str(base / "cache"),
                )
            )
        )
        self.bundle = base / "bundle dir"
        self.bundle.mkdir()

    def write_config(self, spec: dict[str, Any] | bytes) -> bytes:
        data = spec if isinstance(spec, bytes) else json.dumps(spec, indent=1).encode()
        (self.bundle / "config.json").write_bytes(data)
        return data

    @property
    def config(self) -> Path:
        return self.bundle / "config.json"

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "GPUDOCTOR_RUNTIME_CONFIG": str(self.settings_path)}

    def run(self, *args: str, via: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = via or [sys.executable, "-I", "-S", entry_path(), "runtime"]
        return subprocess.run([*argv, *args], env=self.env(), capture_output=True, text=True, timeout=120)

    def runc_argv(self) -> list[str]:
        return (self.record / "argv").read_text().splitlines()

    def runc_saw(self) -> bytes:
        return (self.record / "config.json").read_bytes()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def harness(tmp_path: Path, kit_host: DriverRootInfo) -> ShimHarness:
    return ShimHarness(tmp_path, kit_host)


CREATE = [
    "--root",
    "/run/x",
    "--log",
    "LOG",
    "--log-format",
    "json",
    "create",
    "--bundle",
    "BUNDLE",
    "--pid-file",
    "/p",
    "cid",
]


def _create_argv(h: ShimHarness) -> list[str]:
    return [
        str(h.bundle) if a == "BUNDLE" else str(h.base / "runc-log.json") if a == "LOG" else a for a in CREATE
    ]


def test_a_gpu_create_is_edited_and_runc_gets_the_same_argv(
    harness: ShimHarness, kit_host: DriverRootInfo
) -> None:
    harness.write_config(docker_like_config(["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=1"]))
    argv = _create_argv(harness)
    done = harness.run(*argv)
    assert done.returncode == 0, done.stderr
    assert harness.runc_argv() == argv
    spec = json.loads(harness.runc_saw())
    assert harness.runc_saw() == harness.config.read_bytes()
    gpu_nodes = [d["path"] for d in spec["linux"]["devices"] if d["path"][len("/dev/nvidia") :].isdigit()]
    assert gpu_nodes == ["/dev/nvidia1"]
    assert any(m["destination"] == "/usr/bin/nvidia-smi" for m in spec["mounts"])
    # runc gets no stray descriptors from the shim: stdio only (dash keeps its own script and saved
    # descriptors at 10 and above).
    fds = {int(line.split()[-3]) for line in (harness.record / "fds").read_text().splitlines()[1:]}
    assert {fd for fd in fds if fd < 10} == {0, 1, 2}, fds
    record = harness.log_records()[-1]
    assert record["request"] == "1" and record["devices"][-1] == "/dev/nvidia1"
    assert record["sha256_after"] == hashlib.sha256(harness.runc_saw()).hexdigest()
    assert record["sha256_before"] != record["sha256_after"]


@pytest.mark.parametrize(
    "env",
    [
        ["PATH=/bin"],
        ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES="],
        ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void"],
        ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_DRIVER_CAPABILITIES=nonsense"],
    ],
)
def test_a_container_without_a_gpu_request_keeps_its_spec_byte_identical(
    harness: ShimHarness, env: list[str]
) -> None:
    original = harness.write_config(docker_like_config(env))
    inode = harness.config.stat().st_ino
    done = harness.run(*_create_argv(harness))
    assert done.returncode == 0, done.stderr
    assert harness.runc_saw() == original
    assert harness.config.stat().st_ino == inode  # not even rewritten with the same bytes
    record = harness.log_records()[-1]
    assert record["request"] is None and "sha256_after" not in record
    assert record["sha256_before"] == hashlib.sha256(original).hexdigest()


@pytest.mark.parametrize(
    "verb", [["start", "cid"], ["delete", "--force", "cid"], ["state", "cid"], ["--version"]]
)
def test_other_verbs_pass_straight_through(harness: ShimHarness, verb: list[str]) -> None:
    done = harness.run("--root", "/run/x", *verb) if verb != ["--version"] else harness.run(*verb)
    assert done.returncode == 0, done.stderr
    assert harness.runc_argv() == (["--root", "/run/x", *verb] if verb != ["--version"] else verb)
    assert not harness.log.exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            docker_like_config(["NVIDIA_VISIBLE_DEVICES=../x"]),
            "NVIDIA_VISIBLE_DEVICES: '../x' is not a GPU index",
        ),
        (docker_like_config(["NVIDIA_VISIBLE_DEVICES=7"]), "names '7', but this host has GPU 0 ("),
        (docker_like_config(["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=1"]), "set twice"),
        (
            docker_like_config(["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DRIVER_CAPABILITIES=x"]),
            "'x' is not a driver capability",
        ),
        (b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}, "process": {}}', "has the key 'process' twice"),
        (b'{"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}', "is not valid JSON"),
    ],
)
def test_errors_stop_the_create_without_touching_the_spec(
    harness: ShimHarness, config: Any, message: str
) -> None:
    original = harness.write_config(config)
    argv = _create_argv(harness)
    done = harness.run(*argv)
    assert done.returncode == 1
    assert message in done.stderr and done.stderr.startswith("gpudoctor-runtime: ")
    assert "Traceback" not in done.stderr
    assert not (harness.record / "argv").exists()  # runc never ran
    assert harness.config.read_bytes() == original
    assert [p.name for p in harness.bundle.iterdir()] == ["config.json"]  # no backup, no temporary file
    # containerd shows the last error line of runc's --log file; the shim writes one in runc's format.
    runc_log = json.loads((harness.base / "runc-log.json").read_text().splitlines()[-1])
    assert runc_log["level"] == "error" and message in runc_log["msg"]
    assert message in harness.log_records()[-1]["error"]


def test_a_missing_bundle_is_a_clear_error(harness: ShimHarness) -> None:
    done = harness.run("create", "--bundle", str(harness.base / "gone"), "cid")
    assert done.returncode == 1
    assert "cannot open the bundle directory" in done.stderr and "gone" in done.stderr


def test_broken_settings_are_reported(harness: ShimHarness) -> None:
    harness.settings_path.write_text("runc = nope\n")
    done = harness.run("start", "cid")
    assert done.returncode == 1
    assert f"{harness.settings_path}:1: the value must be a quoted string" in done.stderr


def test_a_missing_runc_is_reported(harness: ShimHarness) -> None:
    harness.runc.unlink()
    done = harness.run("start", "cid")
    assert done.returncode == 127
    assert f"cannot run {harness.runc}" in done.stderr


def test_relative_bundle_is_relative_to_the_cwd(harness: ShimHarness) -> None:
    harness.write_config(docker_like_config(["NVIDIA_VISIBLE_DEVICES=0"]))
    done = subprocess.run(
        [sys.executable, "-I", "-S", entry_path(), "runtime", "create", "cid"],
        env=harness.env(), cwd=harness.bundle, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"/dev/nvidia0" in harness.runc_saw()


def test_cdi_annotation_request(harness: ShimHarness, kit_host: DriverRootInfo) -> None:
    spec = docker_like_config()
    spec["annotations"] = {"cdi.k8s.io/gpu": f"nvidia.com/gpu={kit_host.spec.gpus[1].uuid}"}
    harness.write_config(spec)
    assert harness.run(*_create_argv(harness)).returncode == 0
    edited = json.loads(harness.runc_saw())
    assert [d["path"] for d in edited["linux"]["devices"] if d["path"] == "/dev/nvidia1"] == ["/dev/nvidia1"]


def test_the_console_script_works_too(harness: ShimHarness) -> None:
    script = shutil.which("gpudoctor-runtime")
    if script is None:
        pytest.skip("gpudoctor-runtime is not installed (pip install -e .)")
    harness.write_config(docker_like_config(["NVIDIA_VISIBLE_DEVICES=all"]))
    done = harness.run(*_create_argv(harness), via=[script])
    assert done.returncode == 0, done.stderr
    assert b"/dev/nvidia1" in harness.runc_saw()


# ------------------------------------------------------------------------------------------------- launcher

FAKE_PYTHON = """#!/bin/sh
echo started >> {marker}
exec {python} "$@"
"""


@pytest.fixture
def launcher(harness: ShimHarness) -> Path:
    """A launcher whose "python" notes each start, so tests see when Python was (not) started."""
    fake = harness.base / "python"
    fake.write_text(FAKE_PYTHON.format(marker=harness.base / "python-starts", python=sys.executable))
    fake.chmod(0o755)
    path = harness.base / "gpudoctor-runtime"
    write_launcher(str(path), runc=str(harness.runc), python=str(fake), config=str(harness.settings_path))
    return path


def _python_starts(harness: ShimHarness) -> int:
    marker = harness.base / "python-starts"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_launcher_passes_other_verbs_without_python(harness: ShimHarness, launcher: Path) -> None:
    for verb in (["start", "cid"], ["delete", "--force", "cid"], ["kill", "cid", "9"], ["state", "cid"]):
        done = harness.run("--root", "/r", *verb, via=[str(launcher)])
        assert done.returncode == 0, done.stderr
        assert harness.runc_argv() == ["--root", "/r", *verb]
    assert _python_starts(harness) == 0


def test_launcher_creates_without_a_request_skip_python(harness: ShimHarness, launcher: Path) -> None:
    original = harness.write_config(docker_like_config(["PATH=/bin"]))
    done = harness.run(*_create_argv(harness), via=[str(launcher)])
    assert done.returncode == 0, done.stderr
    assert harness.runc_saw() == original
    assert harness.runc_argv() == _create_argv(harness)
    assert _python_starts(harness) == 0


@pytest.mark.parametrize("form", [["--bundle", "B"], ["--bundle=B"], ["-b", "B"], ["-b=B"]])
def test_launcher_hands_gpu_creates_to_python(harness: ShimHarness, launcher: Path, form: list[str]) -> None:
    harness.write_config(docker_like_config(["NVIDIA_VISIBLE_DEVICES=0"]))
    argv = ["create", *(a.replace("B", str(harness.bundle)) for a in form), "cid"]
    done = harness.run(*argv, via=[str(launcher)])
    assert done.returncode == 0, done.stderr
    assert _python_starts(harness) == 1
    assert harness.runc_argv() == argv
    assert b"/dev/nvidia0" in harness.runc_saw()


def test_launcher_lets_python_report_an_unreadable_bundle(harness: ShimHarness, launcher: Path) -> None:
    done = harness.run("create", "--bundle", str(harness.base / "gone"), "cid", via=[str(launcher)])
    assert done.returncode == 1 and "cannot open the bundle directory" in done.stderr
    assert _python_starts(harness) == 1


def test_launcher_quotes_paths_for_sh(tmp_path: Path) -> None:
    text = render_launcher(runc="/opt/it's runc", python="/usr/bin/python3", config="/etc/a b/runtime.toml")
    assert "RUNC='/opt/it'\"'\"'s runc'" in text
    assert "export GPUDOCTOR_RUNTIME_CONFIG='/etc/a b/runtime.toml'" in text
    with pytest.raises(ValueError, match="absolute"):
        render_launcher(runc="runc")


def test_hot_path_imports_nothing_heavy(harness: ShimHarness) -> None:
    """A GPU create with a warm inventory cache, in-process under -I -S, loads nothing heavy or optional."""
    code = (
        "import sys; sys.path.append(sys.argv[1]);"
        "from gpudoctor.engine import shim, settings;"
        "args = shim.parse_runc_args(['create', '--bundle', sys.argv[2], 'cid']);"
        "shim.edit_bundle(args, settings.load_settings());"
        "print(' '.join(sorted(sys.modules)))"
    )
    package_parent = str(Path(entry_path()).parents[2])
    for _ in ("cold: discovery fills the cache", "warm"):
        harness.write_config(docker_like_config(["NVIDIA_VISIBLE_DEVICES=all"]))
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, package_parent, str(harness.bundle)],
            env=harness.env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    modules = set(done.stdout.split())
    assert "gpudoctor.engine.oci" in modules  # the edit really ran
    heavy = {"textual", "docker", "yaml", "jsonschema", "pynvml", "dataclasses", "typing", "tomllib", "argparse",
             "gpudoctor.cli", "gpudoctor.checks", "gpudoctor.report", "gpudoctor.host.root", "json", "re", "enum",
             "ctypes", "gpudoctor.engine.safepath", "gpudoctor.engine.hooks"}  # fmt: skip
    assert modules & heavy == set()


# ---------------------------------------------------------------------------------------- entry.py hooks


def _entry(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-I", "-S", entry_path(), *args], input=stdin, capture_output=True, timeout=60
    )


def test_hooks_chain_needs_a_command() -> None:
    done = _entry("hooks")
    assert done.returncode == 2 and b"no hook command given" in done.stderr


def test_hooks_chain_bounds_the_state_on_stdin() -> None:
    done = _entry("hooks", "create-symlinks", "--link=a::/b", stdin=b" " * (1024 * 1024 + 1))
    assert done.returncode == 1 and b"larger than 1048576 bytes" in done.stderr


def test_hooks_chain_stops_at_the_first_failing_command() -> None:
    # Invalid state: the first command reports it and the second never runs (it would report it too).
    done = _entry(
        "hooks", "create-symlinks", "--link=a::/b", "--", "update-ldcache", "--folder=/x", stdin=b"{}"
    )
    assert done.returncode == 1
    assert done.stderr.decode().count("gpudoctor hook") == 1 and b"create-symlinks" in done.stderr


def test_entry_usage() -> None:
    done = _entry("bogus")
    assert done.returncode == 2 and b"usage: entry.py" in done.stderr
