"""Bug-report bundles: ``gpudoctor snapshot`` collects one, ``--root FILE.tar.gz`` replays it offline.

- :mod:`gpudoctor.snapshot.collect`: run the doctor on a host and pack what it used (collect_snapshot).
- :mod:`gpudoctor.snapshot.replay`: open_snapshot(path) -> HostFacts replaying a bundle.
- :mod:`gpudoctor.snapshot.safety`: extraction that trusts nothing in the archive.
- :mod:`gpudoctor.snapshot.manifest`: the layout and manifest.json (format ``gpudoctor.snapshot/1``).
- :mod:`gpudoctor.snapshot.redact`: what counts as a secret and how it is redacted.
"""
