"""The send journal: the Journal of one event folder, and the only module that reads and
writes its rows (migrations.py opens the file and brings its schema up to date; states.py
has the values it holds).

One row per template and registrant. The state goes ``pending -> sending -> sent | failed``;
a row still ``sending`` when a run starts belongs to a run that died with the message in
flight, and becomes ``uncertain``. Each change is committed before the step that depends on
it, so a killed process leaves only the truly in-flight rows uncertain. WAL with
``synchronous=NORMAL`` survives a killed process (not a power cut) and keeps a commit at
tens of microseconds, so the journal never limits the send rate.

The journal knows which event it belongs to and has an id of its own (the ``meta`` table):
ledger.py compares both with the record of what was sent, kept outside the event folder, so
that a journal deleted, emptied or replaced is noticed instead of mailing everyone again.
A row is claimed atomically (``UPDATE ... WHERE state IN (...)``, checked by its row count),
so no code path hands one registrant to two transactions. Every sqlite3 error becomes a
:class:`JournalError` that names the file and says what to do.

The journal holds addresses, states and SMTP replies: never a password, never a body.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from invitemail.clock import utcnow as _utcnow
from invitemail.journal.batches import RUN_CHECKPOINT, STEPS, Batching
from invitemail.journal.errors import (
    CANTOPEN,
    READONLY,
    ClaimError,
    ForeignJournal,
    JournalDamaged,
    JournalError,
    JournalFull,
    os_error,
    sqlite_error,
)
from invitemail.journal.location import (
    JOURNAL_DIR,
    JOURNAL_FILE,
    journal_path,
    prepare_journal_file,
)
from invitemail.journal.migrations import connect
from invitemail.journal.provenance import Provenance
from invitemail.journal.states import CalendarRecord, Identity, Row, State, new_journal_id
from invitemail.journal.stops import Stops

# The errors live in errors.py, the values in states.py, where the journal's file lives in
# location.py; they are the journal's, so they are importable here.
__all__ = ["JOURNAL_DIR", "JOURNAL_FILE", "RUN_CHECKPOINT", "CalendarRecord", "ClaimError",
           "ForeignJournal", "Identity", "Journal", "JournalDamaged", "JournalError",
           "JournalFull", "Row", "State", "new_journal_id"]



def journal_error(err: sqlite3.Error | OSError, path: Path) -> JournalError:
    """The JournalError for an error of sqlite3 (or the file system) with the journal at
    ``path`` (errors.py has the sentences)."""
    if isinstance(err, OSError):
        return os_error(err, path)
    return sqlite_error((getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF,
                        getattr(err, "sqlite_errorname", "") or "", str(err), path)



class Journal(Provenance, Batching, Stops):
    """The journal of one event folder. Which event it belongs to, and the rows the ledger
    knows, are :class:`~invitemail.journal.provenance.Provenance`'s methods; how a run's
    steps are written (the run log, batches) is :class:`~invitemail.journal.batches.
    Batching`'s; why a run stopped, and the sends a daily limit counts, are
    :class:`~invitemail.journal.stops.Stops`'."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.db = connection
        self.path = path
        self.clock = clock
        # Why a dead run's steps (in its run log) could not be applied when this opened (a
        # full disk, a damaged log): the journal is then read only, and a write says this.
        self.stuck: JournalError | None = None
        self._second: dt.datetime | None = None  # _now's last second, and its text
        self._unix = -1
        self._stamp = ""

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Every use of the journal: the run's steps that wait are applied first (so every
        read sees them), and every sqlite3 error becomes a JournalError naming the file."""
        try:
            batch = self._batch
            if batch is not None and (batch.waiting or batch.behind is not None):
                self._apply_waiting()  # the thread's batch in too: a read sees every step
            yield
        except sqlite3.Error as err:
            if self.stuck is not None and _read_only(err):
                raise self.stuck from None
            raise journal_error(err, self.path) from None

    def _copy(self) -> sqlite3.Connection:
        copy = sqlite3.connect(":memory:", isolation_level=None)
        try:
            with self._raw():
                self.db.backup(copy)
        except BaseException:
            copy.close()
            raise
        return copy

    @contextlib.contextmanager
    def _raw(self) -> Iterator[None]:
        """sqlite3's errors as JournalErrors, without applying what waits (batches.py)."""
        try:
            yield
        except sqlite3.Error as err:
            raise journal_error(err, self.path) from None

    def _error(self, err: Exception) -> JournalError:
        if isinstance(err, JournalError):
            return err
        if isinstance(err, sqlite3.Error | OSError):
            return journal_error(err, self.path)
        raise err

    def _os_error(self, err: OSError, path: Path) -> JournalError:
        """An error of a file beside the journal (its run log). A full disk is the
        journal's disk: the sentence names the file the user knows."""
        full = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        return journal_error(err, self.path if full else path)

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def path_in(folder: Path) -> Path:
        return journal_path(folder)

    @classmethod
    def open(cls, folder: Path, *, create: bool = True, event_uid: str | None = None,
             clock: Callable[[], dt.datetime] = _utcnow) -> Journal | None:
        """Open (or create) ``folder/.invitemail/journal.sqlite``; None when absent and not
        ``create``. With ``event_uid``, a journal of another event raises ForeignJournal."""
        path = prepare_journal_file(folder, create=create)
        if path is None:
            return None
        try:
            journal = cls(cls._connect(path), path, clock)
        except sqlite3.Error as err:
            if create or not _read_only(err):
                raise journal_error(err, path) from None
            journal = cls(cls._connect(path, read_only=True), path, clock)  # e.g. `status`
        else:  # a run that died left steps in its run log: they are the journal's
            try:
                journal.take_leftover()
            except BaseException:
                journal.close()
                raise
        if event_uid is not None:
            identity = journal.identity()
            if identity is not None and identity.event_uid != event_uid:
                journal.close()
                raise ForeignJournal(path, identity.event_uid)
        return journal

    @staticmethod
    def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
        return connect(path, read_only=read_only)

    def close(self) -> None:
        """Apply the run's last steps (the run log goes), and close."""
        try:
            self._end_run()
        finally:
            with self._raw():
                self.db.close()
                if self._file is not None:
                    self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        """The clock's time in UTC, to the second (a run asks twice per message: the text is
        made once per second; with the wall clock itself, read through time.time)."""
        if self.clock is _utcnow:
            second = int(time.time())
            if second != self._unix:
                self._unix = second
                self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).isoformat()
            return self._stamp
        now = self.clock().astimezone(dt.UTC).replace(microsecond=0)
        if now != self._second:
            self._second, self._stamp = now, now.isoformat()
        return self._stamp

    def now_text(self) -> str:
        """What :meth:`_now` says: the time the journal stamps its rows with now."""
        return self._now()

    # -- many steps in one commit ----------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Many statements in one commit."""
        if self.stuck is not None:
            raise self.stuck
        with self._guard():
            self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            with self._guard():
                self.db.execute("ROLLBACK")
            raise
        with self._guard():
            self.db.execute("COMMIT")

    # -- a run's beginning -----------------------------------------------------------------

    def recover(self) -> int:
        """Rows left ``sending`` by a run that died become ``uncertain``; returns how many.
        Only a run that holds the folder's lock may call this (folderlock.py)."""
        with self._guard():
            cursor = self.db.execute(
                "UPDATE deliveries SET state = 'uncertain', updated_at = ?, "
                "last_reply = coalesce(last_reply, 'the run stopped while this message was in "
                "flight') WHERE state = 'sending'", (self._now(),))
        return cursor.rowcount

    def register(self, template: str, registrants: Iterable[tuple[str, str, int]]) -> int:
        """Add a ``pending`` row for each (key, address, line) not yet in the journal."""
        now = self._now()
        with self._guard(), self.transaction():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT INTO deliveries (template, key, address, line, state, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT (template, key) DO UPDATE SET line = excluded.line",
                ((template, key, address, line, now, now) for key, address, line in registrants))
            return self.db.total_changes - before

    def states(self, template: str, *, pending: bool = True) -> dict[str, State]:
        """Each registrant's state; without the ``pending`` ones when ``pending`` is false
        (a caller that reads a missing key as pending keeps far less in memory)."""
        query = "SELECT key, state FROM deliveries WHERE template = ?"
        if not pending:
            query += " AND state != 'pending'"
        with self._guard():
            return {key: State(state) for key, state in self.db.execute(query, (template,))}

    # -- a run's steps (each one commit) ---------------------------------------------------

    def mark_sending(self, template: str, key: str, message_id: str, attempt: int, *,
                     calendar: CalendarRecord | None = None,
                     claimable: Iterable[State] = (State.PENDING,),
                     variant: str | None = None) -> None:
        """Claim the row: the message is about to be handed over. Only a row in one of the
        ``claimable`` states is claimed (one statement, checked by its row count), so no two
        transactions ever hold one registrant; ClaimError when it is not.

        ``calendar`` is what the registrant's calendar entry says once it is sent
        (:meth:`mark_done` makes it so). ``variant``: the template rendered, when it is not
        ``template`` (a follow-up's thanks or missed)."""
        c = calendar
        params = (message_id, attempt, self._now(),
                  *((c.sequence, c.start, c.duration, c.join_url, c.password_digest)
                    if c else (None,) * 5), variant, template, key)
        if self._batch is not None:  # a run: checked here, written to the run log
            state = self._state_now(template, key)
            if state is not None and state in claimable:
                self._step("sending", params, (template, key), State.SENDING)
                return
        else:
            wanted = [s.value for s in claimable]
            with self._guard():
                cursor = self.db.execute(
                    f"{STEPS['sending']} AND state IN ({', '.join('?' * len(wanted))})",
                    (*params, *wanted))
                if cursor.rowcount == 1:
                    return
                row = self.db.execute("SELECT state FROM deliveries WHERE template = ? "
                                      "AND key = ?", (template, key)).fetchone()
            state = State(row[0]) if row else None
        now = f"it is {state.value!r}" if state else "it is not in the journal"
        raise ClaimError(f"{self.path}: {template} for {key} cannot be claimed for sending: "
                         f"{now}; something else is sending from this event folder",
                         hint="this run stopped without sending that message; run `invitemail "
                         "status` and then the same command again")

    def mark_retrying(self, template: str, key: str, reply: str, attempt: int) -> None:
        self._step("retrying", (reply, attempt, self._now(), template, key), (template, key),
                   State.PENDING)

    def mark_pending(self, template: str, key: str) -> None:
        """Back to ``pending``: a transaction that was started but provably not delivered."""
        self._step("pending", (self._now(), template, key), (template, key), State.PENDING)

    def mark_done(self, template: str, key: str, state: State, reply: str,
                  attempts: int) -> None:
        """The final state of one delivery. When it is ``sent``, the calendar given to
        :meth:`mark_sending` becomes the registrant's calendar, in the same commit."""
        now, value = self._now(), state.value
        self._step("done", (value, reply, attempts, now, value, now, template, key),
                   (template, key), state)

    # -- reading ---------------------------------------------------------------------------

    def counts(self, template: str) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        with self._guard():
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
        with self._guard():
            for row in self.db.execute(query, (template, *(wanted or []))):
                yield Row(row[0], row[1], row[2], row[3], State(row[4]), *row[5:])

    def variants(self, template: str) -> dict[str, str]:
        """The template each registrant's message of ``template`` was rendered from, where
        it was another (a follow-up's thanks or missed), by key."""
        with self._guard():
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(deliveries)")}
            if "variant" not in columns:  # an older journal opened read-only
                return {}
            return dict(self.db.execute(
                "SELECT key, variant FROM deliveries WHERE template = ? AND variant IS NOT NULL",
                (template,)))

    def templates(self) -> list[str]:
        with self._guard():
            return [t for (t,) in self.db.execute(
                "SELECT DISTINCT template FROM deliveries ORDER BY template")]

    # -- the calendar each registrant has --------------------------------------------------

    def calendars(self) -> dict[str, CalendarRecord]:
        with self._guard():
            return {row[0]: CalendarRecord(*row[1:]) for row in self.db.execute(
                "SELECT key, sequence, start, duration, join_url, password_digest, template "
                "FROM calendar")}


def _read_only(err: sqlite3.Error) -> bool:
    code = (getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF
    return code in (READONLY, CANTOPEN)
