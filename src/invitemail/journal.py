"""The send journal: the only module that uses sqlite3.

One row per template and registrant. The state goes ``pending -> sending -> sent | failed``;
a row still ``sending`` when a run starts belongs to a run that died with the message in
flight, and becomes ``uncertain``. Each change is committed before the step that depends on
it, so a killed process leaves only the truly in-flight rows uncertain. WAL with
``synchronous=NORMAL`` survives a killed process (not a power cut) and keeps a commit at
tens of microseconds, so the journal never limits the send rate.

The journal holds addresses, states and SMTP replies: never a password, never a body.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from invitemail.errors import InvitemailError

JOURNAL_DIR = ".invitemail"
JOURNAL_FILE = "journal.sqlite"

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


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


class JournalError(InvitemailError):
    """The journal cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class Row:
    template: str
    key: str
    address: str
    line: int | None
    state: State
    attempts: int
    last_reply: str | None
    message_id: str | None
    updated_at: str
    sent_at: str | None


@dataclass(frozen=True, slots=True)
class CalendarRecord:
    """What a registrant's calendar entry last said, as sent (issue: updates follow)."""

    sequence: int
    start: str
    duration: int
    join_url: str
    password_digest: str
    template: str


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Journal:
    """The journal of one event folder."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.db = connection
        self.path = path
        self.clock = clock

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: Path, *, create: bool = True,
             clock: Callable[[], dt.datetime] = _utcnow) -> Journal | None:
        """Open (or create) ``folder/.invitemail/journal.sqlite``; None when absent and not
        ``create``."""
        directory = folder / JOURNAL_DIR
        path = directory / JOURNAL_FILE
        if not path.exists():
            if not create:
                return None
            try:
                directory.mkdir(mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as err:
                raise JournalError(f"{directory}: cannot create the journal: {err.strerror}",
                                   hint="check the folder's permissions") from None
        os.chmod(path, 0o600)
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
            for column, kind in CALENDAR_COLUMNS.items():
                if column not in have:  # a journal written by invitemail 0.1
                    db.execute(f"ALTER TABLE deliveries ADD COLUMN {column} {kind}")
            db.executescript(TRIGGER)
        except sqlite3.DatabaseError as err:
            raise JournalError(f"{path}: the journal cannot be read: {err}",
                               hint="is another invitemail running on this event? if the "
                               "file is damaged, move it away (the next run starts afresh)"
                               ) from None
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        return cls(db, path, clock)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        return self.clock().astimezone(dt.UTC).isoformat(timespec="seconds")

    # -- a run's beginning -----------------------------------------------------------------

    def recover(self) -> int:
        """Rows left ``sending`` by a run that died become ``uncertain``; returns how many."""
        cursor = self.db.execute(
            "UPDATE deliveries SET state = 'uncertain', updated_at = ?, "
            "last_reply = coalesce(last_reply, 'the run stopped while this message was in "
            "flight') WHERE state = 'sending'", (self._now(),))
        return cursor.rowcount

    def register(self, template: str, registrants: Iterable[tuple[str, str, int]]) -> int:
        """Add a ``pending`` row for each (key, address, line) not yet in the journal."""
        now = self._now()
        self.db.execute("BEGIN")
        try:
            before = self.db.total_changes
            self.db.executemany(
                "INSERT INTO deliveries (template, key, address, line, state, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT (template, key) DO UPDATE SET line = excluded.line",
                ((template, key, address, line, now, now) for key, address, line in registrants))
            added = self.db.total_changes - before
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return added

    def states(self, template: str, *, pending: bool = True) -> dict[str, State]:
        """Each registrant's state; without the ``pending`` ones when ``pending`` is false
        (a caller that reads a missing key as pending keeps far less in memory)."""
        query = "SELECT key, state FROM deliveries WHERE template = ?"
        if not pending:
            query += " AND state != 'pending'"
        return {key: State(state) for key, state in self.db.execute(query, (template,))}

    # -- a run's steps (each one commit) ---------------------------------------------------

    def mark_sending(self, template: str, key: str, message_id: str, attempt: int, *,
                     calendar: CalendarRecord | None = None) -> None:
        """The message is about to be handed over; ``calendar`` is what the registrant's
        calendar entry says once it is sent (:meth:`mark_done` makes it so)."""
        c = calendar
        self.db.execute(
            "UPDATE deliveries SET state = 'sending', message_id = ?, attempts = ?, "
            "updated_at = ?, calendar_sequence = ?, calendar_start = ?, calendar_duration = ?, "
            "calendar_join_url = ?, calendar_password_digest = ? WHERE template = ? AND key = ?",
            (message_id, attempt, self._now(), *((c.sequence, c.start, c.duration, c.join_url,
                                                   c.password_digest) if c else (None,) * 5),
             template, key))

    def mark_retrying(self, template: str, key: str, reply: str, attempt: int) -> None:
        self.db.execute(
            "UPDATE deliveries SET state = 'pending', last_reply = ?, attempts = ?, "
            "updated_at = ? WHERE template = ? AND key = ?",
            (reply, attempt, self._now(), template, key))

    def mark_pending(self, template: str, key: str) -> None:
        """Back to ``pending``: a transaction that was started but provably not delivered."""
        self.db.execute(
            "UPDATE deliveries SET state = 'pending', updated_at = ? "
            "WHERE template = ? AND key = ? AND state = 'sending'",
            (self._now(), template, key))

    def mark_done(self, template: str, key: str, state: State, reply: str,
                  attempts: int) -> None:
        """The final state of one delivery. When it is ``sent``, the calendar given to
        :meth:`mark_sending` becomes the registrant's calendar, in the same commit."""
        now = self._now()
        self.db.execute(
            "UPDATE deliveries SET state = ?, last_reply = ?, attempts = ?, updated_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
            "WHERE template = ? AND key = ?",
            (state.value, reply, attempts, now, state.value, now, template, key))

    # -- reading ---------------------------------------------------------------------------

    def counts(self, template: str) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        for state, number in self.db.execute(
                "SELECT state, count(*) FROM deliveries WHERE template = ? GROUP BY state",
                (template,)):
            counts[State(state)] = number
        return counts

    def rows(self, template: str, states: Iterable[State] | None = None) -> Iterator[Row]:
        query = ("SELECT template, key, address, line, state, attempts, last_reply, message_id, "
                 "updated_at, sent_at FROM deliveries WHERE template = ?")
        wanted = [s.value for s in states] if states is not None else None
        if wanted:
            query += f" AND state IN ({', '.join('?' * len(wanted))})"
        query += " ORDER BY line, key"
        for row in self.db.execute(query, (template, *(wanted or []))):
            yield Row(row[0], row[1], row[2], row[3], State(row[4]), *row[5:])

    def templates(self) -> list[str]:
        return [t for (t,) in self.db.execute(
            "SELECT DISTINCT template FROM deliveries ORDER BY template")]

    # -- the calendar each registrant has --------------------------------------------------

    def calendar(self, key: str) -> CalendarRecord | None:
        row = self.db.execute(
            "SELECT sequence, start, duration, join_url, password_digest, template "
            "FROM calendar WHERE key = ?", (key,)).fetchone()
        return CalendarRecord(*row) if row else None

    def calendars(self) -> dict[str, CalendarRecord]:
        return {row[0]: CalendarRecord(*row[1:]) for row in self.db.execute(
            "SELECT key, sequence, start, duration, join_url, password_digest, template "
            "FROM calendar")}

    # -- why a run stopped, and the sends that count against a daily limit ----------------
    # (A relay's quota or a blocked sender stops a run with rows pending; `status` says
    # which, and when it frees. Kept in its own table, created when first needed.)

    def _stops_table(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS run_stops (template TEXT PRIMARY KEY, reason TEXT NOT "
            "NULL, until TEXT, stopped_at TEXT NOT NULL) WITHOUT ROWID")

    def record_stop(self, template: str, reason: str | None,
                    until: dt.datetime | None = None) -> None:
        """Why the last run of ``template`` stopped early (``until``: when it may go on);
        ``reason`` None: it did not, forget an earlier stop."""
        self._stops_table()
        if reason is None:
            self.db.execute("DELETE FROM run_stops WHERE template = ?", (template,))
            return
        self.db.execute(
            "INSERT OR REPLACE INTO run_stops (template, reason, until, stopped_at) "
            "VALUES (?, ?, ?, ?)",
            (template, reason, until.astimezone(dt.UTC).isoformat(timespec="seconds")
             if until else None, self._now()))

    def last_stop(self, template: str) -> tuple[str, dt.datetime | None, dt.datetime] | None:
        """(reason, until, when) of the last early stop of ``template``, or None."""
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'run_stops'").fetchone() \
                is None:
            return None
        row = self.db.execute("SELECT reason, until, stopped_at FROM run_stops "
                              "WHERE template = ?", (template,)).fetchone()
        if row is None:
            return None
        until = dt.datetime.fromisoformat(row[1]) if row[1] else None
        return row[0], until, dt.datetime.fromisoformat(row[2])

    def sent_since(self, since: dt.datetime) -> list[dt.datetime]:
        """When each message of this event (every template) was sent after ``since``, oldest
        first."""
        cutoff = since.astimezone(dt.UTC).isoformat(timespec="seconds")
        return [dt.datetime.fromisoformat(at) for (at,) in self.db.execute(
            "SELECT sent_at FROM deliveries WHERE state = 'sent' AND sent_at > ? "
            "ORDER BY sent_at", (cutoff,))]
