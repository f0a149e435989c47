"""The journal on its own: a delivery's calendar follows it to ``sent`` in one statement,
and a journal written by an earlier version opens and keeps its rows."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from invitemail.journal.store import JOURNAL_DIR, JOURNAL_FILE, CalendarRecord, Journal, State

RECORD = CalendarRecord(sequence=2, start="2030-03-05T14:00:00+01:00", duration=60,
                        join_url="https://zoom.us/j/1", password_digest="abc", template="update")


def opened(folder: Path) -> Journal:
    journal = Journal.open(folder)
    assert journal is not None
    journal.register("update", [("ane@example.org", "ane@example.org", 2),
                                ("bo@example.org", "bo@example.org", 3)])
    return journal


def test_the_calendar_becomes_the_registrants_only_when_the_message_is_sent(
        tmp_path: Path) -> None:
    with opened(tmp_path) as journal:
        journal.mark_sending("update", "ane@example.org", "<1@x>", 1, calendar=RECORD)
        journal.mark_sending("update", "bo@example.org", "<2@x>", 1, calendar=RECORD)
        assert journal.calendars() == {}  # handed over is not delivered
        journal.mark_done("update", "ane@example.org", State.SENT, "250 ok", 1)
        journal.mark_done("update", "bo@example.org", State.FAILED, "550 no such user", 1)
        assert journal.calendars() == {"ane@example.org": RECORD}
        assert journal.counts("update")[State.SENT] == 1


def test_a_message_without_a_calendar_leaves_the_last_one_in_place(tmp_path: Path) -> None:
    with opened(tmp_path) as journal:
        journal.mark_sending("update", "ane@example.org", "<1@x>", 1, calendar=RECORD)
        journal.mark_done("update", "ane@example.org", State.SENT, "250 ok", 1)
        journal.register("reminder", [("ane@example.org", "ane@example.org", 2)])
        journal.mark_sending("reminder", "ane@example.org", "<3@x>", 1)
        journal.mark_done("reminder", "ane@example.org", State.SENT, "250 ok", 1)
        assert journal.calendars() == {"ane@example.org": RECORD}


def test_a_journal_from_version_0_1_opens_with_its_rows(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_DIR).mkdir()
    old = sqlite3.connect(tmp_path / JOURNAL_DIR / JOURNAL_FILE)
    old.executescript("""
        CREATE TABLE deliveries (template TEXT NOT NULL, key TEXT NOT NULL,
            address TEXT NOT NULL, line INTEGER, state TEXT NOT NULL, attempts INTEGER NOT NULL
            DEFAULT 0, last_reply TEXT, message_id TEXT, created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL, sent_at TEXT, PRIMARY KEY (template, key)) WITHOUT ROWID;
        INSERT INTO deliveries VALUES ('invitation', 'ane@example.org', 'ane@example.org', 2,
            'sent', 1, '250 ok', '<0@x>', '2030-01-01', '2030-01-01', '2030-01-01');
    """)
    old.close()
    with Journal.open(tmp_path) as journal:  # type: ignore[union-attr]
        assert journal.states("invitation") == {"ane@example.org": State.SENT}
        journal.register("update", [("ane@example.org", "ane@example.org", 2)])
        journal.mark_sending("update", "ane@example.org", "<1@x>", 1, calendar=RECORD)
        journal.mark_done("update", "ane@example.org", State.SENT, "250 ok", 1)
        assert journal.calendars() == {"ane@example.org": RECORD}


OLD_DELIVERIES = """CREATE TABLE deliveries (
    template TEXT NOT NULL, key TEXT NOT NULL, email TEXT NOT NULL, line INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_reply TEXT,
    message_id TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, sent_at TEXT,
    PRIMARY KEY (template, key)) WITHOUT ROWID"""


def test_processes_opening_an_older_journal_at_once_add_its_columns_once(
        tmp_path: Path) -> None:
    """`send` starting while `status` (or a test) opens the same journal: both find the
    columns added since the journal was written missing, and only one may add them."""
    import multiprocessing

    for attempt in range(6):
        folder = tmp_path / str(attempt)
        (folder / JOURNAL_DIR).mkdir(parents=True)
        path = folder / JOURNAL_DIR / JOURNAL_FILE
        with contextlib.closing(sqlite3.connect(path)) as old:  # as invitemail 0.1 wrote it
            old.execute("PRAGMA journal_mode=WAL")
            old.execute(OLD_DELIVERIES)
            old.commit()
        context = multiprocessing.get_context("fork")
        with context.Pool(6) as pool:
            errors = pool.map(_open_and_report, [str(path)] * 12)
        assert errors == [""] * 12
        with sqlite3.connect(path) as db:
            columns = [row[1] for row in db.execute("PRAGMA table_info(deliveries)")]
        assert len(columns) == len(set(columns))
        assert {"variant", "calendar_sequence"} <= set(columns)


def _open_and_report(path: str) -> str:
    try:
        Journal._connect(Path(path)).close()
    except Exception as error:
        return str(error)
    return ""
