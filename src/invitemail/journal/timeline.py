"""What the journal keeps of the event's timeline, beside the deliveries.

- ``stage_skips``: a scheduled stage (a reminder) that a registrant will not get, and why
  (its window was missed; the invitation went out after it was due). Written by
  ``send --due`` so that `status` shows it and no later run sends it late.
- ``event_marks``: what happened to the event as a whole: ``rescheduled`` (an update after a
  cancellation went out: the cancellation no longer blocks), ``followup-missed``.

And the reads of the deliveries the timeline needs: when each invitation went out, and the
cancellation. The tables are created when first written (a journal of an earlier version
has none, and reads as "nothing recorded"). This module runs its SQL on the journal's own
connection, inside the journal's error guard: sqlite3 itself stays in store.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from invitemail.journal.store import Journal

SCHEMA = """
CREATE TABLE IF NOT EXISTS stage_skips (
    stage   TEXT NOT NULL,
    key     TEXT NOT NULL,
    address TEXT NOT NULL,
    reason  TEXT NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (stage, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_marks (
    kind     TEXT NOT NULL,
    at       TEXT NOT NULL,
    start    TEXT,
    sequence INTEGER
);
"""
CANCEL_TEMPLATE = "cancellation"
RESCHEDULE_STAGES = "update@rescheduled@%"  # reschedule.py's stages, as a LIKE pattern


@dataclass(frozen=True, slots=True)
class Cancellation:
    """The cancellation the journal has (sent, or possibly sent: uncertain)."""

    first_at: dt.datetime  # when the first one went out: "cancelled on"
    last_at: dt.datetime
    start: str  # the start it cancelled, as the calendar record has it (ISO)
    sequence: int  # the highest SEQUENCE it carried
    count: int


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str
    at: dt.datetime
    start: str | None
    sequence: int | None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def _has(journal: Journal, table: str) -> bool:
    with journal._guard():
        return journal.db.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                  (table,)).fetchone() is not None


def _create(journal: Journal) -> None:
    with journal._guard():
        journal.db.executescript(SCHEMA)


# -- stages skipped ------------------------------------------------------------------------


def record_skips(journal: Journal, stage: str, rows: Iterable[tuple[str, str, str]],
                 at: dt.datetime) -> None:
    """(key, address, reason) of registrants that will not get ``stage``; a registrant
    already recorded keeps its first reason."""
    _create(journal)
    when = _iso(at)
    with journal._guard(), journal.transaction():
        journal.db.executemany(
            "INSERT OR IGNORE INTO stage_skips (stage, key, address, reason, at) "
            "VALUES (?, ?, ?, ?, ?)", ((stage, k, a, r, when) for k, a, r in rows))


def skips(journal: Journal, stage: str) -> dict[str, str]:
    """key -> reason, for the registrants recorded as skipped for ``stage``."""
    if not _has(journal, "stage_skips"):
        return {}
    with journal._guard():
        return dict(journal.db.execute(
            "SELECT key, reason FROM stage_skips WHERE stage = ?", (stage,)).fetchall())


# -- the event's marks ---------------------------------------------------------------------


def record_mark(journal: Journal, kind: str, at: dt.datetime, *, start: str | None = None,
                sequence: int | None = None) -> None:
    _create(journal)
    with journal._guard():
        journal.db.execute("INSERT INTO event_marks (kind, at, start, sequence) "
                           "VALUES (?, ?, ?, ?)", (kind, _iso(at), start, sequence))


def marks(journal: Journal, kind: str) -> list[Mark]:
    """The marks of ``kind``, oldest first."""
    if not _has(journal, "event_marks"):
        return []
    with journal._guard():
        return [Mark(kind, dt.datetime.fromisoformat(at), start, sequence)
                for at, start, sequence in journal.db.execute(
                    "SELECT at, start, sequence FROM event_marks WHERE kind = ? ORDER BY at",
                    (kind,))]


# -- reads of the deliveries ---------------------------------------------------------------


def sent_times(journal: Journal, template: str) -> dict[str, dt.datetime]:
    """key -> when ``template`` was sent to that registrant (sent rows only)."""
    with journal._guard():
        return {key: dt.datetime.fromisoformat(at) for key, at in journal.db.execute(
            "SELECT key, sent_at FROM deliveries WHERE template = ? AND state = 'sent' "
            "AND sent_at IS NOT NULL", (template,))}


def any_sent(journal: Journal, templates: Iterable[str]) -> bool:
    wanted = list(templates)
    with journal._guard():
        return journal.db.execute(
            "SELECT 1 FROM deliveries WHERE state = 'sent' AND template IN "
            f"({', '.join('?' * len(wanted))}) LIMIT 1", wanted).fetchone() is not None


def cancellation(journal: Journal) -> Cancellation | None:
    """The event's cancellation, when one was sent (or may have been: uncertain, in
    flight) to anyone; None when none was."""
    with journal._guard():
        rows = journal.db.execute(
            "SELECT coalesce(sent_at, updated_at), calendar_start, calendar_sequence "
            "FROM deliveries WHERE template = ? AND state IN ('sent', 'uncertain', 'sending')",
            (CANCEL_TEMPLATE,)).fetchall()
    if not rows:
        return None
    times = [dt.datetime.fromisoformat(at) for at, _, _ in rows]
    start, sequence = max(((s or "", q or 0) for _, s, q in rows), key=lambda r: r[1])
    return Cancellation(min(times), max(times), start, sequence, len(rows))


def cancelled(journal: Journal) -> Cancellation | None:
    """The cancellation that still stands: none, or one that no reschedule has lifted. A
    reschedule's update sent after the last cancellation lifts it; read from the deliveries
    (not the marks), so a journal rebuilt from the record of sent messages agrees."""
    found = cancellation(journal)
    if found is None:
        return None
    with journal._guard():
        (latest,) = journal.db.execute(
            "SELECT max(sent_at) FROM deliveries WHERE template LIKE ? AND state = 'sent'",
            (RESCHEDULE_STAGES,)).fetchone()
    lifted = latest is not None and dt.datetime.fromisoformat(latest) >= found.last_at
    return None if lifted else found
