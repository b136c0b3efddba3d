"""What a container asks for: NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES and ``cdi.k8s.io/`` annotations.

The grammar is strict and ASCII-only, because the values come from untrusted images:

    NVIDIA_VISIBLE_DEVICES      unset | "" | void     -> no request: the container is left exactly as it is
                                none                  -> the driver (libraries, control nodes), no GPU
                                all                   -> every GPU
                                ID[,ID...]            -> ID is an index ([0-9]{1,4}), a GPU UUID
                                                         (GPU-<hex and dashes>) or nvidia.com/gpu=<name>
    NVIDIA_DRIVER_CAPABILITIES  unset | ""            -> utility,compute
                                all | CAP[,CAP...]    -> CAP in compute compat32 display graphics ngx
                                                         utility video

As in nvidia-container-toolkit, ``void`` anywhere in the list wins and ``all`` anywhere means all. Device
names are only ever matched against discovered devices; no path is built from them. Duplicate env entries
for these variables are rejected: runtimes disagree about which one wins.

A ``cdi.k8s.io/<any>`` annotation whose value lists ``nvidia.com/gpu=<name>`` devices takes precedence over
the env (Kubernetes' device plugins use it); it gets every capability, as a CDI spec does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
DRIVER_CAPABILITIES = "NVIDIA_DRIVER_CAPABILITIES"
CDI_ANNOTATION_PREFIX = "cdi.k8s.io/"
CDI_KIND = "nvidia.com/gpu"

CAPABILITIES = frozenset({"compute", "compat32", "display", "graphics", "ngx", "utility", "video"})
DEFAULT_CAPABILITIES = frozenset({"utility", "compute"})

ALL = "all"
NONE = "none"
VOID = "void"

# Far above any real value (a UUID list for 64 GPUs is ~2.6 KiB), small enough to quote in an error.
MAX_VALUE_LEN = 4096
_MAX_INDEX_DIGITS = 4
_HEX = frozenset("0123456789abcdefABCDEF")


class RequestError(ValueError):
    """The container's GPU request is malformed. The message names the variable and the bad value."""


