"""A sheet of an .xlsx workbook as a registrant list: the same header names, checks,
duplicates and counts as a CSV file (cells.py, registrants.unique_registrants), with each
problem at ``registrants.xlsx: Ark1!7`` where a CSV file's is at ``registrants.csv:7``.

The sheet's first row with something in it is the header; every later row with something
in it is a registrant, a duplicate, or a problem. Rows are read again on every pass (as a
CSV file's are parsed again), so no pass keeps the registrants.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from invitemail.errors import Problem, ProblemsError, SheetPlace
from invitemail.inputs.cells import check_row, header_columns
from invitemail.inputs.sources import CheckedRow, RegistrantSource
from invitemail.inputs.workbook import Sheet, SheetRow, column_letter, open_sheet


@dataclass
class SheetRegistrants(RegistrantSource):
    """A registrant list on one sheet of a workbook."""

    path: Path
    sheet: Sheet
    header: list[str]
    columns: dict[str, int]
    header_row: int  # the header's row number; the registrants are below it
    default_language: str = "da"
    local_test: bool = False
    left_out: set[str] = field(default_factory=set)
    row_word: ClassVar[str] = "row"

    @property
    def label(self) -> SheetPlace:
        return self.sheet.place

    @property
    def rows_estimate(self) -> int:
        return max(0, self.sheet.rows_estimate - self.header_row)

    def checked_rows(self) -> Iterator[CheckedRow]:
        layout, width = self.layout, len(self.header)
        for row in self.sheet.rows():
            if row.number <= self.header_row:
                continue
            problem = row.problem or _beyond_header(row, self.header)
            if problem:
                yield row.number, None, [Problem(self.label, row.number, problem)]
                continue
            cells = row.cells + [""] * (width - len(row.cells))
            checked = check_row(layout, row.number, cells)
            if checked is not None:
                yield row.number, *checked


def _beyond_header(row: SheetRow, header: list[str]) -> str:
    """What is wrong with a row that has a value in a column the header does not name."""
    extra = next((i for i in range(len(header), len(row.cells)) if row.cells[i].strip()),
                 None)
    if extra is None:
        return ""
    value = row.cells[extra].strip()
    shown = value if len(value) <= 40 else value[:37] + "..."
    return (f"has {shown!r} in column {column_letter(extra)}, which has no header: name the "
            "column in the header row, or delete the value")


def open_sheet_registrants(path: Path, sheet: str | None = None, *,
                           default_language: str = "da",
                           local_test: bool = False) -> SheetRegistrants:
    """Open the registrant list on ``sheet`` (by default the first) of the workbook at
    ``path`` and check its header. Raises a WorkbookError or :class:`ProblemsError`."""
    found = open_sheet(path, sheet)
    first = found.first
    if first is None:
        raise ProblemsError([Problem(found.place, None, "is empty")],
                            hint="put the list on this sheet with a header row such as Name, "
                            "Email" + (f", or pick its sheet with --sheet (the workbook has "
                                       f"{', '.join(map(repr, found.names))})"
                                       if len(found.names) > 1 else ""))
    header = [cell.strip() for cell in first.cells]
    if first.problem:
        raise ProblemsError([Problem(found.place, first.number, first.problem)])
    columns = header_columns(found.place, header, first.number,
                             "check that the names are in cells of their own"
                             + (" (or pick the list's sheet with --sheet)"
                                if len(found.names) > 1 else ""))
    return SheetRegistrants(path=path, sheet=found, header=header, columns=columns,
                            header_row=first.number, default_language=default_language,
                            local_test=local_test)
