"""`status --report FILE.csv`: one row per registrant, safe to open in a spreadsheet.

The report is streamed into a temporary file beside FILE.csv and renamed onto it at the end
(files.py): 0600, and a link at FILE.csv is replaced by the report, never written through.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from invitemail.files import OutputFolder
from invitemail.journal import Row

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("email", "line", "state", "attempts", "last_reply", "message_id", "updated_at",
           "sent_at")


def neutralise(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_report(path: Path, rows: Iterable[Row]) -> int:
    """Write the report to ``path``; returns the number of rows. Raises
    :class:`~invitemail.files.OutputError` when it cannot be written (nothing is left
    behind then, and a file already at ``path`` stays as it was)."""
    with OutputFolder.of_file(path) as folder, \
            folder.stream(path.name, encoding="utf-8-sig", newline="") as report:
        writer = csv.writer(report.file)
        writer.writerow(COLUMNS)
        count = 0
        for row in rows:
            writer.writerow([neutralise(v) for v in (
                row.address, row.line, row.state.value, row.attempts, row.last_reply,
                row.message_id, row.updated_at, row.sent_at)])
            count += 1
    return count
