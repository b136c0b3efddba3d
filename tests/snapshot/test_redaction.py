"""Secrets never reach a bundle: env values named *TOKEN*/*KEY*/*PASSWORD*/*SECRET*/*AUTH*, registry auth,
Authorization headers, URL passwords. The manifest says what was redacted where, and the redacted bundle
still replays to the same findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.checks.base import CheckOptions
from gpudoctor.doctor import run_doctor
from gpudoctor.snapshot.collect import collect_snapshot
from gpudoctor.snapshot.redact import REDACTED, redact_data, redact_env, redact_text, sensitive_name
from gpudoctor.snapshot.replay import open_snapshot
from tests.scenarios.builder import build_host, healthy_host
from tests.scenarios.hosts import require_root
from tests.snapshot.helpers import bundle_bytes, differences, manifest_of

SECRETS = {
    "registry_auth": "Ym9iOnMzY3IzdC1yZWdpc3RyeQ==",
    "registry_password": "s3cr3t-registry-pw",
    "proxy_password": "hunter2-proxy-pw",
    "unit_token": "ghp_ExampleUnitToken123",
    "toolkit_env": "hf_ExampleToolkitToken",
    "log_header": "Bearer-sekrit-header-value",
    "log_env": "AKIAEXAMPLELOGKEY",
    "dockerd_env": "dockerd-aws-secret-value",
}


def _secret_host(tmp_path: Path) -> Path:
    sc = healthy_host(2, name="secrets")
    containerd = str(sc.files["/etc/containerd/config.toml"]) + (
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."registry.example.com".auth]\n'
        '  username = "bob"\n'
        f'  password = "{SECRETS["registry_password"]}"\n'
        f'  auth = "{SECRETS["registry_auth"]}"\n'
    )
    daemon = json.loads(sc.files["/etc/docker/daemon.json"])
    daemon["proxies"] = {"http-proxy": f"http://bob:{SECRETS['proxy_password']}@proxy.example.com:3128"}
    toolkit = str(sc.files["/etc/nvidia-container-runtime/config.toml"]).replace(
        "environment = []", f'environment = ["HF_TOKEN={SECRETS["toolkit_env"]}", "NVIDIA_DISABLE_REQUIRE=1"]')
    sc = sc.with_files({
        "/etc/containerd/config.toml": containerd,
        "/etc/docker/daemon.json": json.dumps(daemon, indent=4) + "\n",
        "/etc/nvidia-container-runtime/config.toml": toolkit,
        "/etc/systemd/system/docker.service.d/override.conf": (
            "[Service]\n"
            f'Environment="HTTPS_PROXY=http://proxy.example.com:3128" "GITHUB_TOKEN={SECRETS["unit_token"]}"\n'
        ),
        "/var/log/nvidia-container-toolkit.log": (
            "I1129 10:00:00 nvc.c:396] initializing library context\n"
            f"I1129 10:00:01 registry request Authorization: Bearer {SECRETS['log_header']}\n"
            f"I1129 10:00:02 container env AWS_ACCESS_KEY_ID={SECRETS['log_env']} NVIDIA_VISIBLE_DEVICES=all\n"
        ),
        # A dockerd in the root's /proc (as under --root /host with hostPID): its environment is collected.
        "/proc/4242/comm": "dockerd\n",
        "/proc/4242/cmdline": "/usr/bin/dockerd\0-H\0fd://\0--containerd=/run/containerd/containerd.sock\0",
        "/proc/4242/environ": (f"PATH=/usr/sbin:/usr/bin\0AWS_SECRET_ACCESS_KEY={SECRETS['dockerd_env']}\0"
                               "HOME=/root\0"),
        "/proc/4242/status": "Name:\tdockerd\nUid:\t0\t0\t0\t0\n",
        "/var/run/docker.pid": "4242\n",
    })
    return build_host(tmp_path, sc)


@pytest.fixture
def secret_bundle(tmp_path: Path) -> tuple[Path, Path]:
    require_root()
    root = _secret_host(tmp_path / "host")
    result = collect_snapshot(tmp_path / "secret.tar.gz", root=str(root), offline=True)
    return root, result.path


def test_no_secret_reaches_the_bundle(secret_bundle: tuple[Path, Path]) -> None:
    _root, archive = secret_bundle
    data = bundle_bytes(archive)
    for what, secret in SECRETS.items():
        holders = [name for name, body in data.items() if secret.encode() in body]
        assert holders == [], f"{what} ({secret}) is in {holders}"
    # ...and the gzip stream is not hiding it either.
    import gzip

    assert not any(s.encode() in gzip.decompress(archive.read_bytes()) for s in SECRETS.values())


def test_the_redacted_files_are_in_the_bundle_with_their_structure(secret_bundle: tuple[Path, Path]) -> None:
    _root, archive = secret_bundle
    data = bundle_bytes(archive)
    containerd = data["root/etc/containerd/config.toml"].decode()
    assert f'  password = "{REDACTED}"' in containerd and '  username = "<redacted>"' in containerd
    assert 'BinaryName = "/usr/bin/nvidia-container-runtime"' in containerd
    daemon = json.loads(data["root/etc/docker/daemon.json"])
    assert daemon["proxies"]["http-proxy"] == f"http://bob:{REDACTED}@proxy.example.com:3128"
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    dockerd = json.loads(data["diagnostics/dockerd.json"])
    assert dockerd["environ"] == {"PATH": "/usr/sbin:/usr/bin", "AWS_SECRET_ACCESS_KEY": REDACTED, "HOME": "/root"}
    assert dockerd["cmdline"][0] == "/usr/bin/dockerd"
    log = data["diagnostics/toolkit-logs/var/log/nvidia-container-toolkit.log"].decode()
    assert f"Authorization: {REDACTED}" in log
    assert f"AWS_ACCESS_KEY_ID={REDACTED} NVIDIA_VISIBLE_DEVICES=all" in log


def test_the_manifest_says_what_was_redacted_where(secret_bundle: tuple[Path, Path]) -> None:
    root, archive = secret_bundle
    redactions = manifest_of(archive)["redactions"]
    got = {(r["member"], r["where"], r["what"]) for r in redactions}

    def line(host_path: str, text: str) -> str:
        lines = (root / host_path.lstrip("/")).read_text().splitlines()
        return f"line {next(i for i, s in enumerate(lines, 1) if text in s)}"

    auth_table = 'TOML [plugins."io.containerd.grpc.v1.cri".registry.configs."registry.example.com".auth]'
    toml = "/etc/containerd/config.toml"
    assert ("root" + toml, line(toml, "password ="), f"{auth_table} password") in got
    assert ("root" + toml, line(toml, "auth ="), f"{auth_table} auth") in got
    assert ("root" + toml, line(toml, "username ="), f"{auth_table} username") in got
    daemon, toolkit = "/etc/docker/daemon.json", "/etc/nvidia-container-runtime/config.toml"
    assert ("root" + daemon, line(daemon, "http-proxy"), "URL password") in got
    assert ("root" + toolkit, line(toolkit, "HF_TOKEN"), "environment value HF_TOKEN") in got
    assert ("diagnostics/dockerd.json", "environ.AWS_SECRET_ACCESS_KEY", "key AWS_SECRET_ACCESS_KEY") in got
    assert ("diagnostics/toolkit-logs/var/log/nvidia-container-toolkit.log", "line 2", "Authorization header") in got
    sources = {r["member"]: r["source"] for r in redactions}
    assert sources["root/etc/containerd/config.toml"] == "/etc/containerd/config.toml"
    assert all(s not in json.dumps(redactions) for s in SECRETS.values())


def test_the_unit_drop_in_is_redacted(secret_bundle: tuple[Path, Path]) -> None:
    _root, archive = secret_bundle
    data = bundle_bytes(archive)
    name = "root/etc/systemd/system/docker.service.d/override.conf"
    assert name in data, "runtime.docker_config reads docker.service drop-ins, so the bundle must hold this one"
    text = data[name].decode()
    assert f'"GITHUB_TOKEN={REDACTED}"' in text
    assert '"HTTPS_PROXY=http://proxy.example.com:3128"' in text


def test_the_redacted_bundle_replays_its_own_report(secret_bundle: tuple[Path, Path]) -> None:
    _root, archive = secret_bundle
    recorded = json.loads(bundle_bytes(archive)["report.json"])
    with open_snapshot(str(archive)) as facts:
        replay = run_doctor(facts, options=CheckOptions(offline=facts.offline))
    assert differences(recorded, replay.to_dict()) == []


# -- the rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "secret"), [
    ("GITHUB_TOKEN", True), ("api_key", True), ("DB_PASSWORD", True), ("client_secret", True), ("AUTH", True),
    ("XAUTHORITY", True), ("PATH", False), ("HOME", False), ("NVIDIA_VISIBLE_DEVICES", False), ("LANG", False),
])
def test_sensitive_names(name: str, secret: bool) -> None:
    assert sensitive_name(name) is secret


@pytest.mark.parametrize(("text", "expected"), [
    ('{"auths": {"ghcr.io": {"auth": "dXNlcjpwYXNz"}}}', '{"auths": {"ghcr.io": {"auth": "<redacted>"}}}'),
    ('{"HttpHeaders": {"Authorization": "Basic abc", "User-Agent": "x"}}',
     '{"HttpHeaders": {"Authorization": "<redacted>", "User-Agent": "x"}}'),
    ('{"identitytoken": "tok"}', '{"identitytoken": "<redacted>"}'),
    ('"env": ["NVIDIA_VISIBLE_DEVICES=all", "HF_TOKEN=abc"]', '"env": ["NVIDIA_VISIBLE_DEVICES=all", "HF_TOKEN=<redacted>"]'),
    ("export API_KEY=abc123\nPATH=/bin\n", "export API_KEY=<redacted>\nPATH=/bin\n"),
    ("Environment=GITHUB_TOKEN=ghp_1 PATH=/usr/bin", "Environment=GITHUB_TOKEN=<redacted> PATH=/usr/bin"),
    ('Environment="MY_SECRET=a b" "X=1"', 'Environment="MY_SECRET=<redacted>" "X=1"'),
    ("[registry.configs.\"r\".auth]\n  username = 'u'\n  password = \"p\"\n",
     "[registry.configs.\"r\".auth]\n  username = \"<redacted>\"\n  password = \"<redacted>\"\n"),
    ('  auth = { username = "u", password = "p" }', '  auth = { username = "<redacted>", password = "<redacted>" }'),
    ("proxy = http://bob:pw@proxy:3128/", "proxy = http://bob:<redacted>@proxy:3128/"),
    ("GET / Proxy-Authorization: Basic Zm9v\n", "GET / Proxy-Authorization: <redacted>\n"),
    ("dockerd --tlskey=/etc/docker/key.pem --registry-password=pw",
     "dockerd --tlskey=/etc/docker/key.pem --registry-password=<redacted>"),
    ("A=1\0SESSION_TOKEN=zz\0PATH=/bin\0", "A=1\0SESSION_TOKEN=<redacted>\0PATH=/bin\0"),
    ("root=UUID=8f0c ro quiet splash modprobe.blacklist=nouveau", "root=UUID=8f0c ro quiet splash modprobe.blacklist=nouveau"),
    ('{"authorization-plugins": ["authz"], "default-runtime": "nvidia"}',
     '{"authorization-plugins": ["authz"], "default-runtime": "nvidia"}'),
])
def test_redact_text(text: str, expected: str) -> None:
    got, found = redact_text(text)
    assert got == expected
    assert bool(found) is (text != expected)
    assert redact_text(got)[0] == got  # idempotent


def test_redact_env_and_data() -> None:
    env, found = redact_env({"PATH": "/bin", "NPM_TOKEN": "x", "HTTP_PROXY": "http://u:p@h:1"})
    assert env == {"PATH": "/bin", "NPM_TOKEN": REDACTED, "HTTP_PROXY": f"http://u:{REDACTED}@h:1"}
    assert {f.where for f in found} == {"NPM_TOKEN", "HTTP_PROXY"}
    data, found = redact_data({"a": [{"password": "x", "n": 1}, "K_SECRET=y"], "ok": "fine"})
    assert data == {"a": [{"password": REDACTED, "n": 1}, f"K_SECRET={REDACTED}"], "ok": "fine"}
    assert {f.where for f in found} == {"a[0].password", "a[1]"}


def test_binary_content_is_left_alone() -> None:
    from gpudoctor.snapshot.redact import redact_bytes

    blob = b"\x7fELF\x02\x01\x01\x00API_KEY=abc\x00\xff\xfe"
    assert redact_bytes(blob) == (blob, [])
