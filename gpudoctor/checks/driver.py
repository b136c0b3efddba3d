"""Driver checks: the GPUs on the PCI bus, nouveau, the kernel driver, the userspace driver, their versions.

Dependency DAG of the hardware/kernel/devices/libraries checks (driver.py, modules.py, devices.py)::

    driver.gpus ─> driver.nouveau
    driver.loaded ─> modules.nvidia ─┬─> modules.nvidia_uvm ──> devices.uvm
                                     ├─> modules.nvidia_modeset ──> modules.nvidia_drm
                                     ├─> devices.control ─┐
                                     └─> devices.gpus ────┴─> devices.permissions
    driver.installed ─┐
    driver.loaded ────┴─> driver.version_match

`driver.loaded` and `driver.installed` are the two entry points that also apply on WSL2, where the PCI,
module and device-node checks are `skip`. The runner turns a skipped dependency into a skip, so these two
cannot list `driver.gpus` as a dependency; instead they consult the same hardware assessment and skip
with the runner's wording ("skipped because driver.gpus is fail: ...") when no usable GPU exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gpudoctor.checks.base import CheckContext, Finding, Status, check, failed, passed, skipped, warned
from gpudoctor.host import model as m
from gpudoctor.host.facts import HostFacts
from gpudoctor.host.parsers.sysfs import PciDevice
from gpudoctor.record import Record, field

if TYPE_CHECKING:
    # Only live runs load the probe module (it starts a child process); offline runs never import it.
    from gpudoctor.host.nvml import NvmlProbe

FIX_LOAD_MODULES = "load-modules"
FIX_DEVICE_NODES = "device-nodes"
FIX_NOUVEAU = "nouveau-blacklist"

NOUVEAU_MODULES = ("nouveau", "nova_core")


# -- shared helpers (modules.py and devices.py use them too) ----------------------------------------------


def probe(ctx: CheckContext) -> NvmlProbe | None:
    """The live NVML probe, or None under --offline."""
    return m.nvml(ctx.host, offline=ctx.offline, timeout=ctx.options.timeout)


def nvml_line(p: NvmlProbe) -> str:
    """One evidence line summarising an NVML probe."""
    where = f" from {p.library_path}" if p.library_path else ""
    if p.ok:
        return f"NVML{where}: initialised, driver {p.driver_version}, {len(p.gpus)} GPU(s)"
    return f"NVML{where}: {p.status}: {p.error or 'no detail'}"


def nvml_broken(p: NvmlProbe, *, layer_hint: str) -> Finding:
    """The `error` finding for an NVML library that hung or crashed (never a hang of gpudoctor)."""
    what = "did not answer in time" if p.status == "timeout" else "crashed the process that loaded it"
    return Finding(
        status=Status.ERROR,
        summary=f"NVML {what}; {layer_hint}",
        evidence=[nvml_line(p)],
        remedy="Run `nvidia-smi` on the host and read the kernel log (`sudo dmesg | grep -i -e NVRM -e Xid`): a "
        "hanging NVML usually means a GPU that stopped responding; a reboot or GPU reset clears it.",
    )


def combine(problems: list[Problem], evidence: list[str], *, status: Status) -> Finding:
    """One finding for several problems of the same check: first summaries, all remedies and fixes."""
    summary = problems[0].summary
    if len(problems) == 2:
        summary += f"; {problems[1].summary}"
    elif len(problems) > 2:
        summary += f"; and {len(problems) - 1} more problems"
    remedies: list[str] = []
    fixes: list[str] = []
    for p in problems:
        if p.remedy and p.remedy not in remedies:
            remedies.append(p.remedy)
        fixes.extend(f for f in p.fixes if f not in fixes)
    return Finding(status=status, summary=summary, evidence=evidence, remedy="\n".join(remedies) or None,
                   fixes=fixes)


class Problem(Record, frozen=False):
    summary: str
    remedy: str | None = None
    fixes: list[str] = field(default_factory=list)
    loadable: bool = True
    """For a cause of an unloaded module: whether `modprobe` (the load-modules fix) can still load it."""


def blocked_by_hardware(facts: HostFacts) -> Finding | None:
    """The skip a non-WSL check reports when driver.gpus fails (no usable GPU), else None."""
    w = m.wsl(facts)
    if w.wsl2:
        return None
    if w.wsl1:
        return skipped(f"skipped because driver.gpus is fail: {WSL1_SUMMARY}")
    hw = hardware(facts)
    if hw.blocking is not None:
        return skipped(f"skipped because driver.gpus is fail: {hw.blocking.summary}")
    return None


# -- hardware assessment ----------------------------------------------------------------------------------

WSL1_SUMMARY = "WSL1 has no GPU support (only WSL2 paravirtualises GPUs)"


class Hardware(Record, frozen=False):
    """driver.gpus' file-based view: `blocking` is set when no usable NVIDIA GPU exists."""

    gpus: list[PciDevice]
    evidence: list[str]
    blocking: Problem | None = None
    problems: list[Problem] = field(default_factory=list)


