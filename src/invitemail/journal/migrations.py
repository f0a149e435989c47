"""Opening the journal's file, and bringing its schema up to date: the tables, the columns
added since the first release, and the trigger that keeps each registrant's calendar.

The second module that imports sqlite3 (store.py is the other): the schema is made where the
connection is opened, so that no code ever holds a connection to an older schema. store.py
calls :func:`connect` and turns any sqlite3 error it raises into a JournalError; everything
else the journal does with its rows is store.py's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    template    TEXT NOT NULL,
    key         TEXT NOT NULL,
    address     TEXT NOT NULL,
    line        INTEGER,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed',
                                               'uncertain')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_reply  TEXT,
    message_id  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    sent_at     TEXT,
    calendar_sequence INTEGER,
    calendar_start    TEXT,
    calendar_duration INTEGER,
    calendar_join_url TEXT,
    calendar_password_digest TEXT,
    PRIMARY KEY (template, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calendar (
    key         TEXT PRIMARY KEY,
    sequence    INTEGER NOT NULL,
    start       TEXT NOT NULL,
    duration    INTEGER NOT NULL,
    join_url    TEXT NOT NULL,
    password_digest TEXT NOT NULL,
    template    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;
"""

# The calendar a message carries is written with its ``sending`` state; when the message is
# ``sent`` it becomes the registrant's calendar in the same statement (one commit, no window
# in which the delivery says sent and the calendar does not).
CALENDAR_COLUMNS = {"calendar_sequence": "INTEGER", "calendar_start": "TEXT",
                    "calendar_duration": "INTEGER", "calendar_join_url": "TEXT",
                    "calendar_password_digest": "TEXT"}
# Columns added after the first release, each NULL in an older journal's rows: which
# template a follow-up rendered for the registrant (thanks, missed).
LATER_COLUMNS = {"variant": "TEXT"}
TRIGGER = """
CREATE TRIGGER IF NOT EXISTS calendar_follows_sent AFTER UPDATE OF state ON deliveries
WHEN new.state = 'sent' AND old.state != 'sent' AND new.calendar_sequence IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO calendar (key, sequence, start, duration, join_url,
                                     password_digest, template, updated_at)
    VALUES (new.key, new.calendar_sequence, new.calendar_start, new.calendar_duration,
            new.calendar_join_url, new.calendar_password_digest, new.template,
            new.updated_at);
END;
"""


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to the journal at ``path``: WAL mode, the schema up to date, the file and
    its -wal and -shm beside it readable by the owner only. ``read_only``: the file as it is."""
    if read_only:  # a read-only file or disk: nobody can write it, so it cannot change
        db = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True,
                             isolation_level=None)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    with contextlib.suppress(OSError):  # a read-only disk: the writes below say so
        os.chmod(path, 0o600)
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        add_later_columns(db)
        db.executescript(TRIGGER)
    except BaseException:
        db.close()
        raise
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if side.exists():
                os.chmod(side, 0o600)
    return db


def add_later_columns(db: sqlite3.Connection) -> None:
    """Give a journal written by an earlier version the columns added since. Two
    processes may open one journal at once (a `send` starting, a `status` beside it):
    the columns are looked at again under the write lock, so only one adds them."""
    wanted = {**CALENDAR_COLUMNS, **LATER_COLUMNS}

    def missing() -> list[str]:
        have = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
        return [column for column in wanted if column not in have]

    if not missing():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for column in missing():
            db.execute(f"ALTER TABLE deliveries ADD COLUMN {column} {wanted[column]}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