class Request:
    """A parsed GPU request.

    `devices` holds "all", or device names in request order: an index ("0"), a UUID ("GPU-..."). An empty
    tuple means "none": the driver without GPUs. `source` says where it came from (for messages).
    """

    __slots__ = ("devices", "capabilities", "source")

    def __init__(self, *, devices: tuple[str, ...], capabilities: frozenset[str], source: str) -> None:
        self.devices = devices
        self.capabilities = capabilities
        self.source = source

    @property
    def all_devices(self) -> bool:
        return self.devices == (ALL,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and (self.devices, self.capabilities, self.source) == (
            other.devices,
            other.capabilities,
            other.source,
        )

    def __repr__(self) -> str:
        return f"Request(devices={self.devices!r}, capabilities={sorted(self.capabilities)!r}, source={self.source!r})"


def quote(value: str, limit: int = 60) -> str:
    """An untrusted value, shortened and escaped so that it is safe to print on a terminal or in a log."""
    if len(value) > limit:
        return ascii(value[:limit]) + f"... ({len(value)} characters)"
    return ascii(value)


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_VALUE_LEN:
        raise RequestError(f"{name} is {len(value)} characters long; the limit is {MAX_VALUE_LEN}")
    if not value.isascii() or not value.isprintable():
        raise RequestError(f"{name}={quote(value)} contains non-ASCII or control characters")


def _is_index(token: str) -> bool:
    # str.isdigit() alone accepts "٣" and "²"; isascii() keeps it to 0-9.
    return 0 < len(token) <= _MAX_INDEX_DIGITS and token.isascii() and token.isdigit()


def _is_uuid(token: str) -> bool:
    if not token.startswith("GPU-"):
        return False
    body = token[4:]
    return 8 <= len(body) <= 64 and all(c in _HEX or c == "-" for c in body) and not body.startswith("-")


def _device_token(name: str, token: str) -> str:
    """Normalise one list element to "all", an index or a UUID; raise RequestError otherwise."""
    if token.startswith(CDI_KIND + "="):
        token = token[len(CDI_KIND) + 1 :]
        if token == ALL:
            return ALL
    if token == ALL:
        return ALL
    if _is_index(token):
        return str(int(token))  # "007" and "7" are the same GPU
    if _is_uuid(token):
        return token
    if token.startswith("MIG-") or ":" in token:
        raise RequestError(
            f"{name}: {quote(token)} names a MIG device; gpudoctor's engine attaches whole GPUs only "
            "(use the GPU's index or UUID)"
        )
    if "/" in token and "=" in token:
        raise RequestError(
            f"{name}: {quote(token)} is a CDI device of another kind; only {CDI_KIND} is served here"
        )
    raise RequestError(
        f"{name}: {quote(token)} is not a GPU index (0, 1, ...), a GPU UUID (GPU-...), "
        f"{CDI_KIND}=<name>, all, none or void"
    )


def parse_visible_devices(value: str | None, *, name: str = VISIBLE_DEVICES) -> tuple[str, ...] | None:
    """Parse NVIDIA_VISIBLE_DEVICES. None: no request; (): none; ("all",): all; else names, deduplicated."""
    if value is None or value == "":
        return None
    _check_text(name, value)
    tokens = value.split(",")
    if VOID in tokens:
        return None
    if tokens == [NONE]:
        return ()
    out: list[str] = []
    for token in tokens:
        if token == "":
            raise RequestError(f"{name}={quote(value)} has an empty element (a stray comma)")
        if token == NONE:
            raise RequestError(f"{name}={quote(value)}: 'none' cannot be combined with devices")
        norm = _device_token(name, token)
        if norm not in out:
            out.append(norm)
    if ALL in out:
        return (ALL,)
    return tuple(out)


def parse_capabilities(value: str | None, *, name: str = DRIVER_CAPABILITIES) -> frozenset[str]:
    """Parse NVIDIA_DRIVER_CAPABILITIES; unset or empty gives utility,compute."""
    if value is None or value == "":
        return DEFAULT_CAPABILITIES
    _check_text(name, value)
    caps: set[str] = set()
    for token in value.split(","):
        if token == ALL:
            caps.update(CAPABILITIES)
        elif token in CAPABILITIES:
            caps.add(token)
        else:
            raise RequestError(
                f"{name}: {quote(token)} is not a driver capability; use all or a comma list of "
                + ", ".join(sorted(CAPABILITIES))
            )
    return frozenset(caps)


def env_values(
    env: Sequence[Any], keys: tuple[str, ...] = (VISIBLE_DEVICES, DRIVER_CAPABILITIES)
) -> dict[str, str]:
    """The values of `keys` in an OCI ``process.env`` list. Raises RequestError for a key given twice."""
    found: dict[str, str] = {}
    for entry in env:
        if not isinstance(entry, str):
            raise RequestError(f"process.env holds a {type(entry).__name__}, not a KEY=VALUE string")
        key, sep, val = entry.partition("=")
        if sep and key in keys:
            if key in found:
                raise RequestError(
                    f"{key} is set twice in the container's environment ({quote(found[key])} and {quote(val)}); "
                    "set it once"
                )
            found[key] = val
    return found


def _annotation_devices(annotations: Mapping[str, Any]) -> tuple[str, ...] | None:
    names: list[str] = []
    seen = False
    for key in sorted(annotations):
        if not key.startswith(CDI_ANNOTATION_PREFIX):
            continue
        value = annotations[key]
        if not isinstance(value, str):
            raise RequestError(f"annotation {quote(key)} is not a string")
        _check_text(f"annotation {key}", value)
        for item in value.split(","):
            if not item.startswith(CDI_KIND + "="):
                continue  # another vendor's device: not ours to attach
            seen = True
            norm = _device_token(f"annotation {key}", item)
            if norm not in names:
                names.append(norm)
    if not seen:
        return None
    return (ALL,) if ALL in names else tuple(names)


def request_from_config(env: Sequence[Any], annotations: Mapping[str, Any] | None = None) -> Request | None:
    """The GPU request of an OCI config's ``process.env`` and ``annotations``; None when there is none."""
    if annotations:
        devices = _annotation_devices(annotations)
        if devices is not None:
            return Request(devices=devices, capabilities=CAPABILITIES, source="cdi.k8s.io annotation")
    values = env_values(env)
    devices = parse_visible_devices(values.get(VISIBLE_DEVICES))
    if devices is None:
        return None
    caps = parse_capabilities(values.get(DRIVER_CAPABILITIES))
    return Request(devices=devices, capabilities=caps, source=VISIBLE_DEVICES)
