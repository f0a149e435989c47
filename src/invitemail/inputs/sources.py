"""Where a registrant list comes from: the event folder's file, a CSV file (registrants.py)
or a sheet of a workbook (sheet_registrants.py), and what both give the rest of the tool:
a header, and every row checked (cells.py) with its position, on demand.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from invitemail.errors import Problem, ProblemsError
from invitemail.inputs.cells import Registrant, RowLayout, column_key
from invitemail.inputs.config import REGISTRANTS_FILE

SHEET_FILE = "registrants.xlsx"  # the event folder's list when there is no registrants.csv
SHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")  # workbooks (.xls, .ods: to say why not)

# What one row of the list became: its line (or row), the registrant (None when the row is
# not sent: a problem, or a repeated header) and its problems and warnings.
CheckedRow = tuple[int, Registrant | None, list[Problem]]


class RegistrantSource:
    """A registrant list as the rest of the tool sees it: a header, and its rows checked
    on demand, as often as asked. A CSV file (:class:`RegistrantFile`) or a sheet of a
    workbook (sheet_registrants.py) fills in where rows come from and how they are named."""

    path: Path
    header: list[str]
    columns: dict[str, int]  # canonical name or column key -> index
    default_language: str
    local_test: bool  # [smtp] host is a loopback address (addresses.py says why)
    # Addresses that a full pass found must not get a message (rows that disagree about
    # the personal join link, rows whose message cannot be built): later passes skip them.
    left_out: set[str]
    row_word: ClassVar[str] = "line"  # what a position is called in messages: "line 7"

    @property
    def label(self) -> str:
        """The list as problems name it (errors.position adds the line)."""
        raise NotImplementedError

    @property
    def rows_estimate(self) -> int:
        """About how many rows the list has, without checking them."""
        raise NotImplementedError

    def checked_rows(self) -> Iterator[CheckedRow]:
        """Each data row, checked: (line, registrant or None, problems). Blank rows are
        left out; every other row of the list is here."""
        raise NotImplementedError

    @functools.cached_property
    def field_keys(self) -> list[tuple[int, str]]:
        """(column index, template key) of every column with a usable name."""
        return [(i, key) for i, h in enumerate(self.header) if (key := column_key(h))]

    @functools.cached_property
    def layout(self) -> RowLayout:
        return RowLayout(self.label, self.header, self.columns, self.field_keys,
                         self.default_language, self.local_test)

    def rows(self) -> Iterator[Registrant | Problem]:
        """Each data row's problems and warnings, then its Registrant when it has one."""
        for _, registrant, problems in self.checked_rows():
            yield from problems
            if registrant is not None:
                yield registrant


def default_registrants(folder: Path) -> Path:
    """The event folder's list: registrants.csv, or registrants.xlsx when there is no CSV
    file. Both there is an error: which one is the list is not for the tool to guess."""
    csv_path, sheet_path = folder / REGISTRANTS_FILE, folder / SHEET_FILE
    if csv_path.exists() and sheet_path.exists():
        raise ProblemsError([Problem(str(folder), None, f"has both {REGISTRANTS_FILE} and "
                                     f"{SHEET_FILE}: which one is the list?")],
                            hint="move the one that is not the list out of the folder, or "
                            "give --registrants FILE")
    return sheet_path if sheet_path.exists() else csv_path


def is_workbook_name(path: Path) -> bool:
    """Whether ``path`` is named as a workbook (read as one, not as CSV)."""
    return path.suffix.lower() in SHEET_SUFFIXES


