"""Pure parsers of host files. Each takes the file's content and a keyword ``path`` (the host path, used in
messages) and raises only :class:`gpudoctor.host.errors.ParseError` on bad input.

Modules (import the one you need; this package imports nothing, so ``--check --json`` starts fast):
``nvproc`` (/proc/driver/nvidia), ``procfs`` (modules, devices, version, mountinfo), ``sysfs`` (PCI,
/sys/module), ``osinfo`` (os-release, Secure Boot, lockdown), ``ldcache`` (/etc/ld.so.cache), ``configs``
(daemon.json, the toolkit's config.toml, containerd), ``cdi`` (CDI specs).
"""