def _vfio_config(facts: HostFacts) -> list[str]:
    cfg = m.modprobe_config(facts)
    lines = [line for line in cfg.options.get("vfio_pci", []) if "ids=" in line]
    if cfg.cmdline and "vfio-pci.ids=" in cfg.cmdline:
        lines += [f"{m.PROC_CMDLINE}: {w}" for w in cfg.cmdline.split() if w.startswith("vfio-pci.ids=")]
    return lines


def _gpus(addresses: list[str]) -> str:
    """``GPU 0000:3b:00.0 is`` / ``GPUs 0000:3b:00.0, 0000:86:00.0 are``."""
    return f"GPU {addresses[0]} is" if len(addresses) == 1 else f"GPUs {', '.join(addresses)} are"


def _rebind(addresses: Iterable[str], from_driver: str) -> str:
    return " && ".join(
        f"echo {a} | sudo tee /sys/bus/pci/drivers/{from_driver}/unbind && "
        f"echo {a} | sudo tee /sys/bus/pci/drivers/nvidia/bind"
        for a in addresses
    )


def hardware(facts: HostFacts) -> Hardware:
    def compute() -> Hardware:
        scan = m.pci(facts)
        if not scan.readable:
            return Hardware(gpus=[], evidence=[f"{m.PCI_DEVICES}: not present"], problems=[Problem(
                summary=f"cannot list PCI devices: {m.PCI_DEVICES} is not present under the root",
                remedy="Give gpudoctor the host's /sys (e.g. mount it at /host/sys with --root /host).")])
        if scan.error is not None:
            return Hardware(gpus=[], evidence=[f"{scan.error} (cannot be parsed)"], problems=[Problem(
                summary=f"cannot read the PCI bus: {scan.error}",
                remedy=f"Check the file named above (`cat` it on the host); {m.PCI_DEVICES} is written by the "
                "kernel, so garbage there means a damaged copy of the host's /sys.")])
        gpus = scan.nvidia_gpus
        evidence = [m.describe_pci(d) for d in gpus]
        evidence += [f"{m.describe_pci(d)} (NVSwitch)" for d in scan.nvswitches]
        if not gpus:
            evidence = [f"{m.PCI_DEVICES}: {len(scan.devices)} devices, none with vendor 0x10de and a display "
                        "class (0x03xxxx)"]
            evidence += [m.describe_pci(d) for d in scan.other_display]
            return Hardware(gpus=[], evidence=evidence, blocking=Problem(
                summary="no NVIDIA GPU on the PCI bus",
                remedy="This machine has no NVIDIA GPU that the kernel can see. On a VM, attach a GPU (a GPU "
                "instance type, or PCI passthrough from the hypervisor); otherwise run the workload on CPU."))
        hw = Hardware(gpus=gpus, evidence=evidence)
        vfio = [d.address for d in gpus if d.driver == "vfio-pci"]
        if vfio:
            hw.evidence += _vfio_config(facts)
            problem = Problem(
                summary=(f"{'all ' + str(len(vfio)) if len(vfio) == len(gpus) else f'{len(vfio)} of {len(gpus)}'} "
                         f"NVIDIA GPUs are bound to vfio-pci (reserved for VM passthrough): {', '.join(vfio)}"),
                remedy="To use them on this host, remove `vfio-pci.ids=10de:...` from the kernel command line and "
                "`options vfio-pci ids=...` from /etc/modprobe.d, then reboot; or rebind now: "
                + _rebind(vfio, "vfio-pci"))
            if len(vfio) == len(gpus):
                hw.blocking = problem
                return hw
            hw.problems.append(problem)
        owned_by_nouveau = [d.address for d in gpus if d.driver in ("nouveau", "nova-core", "nova_core")]
        if owned_by_nouveau:
            hw.problems.append(Problem(
                summary=f"{_gpus(owned_by_nouveau)} driven by nouveau, not nvidia",
                remedy="Blacklist nouveau so that nvidia can bind the GPU (see driver.nouveau).",
                fixes=[FIX_NOUVEAU]))
        unbound = [d.address for d in gpus if d.driver is None]
        if unbound:
            nvidia_loaded = m.module_state(facts, "nvidia").loaded
            why = ("the nvidia module is not loaded (see driver.loaded)" if not nvidia_loaded else
                   "the nvidia module is loaded but did not claim it (unsupported by this driver flavour, "
                   "excluded, or failed to initialise: see `sudo dmesg | grep NVRM`)")
            remedy = ("Load the driver (see driver.loaded): `sudo modprobe nvidia`." if not nvidia_loaded else
                      "Read `sudo dmesg | grep NVRM` for why the driver skipped it; check NVreg_ExcludedGpus and "
                      "whether this driver flavour supports the GPU.")
            hw.problems.append(Problem(summary=f"{_gpus(unbound)} not bound to any driver: {why}",
                                       remedy=remedy, fixes=[] if nvidia_loaded else [FIX_LOAD_MODULES]))
        other = [f"{d.address} ({d.driver})" for d in gpus
                 if d.driver not in (None, "nvidia", "vfio-pci", "nouveau", "nova-core", "nova_core")]
        if other:
            hw.problems.append(Problem(
                summary=f"{_gpus(other)} bound to another driver",
                remedy="Unbind it from that driver and bind it to nvidia: "
                "`echo <address> | sudo tee /sys/bus/pci/devices/<address>/driver/unbind` then "
                "`echo <address> | sudo tee /sys/bus/pci/drivers/nvidia/bind`."))
        _cross_check_proc(facts, hw)
        return hw

    return facts.memo("driver:hardware", compute)


