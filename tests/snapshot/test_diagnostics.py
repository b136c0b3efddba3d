"""The diagnostics a bundle carries besides the files the checks read: commands with timeouts, kernel log
lines about NVRM/nvidia, the toolkit's logs, dockerd's process. Nothing here may raise for what it finds."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from gpudoctor.host.root import HostRoot
from gpudoctor.snapshot import diagnostics as diag

KERN_LOG = (
    "Nov 29 09:00:01 gpu1 kernel: [    0.000000] Linux version 6.5.0-27-generic\n"
    "Nov 29 09:00:05 gpu1 kernel: [    4.112233] nvidia: loading out-of-tree module taints kernel.\n"
    "Nov 29 09:00:05 gpu1 kernel: [    4.120000] e1000e: eth0 NIC Link is Up\n"
    "Nov 29 09:00:06 gpu1 kernel: [    5.001122] NVRM: GPU 0000:3b:00.0: RmInitAdapter failed! (0x26:0x56:1474)\n"
    "Nov 29 09:00:06 gpu1 kernel: [    5.001200] NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n"
)


def test_kernel_log_keeps_only_nvidia_lines(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/kern.log").write_text(KERN_LOG)
    got = diag.kernel_log(HostRoot(tmp_path), offline=True, timeout=5)
    assert "dmesg: not run (--offline)" in got.notes
    [item] = got.items
    assert item.source == {"path": "/var/log/kern.log", "filter": "lines matching /NVRM|nvidia/i"}
    assert item.data.decode().splitlines() == [line for line in KERN_LOG.splitlines() if "NVRM" in line
                                               or "nvidia" in line]


def test_kernel_log_of_a_fake_root_never_runs_dmesg(tmp_path: Path) -> None:
    got = diag.kernel_log(HostRoot(tmp_path), offline=False, timeout=5)
    assert got.items == []
    assert got.notes == [f"dmesg: not run (the root is {tmp_path}, not this machine's /)"]


def test_dmesg_on_this_machine(tmp_path: Path) -> None:
    got = diag.kernel_log(HostRoot("/"), offline=False, timeout=30)
    if os.geteuid() == 0:
        item = next(i for i in got.items if i.name == "dmesg-nvidia.txt")
        assert item.source["command"] == ["dmesg"]
        assert all("nvidia" in line.lower() or "NVRM" in line for line in item.data.decode().splitlines())
    else:  # dmesg_restrict: a note, not an exception
        assert any(n.startswith("dmesg: ") for n in got.notes) or any(i.name == "dmesg-nvidia.txt" for i in got.items)


def _stand_in(directory: Path, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    smi = directory / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + body)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)


def test_nvidia_smi_q_is_run_and_stored(tmp_path: Path) -> None:
    _stand_in(tmp_path / "bin", 'echo "==============NVSMI LOG==============" ; echo "Driver Version : 550.54.14"\n')
    got = diag.nvidia_smi(HostRoot("/"), offline=False, timeout=10, search_dirs=[str(tmp_path / "bin")])
    [item] = got.items
    assert item.name == "nvidia-smi-q.txt"
    assert item.data == b"==============NVSMI LOG==============\nDriver Version : 550.54.14\n"
    assert item.source == {"command": [str(tmp_path / "bin/nvidia-smi"), "-q"], "exit_code": 0, "error": None}
    assert got.notes == []


def test_nvidia_smi_that_hangs_is_cut_off_with_a_note(tmp_path: Path) -> None:
    _stand_in(tmp_path / "bin", "echo partial\nexec sleep 60\n")
    got = diag.nvidia_smi(HostRoot("/"), offline=False, timeout=0.5, search_dirs=[str(tmp_path / "bin")])
    [item] = got.items
    assert item.source["error"] == "timed out after 0.5s"
    assert any("timed out after 0.5s" in n for n in got.notes)


def test_nvidia_smi_failing_or_missing_is_a_note(tmp_path: Path) -> None:
    _stand_in(tmp_path / "bin", 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." >&2\n'
                                "exit 9\n")
    got = diag.nvidia_smi(HostRoot("/"), offline=False, timeout=10, search_dirs=[str(tmp_path / "bin")])
    assert got.notes == [f"nvidia-smi -q: `{tmp_path / 'bin/nvidia-smi'} -q` exited 9: NVIDIA-SMI has failed because "
                         "it couldn't communicate with the NVIDIA driver."]
    assert b"--- stderr ---" in got.items[0].data
    none = diag.nvidia_smi(HostRoot("/"), offline=False, timeout=10, search_dirs=[str(tmp_path / "empty")])
    assert (none.items, none.notes) == ([], ["nvidia-smi -q: nvidia-smi is not installed"])
    assert diag.nvidia_smi(HostRoot("/"), offline=True, timeout=10).notes == ["nvidia-smi -q: not run (--offline)"]


def test_run_command_reports_a_missing_program() -> None:
    out = diag.run_command(["/nonexistent/gpudoctor-test-program"])
    assert (out.ok, out.returncode) == (False, None)
    assert out.error == "No such file or directory"


def test_toolkit_logs_come_from_the_config_and_var_log(tmp_path: Path) -> None:
    (tmp_path / "etc/nvidia-container-runtime").mkdir(parents=True)
    (tmp_path / "etc/nvidia-container-runtime/config.toml").write_text(
        '[nvidia-container-cli]\ndebug = "/srv/logs/cli.log"\n[nvidia-container-runtime]\n'
        'debug = "/var/log/nvidia-container-runtime.log"\n')
    (tmp_path / "srv/logs").mkdir(parents=True)
    (tmp_path / "srv/logs/cli.log").write_text("I1129 nvc.c:396] initializing library context\n")
    (tmp_path / "var/log").mkdir(parents=True)
    big = "x" * 100 + "\n"
    (tmp_path / "var/log/nvidia-container-runtime.log").write_text(big * (diag.MAX_LOG_BYTES // len(big) + 50))
    got = diag.toolkit_logs(HostRoot(tmp_path))
    items = {i.name: i for i in got.items}
    assert set(items) == {"toolkit-logs/srv/logs/cli.log", "toolkit-logs/var/log/nvidia-container-runtime.log"}
    assert items["toolkit-logs/srv/logs/cli.log"].data.startswith(b"I1129")
    assert len(items["toolkit-logs/var/log/nvidia-container-runtime.log"].data) == diag.MAX_LOG_BYTES  # the tail
    assert got.notes == []


def test_toolkit_log_that_is_a_fifo_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    os.mkfifo(tmp_path / "var/log/nvidia-container-toolkit.log")
    got = diag.toolkit_logs(HostRoot(tmp_path))
    assert got.items == []
    assert got.notes == ["toolkit log /var/log/nvidia-container-toolkit.log: not a regular file"]


def test_docker_api_on_a_dead_socket_is_a_note(tmp_path: Path) -> None:
    got = diag.docker_daemon(f"unix://{tmp_path}/docker.sock", offline=False, timeout=2)
    assert got.items == []
    assert got.notes[0].startswith(f"docker info (unix://{tmp_path}/docker.sock): GET /info: ")
    assert diag.docker_daemon("ssh://host", offline=False, timeout=2).notes[0].endswith(
        "only unix:// and tcp:// endpoints are queried")


def test_dockerd_process_from_the_roots_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc/777"
    proc.mkdir(parents=True)
    (proc / "comm").write_text("dockerd\n")
    (proc / "cmdline").write_bytes(b"/usr/bin/dockerd\0--config-file\0/etc/docker/daemon.json\0")
    (proc / "environ").write_bytes(b"PATH=/usr/bin\0REGISTRY_PASSWORD=pw\0")
    got = diag.dockerd_process(HostRoot(tmp_path), socket_path=None)
    [item] = got.items
    data = json.loads(item.data)
    assert data["pid"] == 777 and data["cmdline"] == ["/usr/bin/dockerd", "--config-file", "/etc/docker/daemon.json"]
    # Whole and unredacted here: the bundle writer redacts it (tests/snapshot/test_redaction.py).
    assert data["environ"] == {"PATH": "/usr/bin", "REGISTRY_PASSWORD": "pw"}
    assert diag.dockerd_process(HostRoot(tmp_path / "proc/777"), socket_path=None).notes[0].startswith(
        "dockerd process: ")
