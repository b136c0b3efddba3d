"""gpudoctor hook create-symlinks / update-ldcache: entries, argument and state validation, and real runs.

The hooks are run the way runc runs them (hook_entry's argv, path and env; state on stdin; cwd = the
rootfs), and through real runc as createContainer and createRuntime hooks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.engine.hooks import (
    DROPIN_PATH,
    HOOK_ENV,
    ContainerState,
    HookError,
    create_symlinks_hook,
    entry_script,
    hook_entry,
    parse_link_spec,
    read_state,
    update_ldcache_hook,
    validate_folder,
)
from tests.engine.hook_kit import (
    Bundle,
    HostCanary,
    build_soname_lib,
    build_static,
    file_digest,
    hook_env,
    require_root,
    require_runc,
    run_hook,
    runc_bundle,
    runc_run,
)

LIBDIR = "/usr/lib/x86_64-linux-gnu"


# -- entries -------------------------------------------------------------------------------------------------


def test_hook_entry_shape() -> None:
    entry = hook_entry("create-symlinks", ["--link=libcuda.so.1::/usr/lib/libcuda.so"])
    assert entry == {
        "path": sys.executable,
        "args": [sys.executable, "-I", "-S", entry_script(), "hook", "create-symlinks",
                 "--link=libcuda.so.1::/usr/lib/libcuda.so"],
        "env": list(HOOK_ENV),
        "timeout": 30,
    }
    assert os.path.isabs(entry["path"]) and os.path.isfile(entry_script())
    assert entry["env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]


@pytest.mark.parametrize(("kind", "args", "message"), [
    ("rm-rf", [], "unknown hook kind 'rm-rf'"),
    ("create-symlinks", ["--link", "a::/b"], "is not in the --opt=value form"),
    ("create-symlinks", ["a::/b"], "is not in the --opt=value form"),
    ("update-ldcache", ["--folder=/a\n/b"], "contains a NUL or newline"),
])
def test_hook_entry_rejects(kind: str, args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hook_entry(kind, args)


def test_builders_validate_what_they_emit() -> None:
    entry = create_symlinks_hook([("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so")])
    assert entry["args"][-1] == "--link=libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so"
    assert update_ldcache_hook(["/usr/lib/x86_64-linux-gnu"])["args"][-1] == "--folder=/usr/lib/x86_64-linux-gnu"
    bad_links = [
        (("a::b", "/x"), "contains a control character or '::'"),
        (("a", "/x::y"), "contains '::'"),
        (("a", "/x\ny"), "control character"),
        (("a", "x"), "must be an absolute container path"),
        (("a", "/usr/../etc/x"), "is not normalized"),
        (("", "/x"), "non-empty"),
    ]
    for pair, message in bad_links:
        with pytest.raises(ValueError, match=message):
            create_symlinks_hook([pair])
    for folder, message in [("/usr/lib nvidia", "not allowed in ld.so.conf: ' '"), ("lib", "absolute"),
                            ("/a,b", "not allowed"), ("/a:b", "not allowed"), ("/a/./b", "not normalized")]:
        with pytest.raises(ValueError, match=message):
            validate_folder(folder)


def test_a_rewritten_config_json_is_read_again(tmp_path: Path) -> None:
    """The root path is remembered per config.json identity (two hook commands in one process parse it
    once), so a config.json replaced by another file is read anew."""
    from gpudoctor.engine.hooks import container_root_path

    bundle = Bundle.create(tmp_path / "b")
    state = ContainerState(oci_version="1.0.2", id="x", status="creating", pid=None, bundle=str(bundle.path),
                           annotations={})
    assert container_root_path(state) == str(bundle.rootfs)
    assert container_root_path(state) == str(bundle.rootfs)
    bundle.config["root"] = {"path": "other"}
    tmp = bundle.path / "config.json.new"
    tmp.write_text(json.dumps(bundle.config))
    tmp.rename(bundle.path / "config.json")
    assert container_root_path(state) == str(bundle.path / "other")


def test_a_hook_in_a_nested_pid_namespace_ignores_the_state_pid() -> None:
    """runc's createContainer state says pid 1 (runc init as the container numbers it); a hook running in
    that pid namespace must not read /proc/1, which is the host's pid 1."""
    require_root()
    from gpudoctor.engine import libc
    from gpudoctor.engine.hooks import _pid_ns_nested

    assert _pid_ns_nested() is False
    child = os.fork()
    if child == 0:
        try:
            libc.unshare(0x20000000)  # CLONE_NEWPID: our next child is pid 1 of a new namespace
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0 if _pid_ns_nested() else 1)
            os._exit(os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1]))
        except BaseException:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def test_link_spec_parsing() -> None:
    assert parse_link_spec("libcuda.so.1::/usr/lib/libcuda.so") == ("libcuda.so.1", "/usr/lib/libcuda.so")
    with pytest.raises(HookError, match="expected TARGET::LINK with exactly one '::'"):
        parse_link_spec("a::b::/c")
    with pytest.raises(HookError, match="must be an absolute container path"):
        parse_link_spec("a::relative")