def _cross_check_proc(facts: HostFacts, hw: Hardware) -> None:
    """GPUs bound to nvidia must appear in /proc/driver/nvidia/gpus, readable and not excluded."""
    bound = [d for d in hw.gpus if d.driver == "nvidia"]
    if not bound or not m.nvidia_version(facts).exists:
        return
    procs = {g.pci_address: g for g in m.proc_gpus(facts)}
    for dev in bound:
        entry = procs.get(m.normalize_bus_id(dev.address))
        if entry is None:
            hw.evidence.append(f"{m.NVIDIA_GPUS_DIR}/{dev.address}: not present")
            flavor = m.nvidia_version(facts).value
            hint = (" The open kernel module supports only Turing and newer GPUs: install the proprietary flavour."
                    if flavor is not None and flavor.flavor == "open" else "")
            hw.problems.append(Problem(
                summary=f"GPU {dev.address} is bound to nvidia but the driver does not list it in "
                f"{m.NVIDIA_GPUS_DIR}",
                remedy="Read the kernel log (`sudo dmesg | grep NVRM`) for RmInitAdapter errors." + hint))
        elif entry.info is not None and entry.info.gpu_excluded:
            hw.evidence.append(f"{entry.path}: GPU Excluded: Yes")
            hw.problems.append(Problem(
                summary=f"GPU {dev.address} is excluded by the driver (GPU Excluded: Yes)",
                remedy="It is listed in NVreg_ExcludedGpus (modprobe options, /proc/driver/nvidia/params "
                "ExcludedGpus); remove it there and reload the driver if the GPU should be used."))
        elif entry.info is not None and entry.info.uuid is None:
            hw.evidence.append(f"{entry.path}: GPU UUID unknown ('??')")
            hw.problems.append(Problem(
                summary=f"the driver cannot read GPU {dev.address} (its UUID is '??'): it may have fallen off the bus",
                remedy="Check the kernel log for Xid 79 (`sudo dmesg | grep -i xid`); the GPU needs a reset or a "
                "reboot, and if it recurs, a look at power, cooling and seating."))


