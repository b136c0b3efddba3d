"""Container edits in the CDI shape: env, device nodes, mounts and hooks.

One ContainerEdits value is produced by selection and rendered three ways: a CDI ``containerEdits`` object
(`to_cdi`), an edit of an OCI ``config.json`` (gpudoctor.engine.oci) and the hooks' argv.

This module sits on the runtime shim's hot path, so it uses plain slotted classes rather than dataclasses
(importing dataclasses pulls in inspect and costs more than the rest of the shim's imports together).
"""

from __future__ import annotations

# Every hook gpudoctor emits has an explicit env and a timeout (hookspec explains why: CVE-2025-23266).
from gpudoctor.engine.hookspec import HOOK_ENV, HOOK_TIMEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

# Mount options for every host driver file: runc performs the bind, the file can't be written, set-uid bits
# and device files on it are inert, and the mount never propagates back to the host.
RO_BIND_OPTIONS = ("ro", "nosuid", "nodev", "rbind", "rprivate")
# IPC sockets (persistenced, fabricmanager, MPS): clients must connect, so no "ro"; noexec as NVIDIA does.
IPC_BIND_OPTIONS = ("nosuid", "nodev", "rbind", "rprivate", "noexec")


class _Record:
    """Value semantics (==, repr) for the slotted classes below."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class DeviceNode(_Record):
    """A character device given to the container: created by runc and allowed in the device cgroup."""

    __slots__ = ("path", "host_path", "major", "minor", "file_mode", "uid", "gid", "permissions")

    def __init__(
        self,
        *,
        path: str,
        host_path: str,
        major: int,
        minor: int,
        file_mode: int = 0o666,
        uid: int = 0,
        gid: int = 0,
        permissions: str = "rw",
    ) -> None:
        self.path = path
        self.host_path = host_path
        self.major = major
        self.minor = minor
        self.file_mode = file_mode
        self.uid = uid
        self.gid = gid
        # rw and never "m": the container may use the node but not mknod new ones.
        self.permissions = permissions

    def to_cdi(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "hostPath": self.host_path,
            "type": "c",
            "major": self.major,
            "minor": self.minor,
            "fileMode": self.file_mode,
            "permissions": self.permissions,
            "uid": self.uid,
            "gid": self.gid,
        }

    def to_oci(self) -> dict[str, Any]:
        """The ``linux.devices`` entry."""
        return {
            "path": self.path,
            "type": "c",
            "major": self.major,
            "minor": self.minor,
            "fileMode": self.file_mode,
            "uid": self.uid,
            "gid": self.gid,
        }

    def to_oci_rule(self) -> dict[str, Any]:
        """The ``linux.resources.devices`` allow rule."""
        return {
            "allow": True,
            "type": "c",
            "major": self.major,
            "minor": self.minor,
            "access": self.permissions,
        }


class Mount(_Record):
    """A bind mount of a host file or directory into the container."""

    __slots__ = ("host_path", "container_path", "options")

    def __init__(
        self, *, host_path: str, container_path: str, options: tuple[str, ...] = RO_BIND_OPTIONS
    ) -> None:
        self.host_path = host_path
        self.container_path = container_path
        self.options = tuple(options)

    def to_cdi(self) -> dict[str, Any]:
        # No "type": it would raise the spec's minimum cdiVersion to 0.4.0 and bind mounts ignore it anyway.
        return {
            "hostPath": self.host_path,
            "containerPath": self.container_path,
            "options": list(self.options),
        }

    def to_oci(self) -> dict[str, Any]:
        return {
            "destination": self.container_path,
            "type": "bind",
            "source": self.host_path,
            "options": list(self.options),
        }


class Hook(_Record):
    """An OCI hook. gpudoctor only emits createContainer hooks, always with an explicit env and timeout."""

    __slots__ = ("hook_name", "path", "args", "env", "timeout")

    def __init__(
        self,
        *,
        hook_name: str,
        path: str,
        args: tuple[str, ...],
        env: tuple[str, ...] = HOOK_ENV,
        timeout: int | None = HOOK_TIMEOUT,
    ) -> None:
        self.hook_name = hook_name
        self.path = path
        self.args = tuple(args)
        self.env = tuple(env)
        self.timeout = timeout

    def to_cdi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hookName": self.hook_name, **self.to_oci()}
        return out

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "args": list(self.args), "env": list(self.env)}
        if self.timeout is not None:
            out["timeout"] = self.timeout
        return out


class ContainerEdits(_Record):
    """Everything to add to a container. Tuples keep order; `merged` drops exact duplicates."""

    __slots__ = ("env", "device_nodes", "mounts", "hooks")

    def __init__(
        self,
        *,
        env: Iterable[str] = (),
        device_nodes: Iterable[DeviceNode] = (),
        mounts: Iterable[Mount] = (),
        hooks: Iterable[Hook] = (),
    ) -> None:
        self.env: tuple[str, ...] = tuple(env)
        self.device_nodes: tuple[DeviceNode, ...] = tuple(device_nodes)
        self.mounts: tuple[Mount, ...] = tuple(mounts)
        self.hooks: tuple[Hook, ...] = tuple(hooks)

    @property
    def is_empty(self) -> bool:
        return not (self.env or self.device_nodes or self.mounts or self.hooks)

    def merged(self, *others: ContainerEdits) -> ContainerEdits:
        """These edits followed by `others`; a device path or mount target that is already there is skipped."""
        env = list(self.env)
        nodes = list(self.device_nodes)
        mounts = list(self.mounts)
        hooks = list(self.hooks)
        node_paths = {n.path for n in nodes}
        targets = {m.container_path for m in mounts}
        for other in others:
            env.extend(e for e in other.env if e not in env)
            for node in other.device_nodes:
                if node.path not in node_paths:
                    node_paths.add(node.path)
                    nodes.append(node)
            for mount in other.mounts:
                if mount.container_path not in targets:
                    targets.add(mount.container_path)
                    mounts.append(mount)
            hooks.extend(h for h in other.hooks if h not in hooks)
        return ContainerEdits(env=env, device_nodes=nodes, mounts=mounts, hooks=hooks)

    def to_cdi(self) -> dict[str, Any]:
        """The CDI ``containerEdits`` object (empty lists left out)."""
        out: dict[str, Any] = {}
        if self.env:
            out["env"] = list(self.env)
        if self.device_nodes:
            out["deviceNodes"] = [n.to_cdi() for n in self.device_nodes]
        if self.mounts:
            out["mounts"] = [m.to_cdi() for m in self.mounts]
        if self.hooks:
            out["hooks"] = [h.to_cdi() for h in self.hooks]
        return out
