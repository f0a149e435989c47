"""One base error for everything a user can fix, and the exit codes of product.md.

Every error the library raises on purpose is an :class:`InvitemailError`. Its text says what
is wrong, where (``file:line``, a key, ``host:port``) and, in ``hint``, what to do next. The
CLI prints it and exits with ``exit_code``; nothing else turns into a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """The exit codes product.md promises."""

    OK = 0
    INPUT = 1  # a problem with input, settings, templates or the connection; nothing sent
    USAGE = 2  # wrong usage
    PARTIAL = 3  # some sent, not all: rerunning continues


class InvitemailError(Exception):
    """A problem the user can fix. ``str(err)`` is the sentence to show."""

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(InvitemailError):
    """event.toml is missing, unreadable or has a wrong value."""

    def __init__(self, path: Path | str, message: str, *, key: str | None = None,
                 hint: str | None = None) -> None:
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = str(path)
        self.key = key


class SheetPlace(str):
    """A sheet of a workbook as the place of a problem: ``registrants.xlsx: Ark1``. Its rows
    are named as a spreadsheet names them, ``registrants.xlsx: Ark1!7``, where a text
    file's lines are ``registrants.csv:7``."""

    __slots__ = ()


def position(path: str, line: int | None) -> str:
    """``path:line``, ``workbook: sheet!row``, or ``path`` alone when there is no line."""
    if line is None:
        return path
    return f"{path}!{line}" if isinstance(path, SheetPlace) else f"{path}:{line}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or worth a warning) with one place in an input file."""

    path: str
    line: int | None
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = position(self.path, self.line)
        kind = "warning: " if self.warning else ""
        return f"{where}: {kind}{self.message}"


class ProblemsError(InvitemailError):
    """Several problems found at once (every bad row, not just the first)."""

    def __init__(self, problems: list[Problem], *, hint: str | None = None) -> None:
        errors = [p for p in problems if not p.warning]
        text = "\n".join(str(p) for p in problems)
        if len(errors) > 1:
            text += f"\n{len(errors)} problems found."
        super().__init__(text, hint=hint)
        self.problems = problems


class TemplateError(InvitemailError):
    """A template does not exist, does not parse, or fails for a registrant."""
