"""The runtime shim's settings: ``/etc/gpudoctor/runtime.toml``, or the file ``$GPUDOCTOR_RUNTIME_CONFIG`` names.

    runc = "/usr/sbin/runc"        # the real runtime (default: runc found in the usual sbin/bin dirs)
    driver_root = "/"              # where the driver's libraries and binaries live
    dev_root = "/"                 # where /dev and /proc are read (default: driver_root)
    log_file = ""                  # append one JSON line per create here ("" = no log)
    cache_dir = "/run/gpudoctor"   # the inventory cache ("" = no cache)

A missing default file means the defaults, which work on a normal host; a file named by the env variable
must exist. The file is a small TOML subset read without tomllib (whose import alone would cost the shim
~9 ms on every GPU container start): ``key = "string"`` lines, ``'literal'`` strings, comments and blank
lines. Anything else is an error that names the line, never a guess.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PATH = "/etc/gpudoctor/runtime.toml"
ENV_VAR = "GPUDOCTOR_RUNTIME_CONFIG"
DEFAULT_CACHE_DIR = "/run/gpudoctor"
RUNC_SEARCH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
KEYS = ("runc", "driver_root", "dev_root", "log_file", "cache_dir")
_MAX_BYTES = 64 * 1024
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class SettingsError(Exception):
    """runtime.toml is missing (when named explicitly), unreadable or malformed."""


class Settings:
    """The shim's settings, absolute paths after load."""

    __slots__ = ("runc", "driver_root", "dev_root", "log_file", "cache_dir", "source")

    def __init__(
        self,
        *,
        runc: str,
        driver_root: str = "/",
        dev_root: str | None = None,
        log_file: str = "",
        cache_dir: str | None = DEFAULT_CACHE_DIR,
        source: str = "(defaults)",
    ) -> None:
        self.runc = runc
        self.driver_root = driver_root
        self.dev_root = dev_root if dev_root is not None else driver_root
        self.log_file = log_file
        self.cache_dir = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir
        self.source = source

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def find_runc() -> str:
    """The first executable runc in the usual system directories (not $PATH: the daemon's may be odd)."""
    for directory in RUNC_SEARCH:
        candidate = f"{directory}/runc"
        if os.access(candidate, os.X_OK):
            return candidate
    return "/usr/sbin/runc"


def _string(raw: str, path: str, lineno: int) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        body = raw[1:-1]
        if "'" in body:
            raise SettingsError(f"{path}:{lineno}: a literal string cannot contain '")
        return body
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        out: list[str] = []
        body = raw[1:-1]
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == '"':
                raise SettingsError(f'{path}:{lineno}: unescaped " inside a string')
            if ch == "\\":
                nxt = body[i + 1 : i + 2]
                if nxt not in _ESCAPES:
                    raise SettingsError(f"{path}:{lineno}: unsupported escape \\{nxt}")
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    raise SettingsError(f'{path}:{lineno}: the value must be a quoted string, e.g. key = "/usr/sbin/runc"')


def parse_settings_text(text: str, *, path: str) -> dict[str, str]:
    """The key/value pairs of a runtime.toml. Raises SettingsError for anything outside the subset."""
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        if not sep:
            raise SettingsError(f'{path}:{lineno}: expected key = "value", got {stripped[:60]!r}')
        if key not in KEYS:
            raise SettingsError(f"{path}:{lineno}: unknown setting {key[:40]!r}; known: {', '.join(KEYS)}")
        if key in values:
            raise SettingsError(f"{path}:{lineno}: {key} is set twice")
        rest = rest.strip()
        # A trailing comment after a closing quote.
        for quote_char in ('"', "'"):
            if rest.startswith(quote_char):
                end = rest.rfind(quote_char)
                tail = rest[end + 1 :].strip()
                if end > 0 and tail.startswith("#"):
                    rest = rest[: end + 1]
        values[key] = _string(rest, path, lineno)
    return values


def _absolute(values: Mapping[str, str], key: str, path: str, *, allow_empty: bool = False) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if value == "" and allow_empty:
        return ""
    if not value.startswith("/") or "\0" in value:
        raise SettingsError(f"{path}: {key} must be an absolute path, got {value[:80]!r}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file (see the module doc). Raises SettingsError."""
    env = os.environ if environ is None else environ
    named = env.get(ENV_VAR)
    path = named or DEFAULT_PATH
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        if named:
            raise SettingsError(f"{path} (named by ${ENV_VAR}) does not exist") from None
        return Settings(runc=find_runc())
    except OSError as exc:
        raise SettingsError(f"cannot open {path}: {exc.strerror}") from None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SettingsError(f"{path} is not a regular file")
        data = os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        raise SettingsError(f"{path} is larger than {_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    values = parse_settings_text(text, path=path)
    driver_root = _absolute(values, "driver_root", path) or "/"
    return Settings(
        runc=_absolute(values, "runc", path) or find_runc(),
        driver_root=driver_root,
        dev_root=_absolute(values, "dev_root", path) or driver_root,
        log_file=_absolute(values, "log_file", path, allow_empty=True) or "",
        cache_dir=_absolute(values, "cache_dir", path, allow_empty=True) if "cache_dir" in values else None,
        source=path,
    )


def render_settings(settings: Settings) -> str:
    """runtime.toml text for `settings` (what install and the tests write)."""

    def q(value: str) -> str:
        out = value.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + out.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'

    return (
        "# gpudoctor-runtime settings (see gpudoctor/engine/settings.py)\n"
        f"runc = {q(settings.runc)}\n"
        f"driver_root = {q(settings.driver_root)}\n"
        f"dev_root = {q(settings.dev_root)}\n"
        f"log_file = {q(settings.log_file)}\n"
        f"cache_dir = {q(settings.cache_dir)}\n"
    )
