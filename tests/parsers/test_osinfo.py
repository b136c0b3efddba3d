"""os-release (through distro, confined to the root), Secure Boot efivars and kernel lockdown."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.osinfo import (
    SECURE_BOOT_EFIVAR,
    OsInfo,
    parse_lockdown,
    parse_os_release,
    parse_secureboot_efivar,
    read_lockdown,
    read_os_release,
    read_secure_boot,
)
from gpudoctor.host.root import HostRoot
from tests.parsers.fuzzlib import FUZZ, FUZZ_SLOW, mutated_text, parse_or_error, sample

# ---------------------------------------------------------------------------------------------- pure parser


def test_parse_os_release_samples() -> None:
    deb = parse_os_release(sample("os-release-debian12.txt"), path="/etc/os-release")
    assert deb == OsInfo(
        id="debian",
        id_like=(),
        version_id="12",
        name="Debian GNU/Linux",
        pretty_name="Debian GNU/Linux 12 (bookworm)",
        codename="bookworm",
        source="/etc/os-release",
    )
    ubuntu = parse_os_release(sample("os-release-ubuntu2204.txt"), path="/etc/os-release")
    assert (ubuntu.id, ubuntu.id_like, ubuntu.version_id, ubuntu.codename) == (
        "ubuntu",
        ("debian",),
        "22.04",
        "jammy",
    )
    rhel = parse_os_release(sample("os-release-rhel9.txt"), path="/etc/os-release")
    assert (rhel.id, rhel.id_like, rhel.version_id, rhel.codename) == ("rhel", ("fedora",), "9.3", "Plow")


def test_parse_os_release_quoting() -> None:
    text = 'ID=x\nNAME="A \\"quoted\\" \\$name \\\\ x"\nPRETTY_NAME=\'single $quoted\'\n# comment\n\n'
    got = parse_os_release(text, path="/usr/lib/os-release")
    assert got.name == 'A "quoted" $name \\ x'
    assert got.pretty_name == "single $quoted"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('ID=debian\nNAME="Debian\n', 2, "unterminated double quote"),
        ("ID=debian\nNAME='Debian\n", 2, "unterminated single quote"),
        ('ID="debian" trailing\n', 1, "text after the closing quote"),
        ("ID=debian\nthis line has no assignment\n", 2, "expected KEY=value"),
    ],
)
def test_parse_os_release_errors(text: str, line: int, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_os_release(text, path="/etc/os-release")
    assert (info.value.path, info.value.line) == ("/etc/os-release", line)
    assert needle in info.value.message


# ---------------------------------------------------------------------------------------------- read_os_release


def make_root(tmp_path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> HostRoot:
    for host_path, content in files.items():
        p = tmp_path / host_path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    for host_path, target in (links or {}).items():
        p = tmp_path / host_path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    return HostRoot(tmp_path)


def test_read_os_release_debian_layout_relative_link(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {"/usr/lib/os-release": sample("os-release-ubuntu2204.txt"), "/etc/debian_version": "bookworm/sid\n"},
        {"/etc/os-release": "../usr/lib/os-release"},
    )
    got = read_os_release(root)
    assert (got.id, got.id_like, got.version_id, got.codename) == ("ubuntu", ("debian",), "22.04", "jammy")
    assert got.pretty_name == "Ubuntu 22.04.4 LTS" and got.name == "Ubuntu"
    assert got.source == "/etc/os-release"
    assert "/etc/os-release" in root.accessed


def test_read_os_release_absolute_link_stays_in_root(tmp_path: Path) -> None:
    # On the host this machine is Debian; the root says otherwise, through an absolute link that a naive
    # open() would follow to this machine's own /usr/lib/os-release.
    root = make_root(
        tmp_path,
        {"/usr/lib/os-release": 'ID=fakeos\nNAME="Fake OS"\nVERSION_ID=1.0\n'},
        {"/etc/os-release": "/usr/lib/os-release"},
    )
    got = read_os_release(root)
    assert (got.id, got.name, got.version_id) == ("fakeos", "Fake OS", "1.0")


def test_read_os_release_usr_lib_only(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/usr/lib/os-release": sample("os-release-rhel9.txt")})
    got = read_os_release(root)
    assert (got.id, got.version_id, got.source) == ("rhel", "9.3", "/usr/lib/os-release")


def test_read_os_release_falls_back_to_release_file(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/etc/redhat-release": sample("redhat-release-rhel9.txt")})
    got = read_os_release(root)
    assert (got.id, got.version_id, got.codename) == ("rhel", "9.3", "Plow")
    assert got.name == "Red Hat Enterprise Linux" and got.source == "/etc/redhat-release"


def test_read_os_release_nothing(tmp_path: Path) -> None:
    got = read_os_release(HostRoot(tmp_path))
    assert got.id == "" and got.source is None and got.version_id is None


def test_read_os_release_link_loop(tmp_path: Path) -> None:
    root = make_root(tmp_path, {}, {"/etc/os-release": "../../../../etc/os-release"})
    assert read_os_release(root).id == ""


@pytest.mark.parametrize("text", ['ID=debian\nNAME="Debian\n', "this is not an os-release file\nat all\n"])
def test_read_os_release_malformed(tmp_path: Path, text: str) -> None:
    root = make_root(tmp_path, {"/etc/os-release": text})
    with pytest.raises(ParseError) as info:
        read_os_release(root)
    assert info.value.path == "/etc/os-release" and info.value.line is not None


def test_read_os_release_live_root() -> None:
    got = read_os_release(HostRoot("/"))
    assert isinstance(got, OsInfo)
    if Path("/etc/os-release").exists():
        assert got.id == parse_os_release(Path("/etc/os-release").read_text(), path="/etc/os-release").id


_AUDIT: dict[str, Any] = {"on": False, "opened": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _AUDIT["on"]:
        if event == "open" and isinstance(args[0], str | bytes):
            _AUDIT["opened"].append(os.fsdecode(args[0]))
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn"):
            _AUDIT["opened"].append(f"EXEC {args!r}")


sys.addaudithook(_audit)


@contextmanager
def audited() -> Iterator[list[str]]:
    _AUDIT["opened"] = []
    _AUDIT["on"] = True
    try:
        yield _AUDIT["opened"]
    finally:
        _AUDIT["on"] = False


def test_read_os_release_runs_nothing_and_reads_only_inside_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distro  # noqa: F401 - imported before auditing so module loading is not counted

    root = make_root(
        tmp_path,
        {
            "/usr/lib/os-release": "ID=fakeos\n",  # no codename or version: distro would consult other sources
            "/etc/lsb-release": "DISTRIB_ID=Elsewhere\n",
            "/etc/centos-release": "CentOS Linux release 7.9.2009 (Core)\n",
        },
        {"/etc/os-release": "/usr/lib/os-release", "/etc/debian_version": "/etc/debian_version.real"},
    )

    def no_commands(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a command was run: {args!r}")

    monkeypatch.setattr(subprocess, "check_output", no_commands)
    monkeypatch.setattr(subprocess, "Popen", no_commands)
    with audited() as opened:
        got = read_os_release(root)
    assert got.id == "fakeos"
    assert got.codename == "Core"  # from the /etc/centos-release file inside the root
    base = str(tmp_path)
    outside = [p for p in opened if not p.startswith(base)]
    assert outside == [], f"read outside the root: {outside}"
    assert opened, "the audit hook saw no file being opened"


# ---------------------------------------------------------------------------------------------- Secure Boot


@pytest.mark.parametrize(("value", "expected"), [(1, True), (0, False)])
def test_parse_secureboot(value: int, expected: bool) -> None:
    assert parse_secureboot_efivar(b"\x06\x00\x00\x00" + bytes([value]), path=SECURE_BOOT_EFIVAR) is expected


@pytest.mark.parametrize(
    "data", [b"", b"\x06\x00\x00\x00", b"\x06\x00\x00\x00\x01\x00", b"\x06\x00\x00\x00\x02"]
)
def test_parse_secureboot_errors(data: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_secureboot_efivar(data, path=SECURE_BOOT_EFIVAR)
    assert info.value.path == SECURE_BOOT_EFIVAR


def test_read_secure_boot(tmp_path: Path) -> None:
    assert read_secure_boot(HostRoot(tmp_path)) is None  # not booted via EFI
    efivars = tmp_path / "sys/firmware/efi/efivars"
    efivars.mkdir(parents=True)
    assert read_secure_boot(HostRoot(tmp_path)) is None  # EFI, but no SecureBoot variable
    (tmp_path / SECURE_BOOT_EFIVAR.lstrip("/")).write_bytes(b"\x06\x00\x00\x00\x01")
    root = HostRoot(tmp_path)
    assert read_secure_boot(root) is True
    assert SECURE_BOOT_EFIVAR in root.accessed


def test_read_secure_boot_legacy_sysfs(tmp_path: Path) -> None:
    legacy = tmp_path / "sys/firmware/efi/vars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    legacy.mkdir(parents=True)
    (legacy / "data").write_bytes(b"\x00")
    assert read_secure_boot(HostRoot(tmp_path)) is False


def test_lockdown(tmp_path: Path) -> None:
    assert parse_lockdown("none [integrity] confidentiality\n") == "integrity"
    assert parse_lockdown("[none] integrity confidentiality\n") == "none"
    with pytest.raises(ParseError, match="^/sys/kernel/security/lockdown: "):
        parse_lockdown("none integrity\n")
    assert read_lockdown(HostRoot(tmp_path)) is None


# ---------------------------------------------------------------------------------------------- fuzz


@FUZZ
@given(
    st.one_of(
        st.text(),
        st.sampled_from(
            ["os-release-debian12.txt", "os-release-ubuntu2204.txt", "os-release-rhel9.txt"]
        ).flatmap(lambda n: mutated_text(sample(n))),
    )
)
def test_fuzz_parse_os_release(text: str) -> None:
    parse_or_error(parse_os_release, text, path="/etc/os-release", expected=OsInfo)


@FUZZ_SLOW
@given(st.one_of(st.binary(max_size=300), mutated_text(sample("os-release-ubuntu2204.txt")).map(str.encode)))
def test_fuzz_read_os_release(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "etc").mkdir()
        (Path(tmp) / "etc/os-release").write_bytes(data)
        try:
            got = read_os_release(HostRoot(tmp))
        except ParseError as exc:
            assert exc.path == "/etc/os-release"
        else:
            assert isinstance(got, OsInfo)


@FUZZ
@given(st.binary(max_size=12))
def test_fuzz_secureboot(data: bytes) -> None:
    parse_or_error(parse_secureboot_efivar, data, path=SECURE_BOOT_EFIVAR, expected=bool)


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_lockdown(text: str) -> None:
    parse_or_error(parse_lockdown, text, path="/sys/kernel/security/lockdown", expected=str)
