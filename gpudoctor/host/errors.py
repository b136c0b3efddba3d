"""Errors raised while reading the host. Every parser failure is a ParseError that names the file."""

from __future__ import annotations


class ParseError(Exception):
    """A file could not be understood.

    `path` is the path as seen on the host (``/etc/docker/daemon.json``), never the ``--root``-prefixed
    path. `line` and `column` are 1-based when known.
    """

    def __init__(self, *, path: str, message: str, line: int | None = None, column: int | None = None) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class RootEscapeError(OSError):
    """A path under ``--root`` resolved (through symlinks) to something that cannot be represented."""