def test_entry_runs_with_isolated_interpreter_and_no_heavy_imports() -> None:
    entry = hook_entry("create-symlinks", ["--link=a::/b"])
    # Not run as __main__ (that ends the process with os._exit): load the script, then call its main.
    script = (f"import runpy, sys\nsys.argv = [{entry_script()!r}, 'hook', 'create-symlinks', '--help']\n"
              "assert runpy.run_path(sys.argv[0], run_name='gpudoctor_entry')['_main']() == 0\n"
              "import gpudoctor.engine.hooks, gpudoctor.engine.safepath, gpudoctor.engine.confine\n"
              "print(sorted(m for m in ('textual', 'docker', 'gpudoctor.cli', 'gpudoctor.checks', 'site')"
              " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True,
                          env=hook_env(entry), cwd="/", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage: gpudoctor hook create-symlinks" in proc.stdout
    assert proc.stdout.strip().endswith("[]")


def test_all_invocation_forms_reach_the_same_main() -> None:
    entry = hook_entry("update-ldcache", ["--folder=/x"])
    forms = [
        [*entry["args"][:5], "--help"],
        [sys.executable, "-I", "-m", "gpudoctor.commands.hook", "--help"],
        [sys.executable, "-m", "gpudoctor", "hook", "--help"],
    ]
    for argv in forms:
        proc = subprocess.run(argv, capture_output=True, text=True, env=hook_env(entry), cwd="/", check=False)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert proc.stdout.startswith("usage: gpudoctor hook create-symlinks --link=TARGET::LINK"), argv


@pytest.mark.parametrize(("argv", "message"), [
    ([], "missing hook name"),
    (["chmod"], "unknown hook 'chmod'"),
    (["create-symlinks", "--folder=/x"], "create-symlinks: unknown option --folder"),
    (["create-symlinks", "--link"], "--link needs a value"),
    (["update-ldcache", "--ldconfig=/a", "--ldconfig=/b"], "--ldconfig given twice"),
    (["update-ldcache", "stray"], "unexpected argument 'stray'"),
])
def test_usage_errors_exit_2(argv: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-I", "-m", "gpudoctor.commands.hook", *argv], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the OCI state -------------------------------------------------------------------------------------------

GOOD_STATE = {"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/run/b",
              "annotations": {"a": "b"}}


def _state(**changes: object) -> bytes:
    import json

    doc = {**GOOD_STATE, **changes}
    for key, value in changes.items():
        if value is ...:
            del doc[key]
    return json.dumps(doc).encode()


def test_valid_state() -> None:
    state = ContainerState.from_json(_state())
    assert (state.oci_version, state.id, state.status, state.pid, state.bundle) == \
        ("1.0.2", "c1", "creating", 4242, "/run/b")
    assert ContainerState.from_json(_state(pid=..., annotations=...)).pid is None


@pytest.mark.parametrize(("data", "message"), [
    (_state(bundle=...), "has no 'bundle' (required by the runtime spec)"),
    (_state(ociVersion=...), "has no 'ociVersion'"),
    (_state(status="paused"), "state.status is 'paused'; expected one of creating, created, running, stopped"),
    (_state(bundle="relative/dir"), "state.bundle 'relative/dir' is not an absolute path"),
    (_state(bundle=7), "state.bundle must be a string, got int"),
    (_state(pid=-1), "state.pid -1 is not a process id"),
    (_state(pid=True), "state.pid True is not a process id"),
    (_state(pid="12"), "state.pid '12' is not a process id"),
    (_state(annotations={"a": 1}), "state.annotations must be an object of strings"),
    (_state(bundle="/b\u0000x"), "state.bundle contains a NUL character"),
    (b'{"ociVersion":"1","id":"a","status":"creating","bundle":"/\\ud800"}', "contains a lone surrogate"),
    (b"[1, 2]", "the OCI state on stdin must be a JSON object"),
    (b"", "is not valid JSON: Expecting value"),
    (b"\xef\xbb\xbf{}", "starts with a byte order mark"),
    (b'{"id": "\xff"}', "is not valid UTF-8"),
    (b'{"id":"a","id":"b"}', "is ambiguous JSON: duplicate key 'id'"),
    (b'{"pid": Infinity}', "is ambiguous JSON: Infinity is not a JSON value"),
    (b"[" * 100_000 + b"]" * 100_000, "is nested too deeply"),
])
def test_invalid_state_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(HookError) as info:
        ContainerState.from_json(data)
    assert message in str(info.value)


def test_read_state_is_bounded_in_size_and_time() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b'{"ociVersion": "1.0.2"')  # and the runtime never closes stdin
        with pytest.raises(HookError, match=r"was not complete within 0.2 s \(stdin was never closed\)"):
            read_state(r, deadline=0.2)
    finally:
        os.close(r)
        os.close(w)
    r, w = os.pipe()
    try:
        os.write(w, b" " * 5000)
        os.close(w)
        with pytest.raises(HookError, match="larger than 4096 bytes"):
            read_state(r, limit=4096)
    finally:
        os.close(r)


# -- config.json and the container root ----------------------------------------------------------------------


@pytest.mark.parametrize(("config", "message"), [
    (None, "cannot read {bundle}/config.json: No such file or directory"),
    (b"{}", "{bundle}/config.json: has no root.path, so the container root is unknown"),
    (b'{"root": {"path": 5}}', "{bundle}/config.json: root.path must be a string, got int"),
    (b'{"root": {"path": ""}}', "{bundle}/config.json: root.path is empty"),
    (b'{"root": {"path": "rootfs"}, "root": {"path": "/"}}', "is ambiguous JSON: duplicate key 'root'"),
    (b'{"root": {"path": "rootfs"}', "{bundle}/config.json: is not valid JSON:"),
])
def test_bad_config_json(tmp_path: Path, config: bytes | None, message: str) -> None:
    bundle = Bundle.create(tmp_path / "b")
    cfg = bundle.path / "config.json"
    if config is None:
        cfg.unlink()
    else:
        cfg.write_bytes(config)
    before = cfg.read_bytes() if cfg.exists() else None
    proc = run_hook(bundle, "create-symlinks", ["--link=a::/b"])
    assert proc.returncode == 1
    assert message.format(bundle=bundle.path) in proc.stderr
    assert proc.stderr.startswith("gpudoctor hook create-symlinks: error: ")
    assert "Traceback" not in proc.stderr
    assert (cfg.read_bytes() if cfg.exists() else None) == before


def test_absolute_root_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "rootfs-elsewhere"
    elsewhere.mkdir()
    bundle = Bundle.create(tmp_path / "b", config={"root": {"path": str(elsewhere)}})
    proc = run_hook(bundle, "create-symlinks", ["--link=target::/x/link"])
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(elsewhere / "x" / "link") == "target"
    assert not (bundle.rootfs / "x").exists()


# -- create-symlinks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolver", ["auto", "openat2", "walk"])
def test_create_symlinks(tmp_path: Path, resolver: str) -> None:
    bundle = Bundle.create(tmp_path / "b")
    (bundle.rootfs / "usr" / "lib").mkdir(parents=True)
    os.symlink("usr/lib", bundle.rootfs / "lib")
    args = [f"--resolver={resolver}", f"--link=libcuda.so.1::{LIBDIR}/libcuda.so",
            "--link=libnvidia-ml.so.550.54.14::/lib/x86_64-linux-gnu/libnvidia-ml.so.1"]
    for _ in range(2):  # idempotent
        proc = run_hook(bundle, "create-symlinks", args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    lib = bundle.rootfs / "usr" / "lib" / "x86_64-linux-gnu"
    assert os.readlink(lib / "libcuda.so") == "libcuda.so.1"
    assert os.readlink(lib / "libnvidia-ml.so.1") == "libnvidia-ml.so.550.54.14"
    assert sorted(os.listdir(lib)) == ["libcuda.so", "libnvidia-ml.so.1"]


def test_create_symlinks_reports_the_failing_link(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path / "b")
    (bundle.rootfs / "usr").write_text("a file where a directory should be")
    proc = run_hook(bundle, "create-symlinks", [f"--link=libcuda.so.1::{LIBDIR}/libcuda.so"])
    assert proc.returncode == 1
    assert proc.stderr == (f"gpudoctor hook create-symlinks: error: cannot create the symlink {LIBDIR}/libcuda.so "
                           "-> libcuda.so.1 in the container: /usr: is a regular file, not a directory\n")


def test_refuses_to_run_with_a_leaked_loader_environment(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path / "b")
    proc = run_hook(bundle, "create-symlinks", ["--link=a::/b"], env_extra={"LD_LIBRARY_PATH": "/nonexistent"})
    assert proc.returncode == 1
    assert "refusing to run: LD_LIBRARY_PATH is set in the hook's environment" in proc.stderr
    assert "CVE-2025-23266" in proc.stderr
    assert not (bundle.rootfs / "b").exists()


# -- update-ldcache -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_soname_lib(tmp_path_factory.mktemp("lib"))


def _cache_names(cache: Path) -> str:
    return cache.read_bytes().decode("latin-1")


def test_update_ldcache(tmp_path: Path, probe_lib: Path) -> None:
    require_root()
    bundle = Bundle.create(tmp_path / "b")
    lib = bundle.rootfs / "usr" / "local" / "gd" / "lib"
    lib.mkdir(parents=True)
    (lib / probe_lib.name).write_bytes(probe_lib.read_bytes())
    host_cache = file_digest(Path("/etc/ld.so.cache"))
    proc = run_hook(bundle, "update-ldcache", ["--folder=/usr/local/gd/lib"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    dropin = bundle.rootfs / DROPIN_PATH.lstrip("/")
    assert dropin.read_text().splitlines()[1:] == ["/usr/local/gd/lib"]
    assert "libgdprobe.so.1" in _cache_names(bundle.rootfs / "etc" / "ld.so.cache")
    assert "/usr/local/gd/lib/libgdprobe.so.1" in _cache_names(bundle.rootfs / "etc" / "ld.so.cache")
    assert os.readlink(lib / "libgdprobe.so.1") == "libgdprobe.so.1.2.3"  # ldconfig's own soname link
    assert file_digest(Path("/etc/ld.so.cache")) == host_cache


@pytest.mark.parametrize(("setup", "message"), [
    ("dynamic", "the host ldconfig /bin/true is dynamically linked; chrooted into the container it would load "
                "the image's ld.so"),
    ("script", "is a script; it would run the image's shell once chrooted"),
    ("missing", "no usable host ldconfig: cannot read {tmp}/missing: No such file or directory"),
    ("relative", "--ldconfig must be an absolute host path, got 'sbin/ldconfig'"),
])
def test_only_a_static_host_ldconfig_is_run(tmp_path: Path, setup: str, message: str) -> None:
    bundle = Bundle.create(tmp_path / "b")
    script = tmp_path / "ldconfig.sh"
    script.write_text("#!/bin/sh\ntouch /tmp/never\n")
    path = {"dynamic": "/bin/true", "script": str(script), "missing": str(tmp_path / "missing"),
            "relative": "sbin/ldconfig"}[setup]
    proc = run_hook(bundle, "update-ldcache", [f"--ldconfig={path}"])
    assert proc.returncode == 1
    assert message.format(tmp=tmp_path) in proc.stderr
    assert not (bundle.rootfs / "etc" / "ld.so.cache").exists()


PROBE_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
extern char **environ;
/* Stands in for ldconfig and reports what a compromised ldconfig could reach. */
int main(int argc, char **argv) {
    FILE *f = fopen("/probe.out", "w");
    if (!f) return 3;
    char cwd[4096];
    fprintf(f, "pid=%d\ncwd=%s\n", (int)getpid(), getcwd(cwd, sizeof cwd) ? cwd : "?");
    int n = -1;
    DIR *d = opendir("/proc");
    if (d) { struct dirent *e; n = 0; while ((e = readdir(d))) if (e->d_name[0] != '.') n++; closedir(d); }
    fprintf(f, "proc_entries=%d\n", n);
    fprintf(f, "proc_1_root=%s\n", access("/proc/1/root", F_OK) == 0 ? "visible" : "absent");
    for (int i = 1; i < argc; i++) fprintf(f, "arg=%s:%s\n", argv[i], access(argv[i], F_OK) == 0 ? "present" : "absent");
    fprintf(f, "caps=");
    for (int c = 0; c < 64; c++) { int r = prctl(PR_CAPBSET_READ, c, 0, 0, 0); if (r < 0) break; if (r) fprintf(f, "%d,", c); }
    fprintf(f, "\nno_new_privs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    mkdir("/probe-escape", 0700);
    fprintf(f, "chroot=%s\n", chroot("/probe-escape") == 0 ? "allowed" : strerror(errno));
    fprintf(f, "mount=%s\n", mount("none", "/probe-escape", "tmpfs", 0, NULL) == 0 ? "allowed" : strerror(errno));
    fprintf(f, "fds=");
    for (int fd = 3; fd < 1024; fd++) if (fd != fileno(f) && fcntl(fd, F_GETFD) != -1) fprintf(f, "%d,", fd);
    fprintf(f, "\n");
    for (char **e = environ; *e; e++) fprintf(f, "env=%s\n", *e);
    struct if_nameindex *ifs = if_nameindex();
    fprintf(f, "ifaces=");
    for (struct if_nameindex *i = ifs; i && i->if_index; i++) fprintf(f, "%s,", i->if_name);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    fprintf(f, "\nrlimit_fsize=%ld\n", (long)rl.rlim_cur);
    fclose(f);
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_static(tmp_path_factory.mktemp("probe"), "probe", PROBE_C)


def _probe_report(rootfs: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (rootfs / "probe.out").read_text().splitlines():
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_ldconfig_runs_confined_inside_a_real_runc_container(tmp_path: Path, probe: Path) -> None:
    """Through real runc (which has mounted the container's /proc before createContainer hooks run): the
    binary run in ldconfig's place is pid 1 of a new pid namespace, chrooted, sees no procfs, has only
    CAP_DAC_OVERRIDE and CAP_FOWNER, no-new-privs, no inherited fds, a clean env, only the loopback
    interface, and cannot chroot or mount its way out."""
    require_runc()
    host = HostCanary.create(tmp_path / "host")
    hooks = {"createContainer": [hook_entry("update-ldcache", [f"--ldconfig={probe}", "--folder=/usr/lib",
                                                               f"--folder={host.path}"])]}
    bundle = runc_bundle(tmp_path / "bundle", hooks=hooks)
    (bundle.rootfs / "usr" / "lib").mkdir(parents=True)
    with host:
        proc = runc_run(bundle, tmp_path / "state", "gd-probe")
    assert proc.returncode == 0, proc.stderr
    report = _probe_report(bundle.rootfs)
    assert report["pid"] == ["1"]
    assert report["cwd"] == ["/"]
    assert report["proc_entries"] == ["0"]  # the container's procfs is covered by an empty tmpfs
    assert report["proc_1_root"] == ["absent"]
    assert report["arg"] == ["/usr/lib:present", f"{host.path}:absent"]  # host paths are not reachable
    assert report["caps"] == ["1,3,"]
    assert report["no_new_privs"] == ["1"]
    assert report["chroot"] == ["Operation not permitted"]
    assert report["mount"] == ["Operation not permitted"]
    assert report["fds"] == [""]
    assert sorted(report["env"]) == ["LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    assert report["ifaces"] == ["lo,"]
    assert report["rlimit_fsize"] == [str(256 << 20)]
    host.assert_untouched()


@pytest.mark.parametrize("stage", ["createContainer", "createRuntime"])
def test_hooks_through_real_runc(tmp_path: Path, probe_lib: Path, stage: str) -> None:
    """Both hooks as runc runs them. createRuntime runs in the host's mount namespace: the hooks then
    reach the root through /proc/<pid>/root, so the container's own mounts (the bind-mounted library)
    are seen."""
    require_runc()
    hooks = {stage: [create_symlinks_hook([("libgdprobe.so.1", f"{LIBDIR}/libgdprobe.so")]),
                     update_ldcache_hook([LIBDIR])]}
    bundle = runc_bundle(tmp_path / "my bundle", hooks=hooks,
                         args=["/bin/sh", "-c", f"readlink {LIBDIR}/libgdprobe.so; readlink {LIBDIR}/libgdprobe.so.1;"
                               " cat /etc/ld.so.conf.d/00-gpudoctor.conf"])
    (bundle.rootfs / LIBDIR.lstrip("/")).mkdir(parents=True)
    bundle.config["mounts"].append({"destination": f"{LIBDIR}/libgdprobe.so.1.2.3", "type": "bind",
                                    "source": str(probe_lib), "options": ["ro", "nosuid", "nodev", "rbind",
                                                                          "rprivate"]})
    host_cache = file_digest(Path("/etc/ld.so.cache"))
    proc = runc_run(bundle, tmp_path / "state", f"gd-hooks-{stage.lower()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["libgdprobe.so.1", "libgdprobe.so.1.2.3",
                                        "# written by gpudoctor hook update-ldcache (driver libraries mounted by gpudoctor)",
                                        LIBDIR]
    assert f"{LIBDIR}/libgdprobe.so.1" in _cache_names(bundle.rootfs / "etc" / "ld.so.cache")
    assert file_digest(Path("/etc/ld.so.cache")) == host_cache


def test_ldconfig_deadline_kills_a_blocked_run(tmp_path: Path) -> None:
    """A FIFO reached through an include glob blocks ldconfig in open(2): the deadline kills the whole
    namespace and the error says so; no ldconfig process is left behind."""
    require_root()
    bundle = Bundle.create(tmp_path / "b")
    other = bundle.rootfs / "etc" / "other"
    other.mkdir(parents=True)
    os.mkfifo(other / "a.conf")
    (bundle.rootfs / "etc" / "ld.so.conf").write_text("include /etc/other/*.conf\n")
    proc = run_hook(bundle, "update-ldcache", ["--folder=/usr/lib", "--timeout=2"])
    assert proc.returncode == 1
    assert "did not finish within 2 s inside the container root" in proc.stderr
    assert "it was killed" in proc.stderr
    left = []
    for pid in os.listdir("/proc"):
        try:
            if "gpudoctor-ldconfig" in os.readlink(f"/proc/{pid}/exe"):
                left.append(pid)
        except OSError:
            continue
    assert left == []
