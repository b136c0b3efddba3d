"""Generic procfs parsers: /proc/modules, /proc/devices, /proc/version, mountinfo and the cgroup layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.host.errors import ParseError
from gpudoctor.host.parsers.procfs import (
    KernelVersion,
    ModuleEntry,
    ProcDevices,
    cgroup_mounts,
    cgroup_version,
    parse_cgroup_mounts,
    parse_devices,
    parse_modules,
    parse_mountinfo,
    parse_proc_version,
)
from tests.parsers.fuzzlib import FUZZ, mutated_text, parse_or_error, sample

# ---------------------------------------------------------------------------------------------- modules


def test_modules_manjaro_with_taints() -> None:
    mods = parse_modules(sample("proc-modules-manjaro.txt"))
    assert list(mods) == ["nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidia", "snd_hda_intel", "kvm"]
    nvidia = mods["nvidia"]
    assert nvidia == ModuleEntry(
        name="nvidia",
        size=78815232,
        refcount=62,
        used_by=("nvidia_modeset", "nvidia_uvm"),
        state="Live",
        address="0x0000000000000000",
        taints="OE",
    )
    assert mods["nvidia_uvm"].used_by == () and mods["nvidia_uvm"].refcount == 0
    assert mods["kvm"].taints == ""


def test_modules_fedora_addresses() -> None:
    mods = parse_modules(sample("proc-modules-fedora.txt"))
    assert mods["nvidia_modeset"].address == "0xffffffffc0f00000"
    assert mods["nvidia"].refcount == 1068


def test_modules_without_unload_support_and_permanent() -> None:
    mods = parse_modules(
        "foo 16384 - - Live 0x0\nbar 8192 1 [permanent], Live 0x0\nbaz 4096 0 - Loading 0x0 (+)\n"
    )
    assert mods["foo"].refcount == -1 and mods["foo"].used_by == ()
    assert mods["bar"].used_by == ("[permanent]",)
    assert mods["baz"].state == "Loading" and mods["baz"].taints == "+"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("nvidia 123 0 -", "expected 'name size refcount deps state address'"),
        ("nvidia abc 0 - Live 0x0", "size 'abc' is not a number"),
        ("nvidia 1 x - Live 0x0", "use count"),
        ("nvidia 1 0 - Dead 0x0", "unknown state"),
        ("nvidia 1 0 - Live 0x0 OE", "bad taint flags"),
        ("nvi/dia 1 0 - Live 0x0", "bad module name"),
    ],
)
def test_modules_errors(line: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_modules("kvm 1400832 1 kvm_amd, Live 0x0\n" + line + "\n")
    assert info.value.path == "/proc/modules" and info.value.line == 2
    assert needle in info.value.message


# ---------------------------------------------------------------------------------------------- devices


def test_devices_nvidia_550_names() -> None:
    dev = parse_devices(sample("proc-devices-nvidia-550.txt"))
    assert dev.char_major("nvidia") == 195
    assert dev.char_major("nvidia-frontend") == 195  # the pre-550.40 name finds the renamed device
    assert dev.char_major("nvidia-uvm") == 509
    assert dev.char_major("nvidia-caps") == 235
    assert dev.char_major("nvidia-nvlink") == 234
    assert dev.char_major("nvidia-caps-imex-channels") == 510
    assert dev.char_major("nvidia-modeset") is None  # modeset has no own major: it is 195:254
    assert dev.block[8] == "sd" and dev.block_major("sd") == 8
    assert (65, "sd") in dev.block_entries


def test_devices_old_frontend_name() -> None:
    dev = parse_devices(sample("proc-devices-nvidia-frontend.txt"))
    assert dev.char_major("nvidia") == 195
    assert dev.char[195] == "nvidia-frontend"
    assert dev.char_major("nvidia-uvm") == 234


def test_devices_shared_majors_keep_every_name() -> None:
    dev = parse_devices(sample("proc-devices-debian-vm.txt"))
    assert dev.char[4] == "/dev/vc/0"
    assert dev.char_major("tty") == 4 and dev.char_major("ttyS") == 4
    assert dev.char_major("nvidia") is None
    assert dev.block[259] == "blkext"


def test_devices_live_file_parses() -> None:
    if not Path("/proc/devices").exists():
        pytest.skip("no /proc/devices on this machine")
    dev = parse_devices(Path("/proc/devices").read_text())
    assert dev.char_major("mem") == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("195 nvidia\n", "before the 'Character devices:' header"),
        ("Character devices:\nnvidia 195\n", "expected 'major name'"),
        ("hello\n", "expected 'major name'"),
    ],
)
def test_devices_errors(text: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_devices(text)
    assert needle in str(info.value) and str(info.value).startswith("/proc/devices:")


# ---------------------------------------------------------------------------------------------- version


@pytest.mark.parametrize(
    ("name", "release", "wsl2", "wsl1"),
    [
        ("proc-version-debian12.txt", "6.1.0-18-amd64", False, False),
        ("proc-version-wsl2.txt", "5.15.133.1-microsoft-standard-WSL2", True, False),
        ("proc-version-wsl1.txt", "4.4.0-19041-Microsoft", False, True),
    ],
)
def test_proc_version(name: str, release: str, wsl2: bool, wsl1: bool) -> None:
    got = parse_proc_version(sample(name))
    assert (got.release, got.is_wsl2, got.is_wsl1) == (release, wsl2, wsl1)
    assert got.raw.startswith("Linux version ")


def test_proc_version_old_wsl2_kernel_without_suffix() -> None:
    got = parse_proc_version("Linux version 4.19.104-microsoft-standard (oe-user@oe-host) #1 SMP\n")
    assert got.is_wsl2 and not got.is_wsl1


def test_proc_version_error() -> None:
    with pytest.raises(ParseError, match=r"^/proc/version: expected 'Linux version"):
        parse_proc_version("FreeBSD 14.0-RELEASE\n")


# ---------------------------------------------------------------------------------------------- mountinfo


def test_mountinfo_v2_and_escapes() -> None:
    entries = parse_mountinfo(sample("mountinfo-v2.txt"))
    assert cgroup_version(entries) == "v2"
    root = entries[3]
    assert (root.mount_point, root.fstype, root.source, root.device) == (
        "/",
        "ext4",
        "/dev/nvme0n1p2",
        "259:2",
    )
    assert root.options == ("rw", "relatime") and root.super_options == ("rw", "errors=remount-ro")
    sshfs = entries[-1]
    assert sshfs.mount_point == "/mnt/my disk" and sshfs.source == "user@host:/srv data"
    assert sshfs.fstype == "fuse.sshfs"
    assert [m.fstype for m in cgroup_mounts(entries)] == ["cgroup2"]


def test_mountinfo_v1() -> None:
    entries = parse_mountinfo(sample("mountinfo-v1.txt"))
    assert cgroup_version(entries) == "v1"
    devices = [m for m in entries if m.mount_point == "/sys/fs/cgroup/devices"][0]
    assert "devices" in devices.super_options


def test_mountinfo_hybrid_real_file() -> None:
    entries = parse_mountinfo(sample("mountinfo-hybrid-debian-vm.txt"))
    assert cgroup_version(entries) == "hybrid"
    cgroups = parse_cgroup_mounts(sample("mountinfo-hybrid-debian-vm.txt"))
    assert cgroups == cgroup_mounts(entries)
    assert {m.mount_point for m in cgroups} >= {"/sys/fs/cgroup/devices", "/sys/fs/cgroup/unified"}
    assert cgroup_version(cgroups) == "hybrid"


def test_cgroup_none_and_stacked_mounts() -> None:
    assert cgroup_version(parse_mountinfo(sample("mountinfo-v2.txt"))[:3]) == "none"
    stacked = parse_mountinfo(
        "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n40 30 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "41 40 0:41 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"
    )
    assert cgroup_version(stacked) == "v1"  # the tmpfs mounted on top hides the cgroup2 below


def test_mountinfo_live_file() -> None:
    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    assert any(e.mount_point == "/" for e in entries)
    assert cgroup_version(entries) in ("v1", "v2", "hybrid", "none")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw", "no ' - ' separator"),
        ("36 35 98:0 /mnt1 /mnt2 rw,noatime - ext3", "expected 'fstype source options'"),
        ("x 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw", "mount ids must be numbers"),
        ("36 35 98 /mnt1 /mnt2 rw - ext3 /dev/root rw", "bad device number"),
    ],
)
def test_mountinfo_errors(line: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_mountinfo(line + "\n", path="/proc/1/mountinfo")
    assert info.value.path == "/proc/1/mountinfo" and info.value.line == 1
    assert needle in info.value.message


# ---------------------------------------------------------------------------------------------- fuzz


@FUZZ
@given(st.one_of(st.text(), mutated_text(sample("proc-modules-manjaro.txt"))))
def test_fuzz_modules(text: str) -> None:
    parse_or_error(parse_modules, text, path="/proc/modules", expected=dict)


@FUZZ
@given(
    st.one_of(
        st.text(),
        st.sampled_from(["proc-devices-nvidia-550.txt", "proc-devices-debian-vm.txt"]).flatmap(
            lambda n: mutated_text(sample(n))
        ),
    )
)
def test_fuzz_devices(text: str) -> None:
    got = parse_or_error(parse_devices, text, path="/proc/devices", expected=ProcDevices)
    if got is not None:
        major = got.char_major("nvidia")
        assert major is None or major >= 0
        first: dict[int, str] = {}
        for m, name in got.char_entries:
            first.setdefault(m, name)
        assert got.char == first


@FUZZ
@given(st.one_of(st.text(), mutated_text(sample("proc-version-wsl2.txt"))))
def test_fuzz_proc_version(text: str) -> None:
    got = parse_or_error(parse_proc_version, text, path="/proc/version", expected=KernelVersion)
    if got is not None:
        assert not (got.is_wsl1 and got.is_wsl2)


@FUZZ
@given(
    st.one_of(
        st.text(),
        st.sampled_from(["mountinfo-v2.txt", "mountinfo-hybrid-debian-vm.txt"]).flatmap(
            lambda n: mutated_text(sample(n))
        ),
    )
)
def test_fuzz_mountinfo(text: str) -> None:
    got = parse_or_error(parse_mountinfo, text, path="/proc/self/mountinfo", expected=list)
    if got is not None:
        assert cgroup_version(got) in ("v1", "v2", "hybrid", "none")