def _cross_check_nvml(facts: HostFacts, hw: Hardware, p: NvmlProbe) -> list[Problem]:
    seen = {m.normalize_bus_id(g.pci_bus_id) for g in p.gpus}
    procs = {g.pci_address: g for g in m.proc_gpus(facts)}
    problems: list[Problem] = []
    for dev in hw.gpus:
        if dev.driver != "nvidia" or m.normalize_bus_id(dev.address) in seen:
            continue
        entry = procs.get(m.normalize_bus_id(dev.address))
        if entry is not None and entry.info is not None and entry.info.gpu_excluded:
            continue  # already reported as excluded
        problems.append(Problem(
            summary=f"NVML does not see GPU {dev.address}, which is on the PCI bus and bound to nvidia "
            "(excluded or lost)",
            remedy="Check the kernel log for Xid errors (`sudo dmesg | grep -i -e xid -e NVRM`). A GPU that fell "
            "off the bus (Xid 79) needs a reset (`sudo nvidia-smi -r`) or a reboot; an excluded one is listed in "
            "NVreg_ExcludedGpus or CUDA_VISIBLE_DEVICES-like settings of the driver."))
    return problems


@check("driver.gpus", title="NVIDIA GPUs on the PCI bus", layer="hardware")
def driver_gpus(ctx: CheckContext) -> Finding:
    facts = ctx.host
    w = m.wsl(facts)
    if w.wsl2:
        return skipped(m.WSL_SKIP, [w.evidence])
    if w.wsl1:
        return failed(WSL1_SUMMARY, [w.evidence],
                      remedy="Convert the distribution to WSL2 (in Windows: `wsl --set-version <distro> 2`) and "
                      "install the NVIDIA driver on Windows.")
    hw = hardware(facts)
    if hw.blocking is not None:
        return failed(hw.blocking.summary, hw.evidence, remedy=hw.blocking.remedy, fixes=hw.blocking.fixes)
    evidence = list(hw.evidence)
    problems = list(hw.problems)
    p = probe(ctx)
    if p is not None:
        evidence.append(nvml_line(p))
        if p.ok:
            evidence += [f"NVML GPU {g.index}: {m.normalize_bus_id(g.pci_bus_id)} {g.uuid} {g.name}" for g in p.gpus]
            problems += _cross_check_nvml(facts, hw, p)
    if problems:
        return combine(problems, evidence, status=Status.WARN)
    n = len(hw.gpus)
    seen = f"; NVML sees all {n}" if p is not None and p.ok else ""
    return passed(f"{n} NVIDIA GPU{'s' if n != 1 else ''} on the PCI bus, bound to nvidia{seen}", evidence)


# -- nouveau ----------------------------------------------------------------------------------------------


@check("driver.nouveau", title="nouveau not in the way", depends_on=("driver.gpus",), layer="kernel")
def driver_nouveau(ctx: CheckContext) -> Finding:
    facts = ctx.host
    if m.wsl(facts).wsl2:
        return skipped(m.WSL_SKIP)
    cfg = m.modprobe_config(facts)
    evidence: list[str] = []
    loaded: list[str] = []
    for name in NOUVEAU_MODULES:
        st = m.module_state(facts, name)
        evidence += [line for line in st.evidence if line not in evidence]
        if st.loaded:
            loaded.append(name)
    hw = hardware(facts)
    owned = [d for d in hw.gpus if d.driver in ("nouveau", "nova-core", "nova_core")]
    evidence += [m.describe_pci(d) for d in owned]
    blacklisted = [line for name in NOUVEAU_MODULES for line in cfg.blacklists.get(name, [])]
    evidence += blacklisted or ["/etc/modprobe.d, /proc/cmdline: nouveau is not blacklisted"]
    remedy = (
        "Blacklist nouveau and rebuild the initramfs, then reboot:\n"
        "printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf\n"
        f"{m.initramfs_command(facts)} && sudo reboot"
    )
    if blacklisted and (owned or loaded):
        remedy = ("nouveau is blacklisted but was still loaded: the initramfs predates the blacklist. Rebuild it and "
                  f"reboot: {m.initramfs_command(facts)} && sudo reboot")
    if owned:
        names = ", ".join(d.address for d in owned)
        return failed(f"{owned[0].driver} is loaded and drives GPU {names}; the nvidia driver cannot bind it",
                      evidence, remedy=remedy, fixes=[FIX_NOUVEAU])
    if loaded:
        return warned(f"{' and '.join(loaded)} is loaded (no NVIDIA GPU is bound to it now, but it can take the GPU "
                      "at the next boot)", evidence, remedy=remedy, fixes=[FIX_NOUVEAU])
    return passed("nouveau is not loaded", evidence)


