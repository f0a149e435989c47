"""`status --report FILE.csv`: one row per registrant, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from invitemail.errors import InvitemailError
from invitemail.journal import Row

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("email", "line", "state", "attempts", "last_reply", "message_id", "updated_at",
           "sent_at")


def neutralise(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_report(path: Path, rows: Iterable[Row]) -> int:
    try:
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            count = 0
            for row in rows:
                writer.writerow([neutralise(v) for v in (
                    row.address, row.line, row.state.value, row.attempts, row.last_reply,
                    row.message_id, row.updated_at, row.sent_at)])
                count += 1
    except OSError as err:
        raise InvitemailError(f"{path}: cannot write the report: {err.strerror}") from None
    return count
