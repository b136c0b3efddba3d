"""DemoRoot: a HostRoot whose declared device nodes stat as the character devices they stand for.

Only the placeholder files of a demo tree are affected: a path that is really a character device (made
by a fix run as root) reports itself, and a path that a fix replaced by something else stops being faked.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Mapping

from gpudoctor.demo.tree import DeviceSpec
from gpudoctor.host.root import HostRoot


class DemoRoot(HostRoot):
    """The demo host's root; `devices` are the placeholder device nodes (host path -> numbers and mode)."""

    def __init__(self, root: str | os.PathLike[str], *, devices: Mapping[str, DeviceSpec]) -> None:
        super().__init__(root, offline=True)
        self.devices = dict(devices)

    def _fake(self, host_path: str, real: os.stat_result) -> os.stat_result:
        spec = self.devices.get(host_path)
        if spec is None or not stat_mod.S_ISREG(real.st_mode) or real.st_size != 0:
            return real
        fields = (stat_mod.S_IFCHR | spec.mode, real.st_ino, real.st_dev, 1, spec.uid, spec.gid, 0,
                  int(real.st_atime), int(real.st_mtime), int(real.st_ctime))
        return os.stat_result(fields, {"st_rdev": os.makedev(spec.major, spec.minor)})

    def stat(self, host_path: str) -> os.stat_result | None:
        st = super().stat(host_path)
        if st is None:
            return None
        try:
            resolved = self.resolve(host_path)
        except OSError:
            return st
        return self._fake(resolved, st)

    def lstat(self, host_path: str) -> os.stat_result | None:
        st = super().lstat(host_path)
        if st is None:
            return None
        try:
            resolved = self.resolve(host_path, follow=False)
        except OSError:
            return st
        return self._fake(resolved, st)