# -- kernel driver ----------------------------------------------------------------------------------------


def _nvml_against_loaded_driver(ctx: CheckContext, p: NvmlProbe, evidence: list[str], ok_summary: str) -> Finding:
    """Map the NVML init result onto driver.loaded, once the kernel side says the driver is loaded."""
    evidence.append(nvml_line(p))
    if p.status in ("timeout", "crashed"):
        # Reported as an error by driver.version_match, a leaf, so the module and device checks still run.
        evidence.append("(the hung or crashed NVML is reported by driver.version_match)")
        return passed(ok_summary, evidence)
    if p.status == "driver_not_loaded":
        ctl = m.device_node(ctx.host, "/dev/nvidiactl")
        evidence.append(ctl.describe())
        if not ctl.is_char:
            # The cause sits one layer up and devices.control fails for it; a warning here keeps that
            # check (and the other device checks) running instead of skipping them.
            return warned("the kernel module is loaded, but NVML reports DriverNotLoaded because /dev/nvidiactl is "
                          f"{'missing' if not ctl.exists else 'not a character device'} (see devices.control)",
                          evidence, remedy="Create the device nodes: `sudo nvidia-modprobe -c 0`.",
                          fixes=[FIX_DEVICE_NODES])
        return failed("NVML reports DriverNotLoaded although the kernel module is loaded", evidence,
                      remedy="Reload the driver (`sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo "
                      "modprobe nvidia nvidia_uvm`) and read `sudo dmesg | grep NVRM`.")
    if p.status == "unknown":
        return failed(f"NVML initialisation failed: {p.error or 'Unknown Error'}", evidence,
                      remedy="Read the kernel log for Xid errors (`sudo dmesg | grep -i -e xid -e NVRM`); on a host "
                      "this usually means a GPU that fell off the bus and needs a reset or reboot.")
    if p.status == "lib_rm_version_mismatch":
        evidence.append("(NVML's LibRmVersionMismatch is reported by driver.version_match)")
    elif p.status == "no_permission":
        evidence.append("(NVML's NoPermission is reported by devices.permissions)")
    elif p.status == "library_not_found":
        evidence.append("(the NVML library is reported by driver.installed)")
    return passed(ok_summary, evidence)


