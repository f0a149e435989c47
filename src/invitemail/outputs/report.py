"""`status --report FILE`: one row per registrant, safe to open in a spreadsheet.

``FILE.xlsx`` is an Excel workbook (workbook.py): a bold, frozen header row, columns wide
enough to read, numbers as numbers and every other value as text, never a formula. Any
other name is CSV, UTF-8 with a BOM; ``--excel`` puts ``;`` between the cells, as Excel set
to Danish (or any language with a decimal comma) expects when it opens a .csv file, so that
the report opens in columns. A CSV cell that starts like a formula gets a leading '
(registrants.py writes the CSV: the csv module stays there).

The report is streamed into a temporary file beside FILE and renamed onto it at the end
(files.py): 0600, and a link at FILE is replaced by the report, never written through.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from invitemail.errors import ExitCode, InvitemailError
from invitemail.inputs.registrants import FORMULA_STARTS as FORMULA_STARTS
from invitemail.inputs.registrants import neutralise as neutralise
from invitemail.inputs.registrants import write_csv
from invitemail.journal.store import Row
from invitemail.outputs.files import OutputFolder

COLUMNS = ("email", "line", "state", "attempts", "last_reply", "message_id", "updated_at",
           "sent_at")
WIDTHS = (34, 8, 12, 10, 60, 44, 22, 22)  # characters, for the workbook's columns
WORKBOOK_SUFFIXES = (".xlsx",)


class ReportOptionError(InvitemailError):
    """--report's file name and --excel do not go together."""

    exit_code = ExitCode.USAGE


def check_report_path(path: Path, *, excel: bool) -> None:
    """Refuse a report name that cannot be written as asked, before anything is read."""
    suffix = path.suffix.lower()
    if suffix in (".xls", ".xlsm", ".ods"):
        raise ReportOptionError(f"{path}: the report is written as .xlsx or .csv, not {suffix}",
                                hint=f"give --report {path.with_suffix('.xlsx')}")
    if excel and suffix in WORKBOOK_SUFFIXES:
        raise ReportOptionError(f"{path}: --excel is for a .csv report; a workbook opens in "
                                "columns anyway", hint="leave out --excel")


def _values(row: Row) -> tuple[object, ...]:
    return (row.address, row.line, row.state.value, row.attempts, row.last_reply,
            row.message_id, row.updated_at, row.sent_at)


def write_report(path: Path, rows: Iterable[Row], *, excel: bool = False) -> int:
    """Write the report to ``path``; returns the number of rows. Raises
    :class:`~invitemail.outputs.files.OutputError` when it cannot be written (nothing is left
    behind then, and a file already at ``path`` stays as it was)."""
    if path.suffix.lower() in WORKBOOK_SUFFIXES:
        from invitemail.inputs.workbook import write_workbook

        return write_workbook(path, COLUMNS, (_values(row) for row in rows), sheet="Report",
                              widths=WIDTHS)
    with OutputFolder.of_file(path) as folder, \
            folder.stream(path.name, encoding="utf-8-sig", newline="") as report:
        return write_csv(report.file, COLUMNS, (_values(row) for row in rows),
                         delimiter=";" if excel else ",")