def _why_not_loaded(facts: HostFacts) -> tuple[list[str], list[Problem]]:
    """Evidence and causes for a kernel module that is not loaded: Secure Boot, nouveau, blacklist, no .ko."""
    evidence: list[str] = []
    causes: list[Problem] = []
    sb = m.secure_boot(facts)
    evidence.append(sb.evidence)
    if sb.enabled:
        mode = m.lockdown(facts)
        if mode:
            evidence.append(f"/sys/kernel/security/lockdown: [{mode}]")
        causes.append(Problem(
            loadable=False,
            summary="Secure Boot is on, so the kernel refuses a module that is not signed with an enrolled key",
            remedy="Sign the module with a Machine Owner Key and enroll it (Ubuntu: `sudo update-secureboot-policy "
            "--enroll-key`; DKMS: `sudo mokutil --import /var/lib/dkms/mok.pub`; Fedora: `sudo kmodgenca -a && "
            "sudo mokutil --import /etc/pki/akmods/certs/public_key.der`), reboot and confirm the key in the MOK "
            "manager; or use the distribution's pre-signed driver modules, or turn Secure Boot off."))
    nouveau = [n for n in NOUVEAU_MODULES if m.module_state(facts, n).loaded]
    if nouveau:
        evidence.append(m.module_state(facts, nouveau[0]).evidence[0])
        causes.append(Problem(summary=f"{nouveau[0]} is loaded and owns the GPU", loadable=False,
                              remedy="Blacklist nouveau and reboot (see driver.nouveau).", fixes=[FIX_NOUVEAU]))
    cfg = m.modprobe_config(facts)
    if cfg.blacklists.get("nvidia"):
        evidence += cfg.blacklists["nvidia"]
        causes.append(Problem(summary="nvidia is blacklisted",
                              remedy="Remove the `blacklist nvidia` lines named above, rebuild the initramfs and "
                              "reboot."))
    release = m.kernel_release(facts)
    files = m.module_files_for_kernel(facts, release)
    if files is not None:
        if files:
            evidence.append(f"{files[0]}: present (built for the running kernel {release})")
        else:
            evidence.append(f"/lib/modules/{release}: no nvidia.ko* for the running kernel")
            if not sb.enabled:
                causes.append(Problem(
                    loadable=False,
                    summary=f"no nvidia module is built for the running kernel {release}",
                    remedy="Install the headers for the running kernel and rebuild the module: "
                    f"`sudo apt-get install linux-headers-{release}` (or `sudo dnf install kernel-devel-{release}`), "
                    "then `sudo dkms autoinstall` and `sudo modprobe nvidia`; or reinstall the driver package."))
    return evidence, causes


@check("driver.loaded", title="NVIDIA kernel driver loaded", layer="kernel")
def driver_loaded(ctx: CheckContext) -> Finding:
    facts = ctx.host
    w = m.wsl(facts)
    if w.wsl2:
        return _wsl_loaded(ctx, w)
    blocked = blocked_by_hardware(facts)
    if blocked is not None:
        return blocked
    nv = m.nvidia_version(facts)
    mod = m.module_state(facts, "nvidia")
    if nv.value is not None:
        v = nv.value
        flavor = "open kernel module" if v.flavor == "open" else "proprietary kernel module"
        evidence = [f"{m.NVIDIA_VERSION}: {v.raw_first_line}", *mod.evidence[:1]]
        summary = f"NVIDIA kernel driver {v.version} is loaded ({flavor})"
        p = probe(ctx)
        return passed(summary, evidence) if p is None else _nvml_against_loaded_driver(ctx, p, evidence, summary)
    if nv.exists:
        return warned(f"the kernel driver is loaded but its version file cannot be used: {nv.problem()}",
                      [nv.problem(), *mod.evidence],
                      remedy=f"{m.NVIDIA_VERSION} is written by the driver; an unreadable one suggests a damaged "
                      "snapshot or an unusual kernel. Run `cat /proc/driver/nvidia/version` on the host.")
    evidence = [f"{m.NVIDIA_VERSION}: not present", *mod.evidence]
    if mod.loaded:
        return failed("the nvidia module is listed as loaded, but the driver did not create "
                      f"{m.NVIDIA_VERSION}: it failed to initialise", evidence,
                      remedy="Read the kernel log (`sudo dmesg | grep NVRM`), then reload the driver: "
                      "`sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia`.")
    more, causes = _why_not_loaded(facts)
    evidence += more
    summary = "the NVIDIA kernel module is not loaded"
    if causes:
        summary += ": " + "; ".join(c.summary for c in causes)
    remedies = [c.remedy for c in causes if c.remedy]
    fixes = [f for c in causes for f in c.fixes]
    if not causes:
        remedies.append("Load it: `sudo modprobe nvidia && sudo modprobe nvidia_uvm`; if that fails, read "
                        "`sudo dmesg | grep -i nvrm` for the reason.")
    # modprobe cannot help while Secure Boot refuses the module, nouveau holds the GPU or no .ko exists;
    # a blacklist only stops automatic loading, so an explicit modprobe still works there.
    if all(c.loadable for c in causes):
        fixes.insert(0, FIX_LOAD_MODULES)
    return failed(summary, evidence, remedy="\n".join(remedies), fixes=list(dict.fromkeys(fixes)))


def _wsl_loaded(ctx: CheckContext, w: m.WslInfo) -> Finding:
    dxg = m.device_node(ctx.host, m.DXG)
    evidence = [w.evidence, dxg.describe()]
    if not dxg.exists:
        return failed("WSL2 without /dev/dxg: the GPU is not paravirtualised into this distribution", evidence,
                      remedy="Install the current NVIDIA driver on Windows (not inside WSL), update WSL "
                      "(`wsl --update` in Windows), then restart it with `wsl --shutdown`.")
    summary = "WSL2 GPU paravirtualisation is available (/dev/dxg)"
    p = probe(ctx)
    if p is None:
        return passed(summary, evidence)
    evidence.append(nvml_line(p))
    if p.status in ("timeout", "crashed"):
        evidence.append("(the hung or crashed NVML is reported by driver.version_match)")
        return passed(summary, evidence)
    if p.status in ("driver_not_loaded", "unknown"):
        return failed(f"NVML cannot use the WSL2 GPU: {p.error or p.status}", evidence,
                      remedy="Update the NVIDIA driver on Windows and run `wsl --shutdown`; a GPU blocked by a "
                      "Windows policy shows as 'GPU access blocked by the operating system'.")
    return passed(summary, evidence)


# -- userspace driver -------------------------------------------------------------------------------------


@check("driver.installed", title="NVIDIA userspace driver installed", layer="libraries")
def driver_installed(ctx: CheckContext) -> Finding:
    facts = ctx.host
    w = m.wsl(facts)
    if w.wsl2:
        return _wsl_installed(ctx, w)
    blocked = blocked_by_hardware(facts)
    if blocked is not None:
        return blocked
    lib = m.find_library(facts, m.NVML_SONAME)
    smi = m.find_binary(facts, "nvidia-smi")
    evidence = list(lib.evidence)
    evidence.append(f"nvidia-smi: {smi}" if smi else f"nvidia-smi: not found in {', '.join(m.BIN_DIRS)}")
    p = probe(ctx)
    if p is not None and p.status == "library_not_found":
        evidence.append(nvml_line(p))
    if not lib.found:
        foreign = f" (the cache has only {', '.join(lib.only_foreign)})" if lib.only_foreign else ""
        return failed(f"the NVIDIA userspace driver is not installed: {m.NVML_SONAME} was not found{foreign}",
                      evidence,
                      remedy="Install the driver on the host (not in the container), then reboot and check "
                      f"`nvidia-smi`: {m.driver_install_command(facts)}. Containers get the driver from the host: "
                      "without it the toolkit fails with 'load library failed: libnvidia-ml.so.1'.")
    version = f" {lib.version}" if lib.version else ""
    problems: list[Problem] = []
    cache = m.ld_cache(facts)
    if not lib.in_cache:
        why = cache.problem() if cache.value is None else f"{m.LD_SO_CACHE} does not list it"
        problems.append(Problem(summary=f"{lib.path} exists but {why}",
                                remedy="Run `sudo ldconfig`: the container toolkit finds driver libraries "
                                "through the host's ld.so.cache."))
    if smi is None:
        problems.append(Problem(summary="nvidia-smi is not installed",
                                remedy="Install the driver's utilities package (e.g. nvidia-utils-<branch>)."))
    if problems:
        return combine(problems, evidence, status=Status.WARN)
    return passed(f"userspace driver{version} installed: {m.NVML_SONAME} -> {lib.real_path} (from ld.so.cache); "
                  f"nvidia-smi at {smi}", evidence)


def _wsl_installed(ctx: CheckContext, w: m.WslInfo) -> Finding:
    facts = ctx.host
    lib = m.find_library(facts, m.NVML_SONAME, lib_dirs=(m.WSL_LIB_DIR,), use_cache=False)
    smi = m.find_binary(facts, "nvidia-smi", dirs=(m.WSL_LIB_DIR, *m.BIN_DIRS))
    evidence = [w.evidence, *lib.evidence,
                f"nvidia-smi: {smi}" if smi else f"nvidia-smi: not found in {m.WSL_LIB_DIR}"]
    if not lib.found:
        return failed(f"WSL2: {m.WSL_LIB_DIR}/{m.NVML_SONAME} is missing: the Windows driver's libraries are not "
                      "mapped into this distribution", evidence,
                      remedy="Install the current NVIDIA driver on Windows (not inside WSL) and run `wsl --shutdown`.")
    linux_lib = m.find_library(facts, m.NVML_SONAME, use_cache=False)
    if linux_lib.found:
        evidence += linux_lib.evidence
        return warned(f"a Linux NVIDIA driver is installed inside WSL2 ({linux_lib.path}); it shadows the Windows "
                      "driver's libraries", evidence,
                      remedy="Remove it: `sudo apt-get remove --purge 'nvidia-*' 'libnvidia-*'` (WSL2 uses the "
                      "Windows driver through /usr/lib/wsl/lib), then `sudo ldconfig`.")
    return passed(f"WSL2 driver libraries in {m.WSL_LIB_DIR}", evidence)


@check("driver.version_match", title="Kernel driver and libraries match",
       depends_on=("driver.installed", "driver.loaded"), layer="libraries")
def driver_version_match(ctx: CheckContext) -> Finding:
    facts = ctx.host
    p = probe(ctx)
    if m.wsl(facts).wsl2:
        if p is None:
            return skipped("does not apply on WSL2 offline: the Windows driver provides both sides")
        if p.status in ("timeout", "crashed"):
            return nvml_broken(p, layer_hint="the WSL2 GPU driver may be stuck")
        if p.status == "lib_rm_version_mismatch":
            return failed(f"NVML reports a driver/library version mismatch: {p.error}", [nvml_line(p)],
                          remedy="Update the NVIDIA driver on Windows and run `wsl --shutdown`.")
        if not p.ok:
            return skipped(f"NVML did not initialise ({p.status}), so the versions cannot be compared",
                           [nvml_line(p)])
        return passed("the Windows driver provides the kernel side and the libraries together", [nvml_line(p)])
    nv = m.nvidia_version(facts)
    lib = m.find_library(facts, m.NVML_SONAME)
    cuda = m.find_library(facts, m.CUDA_SONAME)
    evidence = [f"{m.NVIDIA_VERSION}: kernel module {nv.value.version}" if nv.value else nv.problem()]
    if lib.real_path:
        evidence.append(f"{lib.path} -> {lib.real_path}" if lib.path != lib.real_path else f"{lib.real_path}")
    sysm = m.sys_module(facts, "nvidia")
    if sysm.value is not None and sysm.value.version:
        evidence.append(f"/sys/module/nvidia/version: {sysm.value.version}")
    remedy = ("Reboot, so that the module matches the installed libraries (or reload it: `sudo rmmod nvidia_uvm "
              "nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia nvidia_uvm`). To keep unattended upgrades "
              "from doing this again: `sudo apt-mark hold` the driver packages (or exclude them in dnf).")
    problems: list[Problem] = []
    kernel = nv.value.version if nv.value else None
    if kernel and lib.version and kernel != lib.version:
        problems.append(Problem(
            summary=f"driver/library version mismatch: kernel module {kernel}, {m.NVML_SONAME} {lib.version} "
            "(NVML fails with 'Driver/library version mismatch')", remedy=remedy))
    if kernel and cuda.version and cuda.version != kernel and cuda.real_path:
        evidence.append(f"{cuda.path} -> {cuda.real_path}")
        problems.append(Problem(summary=f"{m.CUDA_SONAME} is {cuda.version}, the kernel module {kernel}",
                                remedy=remedy))
    if p is not None:
        evidence.append(nvml_line(p))
        if p.status in ("timeout", "crashed"):
            return nvml_broken(p, layer_hint="cannot confirm that the kernel driver and the libraries work together")
        if p.status == "lib_rm_version_mismatch":
            problems.append(Problem(summary=f"NVML reports a driver/library version mismatch: {p.error}",
                                    remedy=remedy))
    if problems:
        return combine(problems, evidence, status=Status.FAIL)
    if kernel is None:
        return skipped(f"the kernel module's version is unknown ({nv.problem()})", evidence)
    if lib.version is None:
        return warned(f"cannot tell the version of {lib.real_path} (its name has no .so.<version>)", evidence,
                      remedy="Driver packages install libnvidia-ml.so.<version>; reinstall the driver package.")
    return passed(f"kernel module and {m.NVML_SONAME} are both {kernel}", evidence)
