"""A run's steps in the journal: each state change on disk at once (the run log), in SQLite
in batches.

The part of the :class:`~invitemail.journal.store.Journal` that writes a run's steps. Outside
a run (:meth:`Batching.for_a_run` not called) each step is its own commit, as before. In a
run each step is one line of the run log (runlog.py), written before the call returns, and
the waiting lines go to SQLite in one commit when :data:`BATCH` of them wait, or when the
last commit is :data:`APPLY_AFTER` seconds old: on a thread of the journal's own, with a
connection of its own (sqlite3 lets go of the GIL while SQLite works), so that the event
loop goes on meanwhile; and before any other use of the journal, and when it closes, on
the journal's connection, after the thread's batch. A run's claim of a row is checked
against the row's state as the journal and the lines not yet applied say, so no
registrant is handed to two transactions either way.

sqlite3 is used through the Journal's connection (store.py opens it); every sqlite3 error
becomes a JournalError there.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from invitemail.journal.coalesce import CLAIMED, CLAIMED_DONE, coalesced
from invitemail.journal.errors import JournalError
from invitemail.journal.migrations import connect
from invitemail.journal.part import JournalPart
from invitemail.journal.runlog import Change, Param, RunLog, leftover, read, run_log_path
from invitemail.journal.states import State

if TYPE_CHECKING:
    import sqlite3

# The statement of each step (the run log's kinds): each sets one row, and applied in order
# they leave the rows as the steps did one commit each (the guards in them included).
STEPS: dict[str, str] = {
    "sending": "UPDATE deliveries SET state = 'sending', message_id = ?, attempts = ?, "
               "updated_at = ?, calendar_sequence = ?, calendar_start = ?, "
               "calendar_duration = ?, calendar_join_url = ?, calendar_password_digest = ?, "
               "variant = ? WHERE template = ? AND key = ?",
    "done": "UPDATE deliveries SET state = ?, last_reply = ?, attempts = ?, updated_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
            "WHERE template = ? AND key = ?",
    "retrying": "UPDATE deliveries SET state = 'pending', last_reply = ?, attempts = ?, "
                "updated_at = ? WHERE template = ? AND key = ? AND state != 'sent'",
    "pending": "UPDATE deliveries SET state = 'pending', updated_at = ? "
               "WHERE template = ? AND key = ? AND state = 'sending'",
}
MARKER = "run_log"  # in the meta table: "<log id> <last line applied>"

# Steps per commit, at most (about 1,000 messages). A run sends in the list's order, and the
# rows sit in the order of their keys, so a batch's steps touch pages all over the table:
# each commit writes most of what it touches to the WAL again. Fewer, larger commits write
# less; what is still waiting when the run ends is applied before it exits.
BATCH = 2048
RUN_CHECKPOINT = 5000  # WAL pages between checkpoints while a run sends: about 20 MB
APPLY_AFTER = 0.5  # seconds: a step waits no longer when the next one comes
# KiB of page cache for the batches' connection (SQLite's default is 2,000): the pages a
# batch touches stay read for the next one (a 10,000-row journal is about 7 MB).
RUN_CACHE_KIB = 8192


Steps = list[tuple[str, Sequence[Param]]]


class _Batch:
    """The steps of this run not yet in SQLite: those that wait, and the batch a thread of
    its own applies (``behind``) through a connection of its own, while the run goes on."""

    def __init__(self, log: RunLog, path: Path) -> None:
        self.log = log
        self.path = path
        self.waiting: Steps = []
        self.applied_at = time.monotonic()
        self.behind: Future[None] | None = None
        self.behind_steps: Steps = []
        self.failed: JournalError | None = None  # the file could not take a batch
        # Every row's state by template, read at the run's first claim of that template and
        # kept up to date by its steps: what a claim is checked against.
        self.known: dict[str, dict[str, State]] = {}
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="invitemail-journal")
        self.connection: sqlite3.Connection | None = None  # the thread's

    def apply(self, steps: Steps, log_id: str, last: int) -> None:
        """On the thread: ``steps`` and the marker in one commit, on its own connection."""
        if self.connection is None:
            self.connection = connect(self.path)
            self.connection.execute(f"PRAGMA wal_autocheckpoint = {RUN_CHECKPOINT}")
            self.connection.execute(f"PRAGMA cache_size = -{RUN_CACHE_KIB}")
        commit(self.connection, steps, log_id, last)

    def stop(self) -> None:
        """Close the thread's connection (on the thread) and end the thread."""
        with contextlib.suppress(Exception):  # sqlite3.Error: nothing is left to write
            self.thread.submit(self._close).result()
        self.thread.shutdown(wait=True)

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _state_after(kind: str, before: State, state: State) -> State:
    """A row's state after a step that sets ``state``, as its statement (STEPS) leaves it:
    a retry does not touch a ``sent`` row, a step back to ``pending`` only a ``sending`` one."""
    if kind == "retrying" and before is State.SENT:
        return before
    if kind == "pending" and before is not State.SENDING:
        return before
    return state


def apply_steps(db: sqlite3.Connection, steps: Iterable[tuple[str, Sequence[Param]]]) -> None:
    """``steps``' statements on ``db``, in order, a message's claim and final state as one
    (coalesce.py); sqlite3's errors as they come."""
    for kind, group in itertools.groupby(coalesced(steps), key=lambda step: step[0]):
        db.executemany(CLAIMED_DONE if kind == CLAIMED else STEPS[kind],
                       (params for _, params in group))


def commit(db: sqlite3.Connection, steps: Iterable[tuple[str, Sequence[Param]]],
           log_id: str, last: int) -> None:
    """``steps`` in order and the marker (the log's line ``last``), in one commit on ``db``;
    sqlite3's errors as they come. A message's claim and final state go as one statement
    (coalesce.py)."""
    db.execute("BEGIN")
    try:
        apply_steps(db, steps)
        db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                   (MARKER, f"{log_id} {last}"))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class Batching(JournalPart):
    """Writing a run's steps: through the run log in a run, one commit each otherwise. (The
    Journal's ``_guard`` applies the waiting steps before any use of the file.)"""

    path: Path
    stuck: JournalError | None
    _batch: _Batch | None = None
    _file: sqlite3.Connection | None = None  # the file's connection, when ``db`` is a copy

    def _raw(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # the Journal's: errors converted, nothing applied

    # -- a run -----------------------------------------------------------------------------

    def for_a_run(self) -> None:
        """From now until :meth:`close`, each step goes to the run log at once and to SQLite
        in batches; and the WAL is checkpointed every ``RUN_CHECKPOINT`` pages rather than
        sqlite's 1000 (each checkpoint waits for the disk twice, and the run's event loop
        with it). Call it holding the event folder's lock."""
        if self.stuck is not None:  # read only: a dead run's steps could not be applied
            raise self.stuck
        with self._guard():
            self.db.execute(f"PRAGMA wal_autocheckpoint = {RUN_CHECKPOINT}")
        if self._batch is not None:
            return
        directory = self.path.parent
        try:
            try:
                log = RunLog.start(directory)
            except FileExistsError:  # a dead run's, not applied yet: apply it, start anew
                self.take_leftover()
                if self.stuck is not None:
                    raise self.stuck from None
                log = RunLog.start(directory)
        except FileExistsError:
            raise JournalError(f"{run_log_path(directory)}: another process is sending from "
                               "this event folder", hint="wait for it to finish, then run "
                               "the same command again") from None
        except OSError as err:
            raise self._os_error(err, run_log_path(directory)) from None
        self._batch = _Batch(log, self.path)

    @property
    def waiting(self) -> int:
        """Steps of this run written to the run log and not yet to SQLite."""
        return len(self._batch.waiting) if self._batch is not None else 0

    def _step(self, kind: str, params: Sequence[Param], row: tuple[str, str],
              state: State) -> None:
        batch = self._batch
        if batch is None:
            with self._guard():
                self.db.execute(STEPS[kind], params)
            return
        if batch.failed is not None and kind == "sending":
            raise batch.failed  # no claim once the journal's file cannot be written
        try:  # a claim is written at once; the others may go with the next write
            batch.log.append(kind, params, defer=kind != "sending")
        except OSError as err:
            raise self._os_error(err, batch.log.path) from None
        batch.waiting.append((kind, params))
        known = batch.known.get(row[0])
        if known is not None and row[1] in known:  # as the step's statement leaves the row
            known[row[1]] = _state_after(kind, known[row[1]], state)
        if batch.failed is not None:  # the step is on record; the run stops now
            raise batch.failed
        if len(batch.waiting) >= BATCH or time.monotonic() - batch.applied_at >= APPLY_AFTER:
            try:
                self._hand_over(batch)
            except JournalError as err:  # this step is on record: the next one says it
                batch.failed = err

    def flush_log(self) -> None:
        """Write the run's deferred steps to the run log now (the run calls this before its
        event loop waits again: a finished message is on record at once, in one write with
        the others finished meanwhile)."""
        batch = self._batch
        if batch is not None:
            try:
                batch.log.flush()
            except OSError as err:
                raise self._os_error(err, batch.log.path) from None

    def _hand_over(self, batch: _Batch) -> None:
        """The waiting steps to the journal's thread (after the batch before them is in)."""
        self.flush_log()  # the file never holds a step the log has not
        self._wait_behind(batch)
        steps, batch.waiting = batch.waiting, []
        batch.behind_steps = steps
        batch.behind = batch.thread.submit(batch.apply, steps, batch.log.log_id,
                                           batch.log.seq)
        batch.applied_at = time.monotonic()

    def _wait_behind(self, batch: _Batch) -> None:
        """Until the thread's batch is in the journal's file. When it failed, its steps wait
        again (first, in order) and its error is raised."""
        behind, batch.behind = batch.behind, None
        if behind is None:
            return
        try:
            behind.result()
        except Exception as err:  # sqlite3.Error, OSError: the Journal's sentence for it
            batch.waiting = [*batch.behind_steps, *batch.waiting]
            raise self._error(err) from None
        finally:
            batch.behind_steps = []

    def _state_now(self, template: str, key: str) -> State | None:
        """A row's state as this run has left it: as the journal had it when the run first
        claimed a row of ``template``, changed by the run's own steps since (None: not in
        the journal). Read once, not per claim: while the journal's thread writes, each read
        of the file costs a look at the WAL's new pages."""
        batch = self._batch
        assert batch is not None, "claims are checked so in a run only"
        known = batch.known.get(template)
        if known is None:
            with self._guard():  # every step before in the file first
                known = batch.known[template] = {
                    k: State(s) for k, s in self.db.execute(
                        "SELECT key, state FROM deliveries WHERE template = ?", (template,))}
        return known.get(key)

    def _apply_waiting(self) -> None:
        """Every step of the run in the journal's file now."""
        batch = self._batch
        if batch is None:
            return
        self._wait_behind(batch)
        if batch.waiting:
            self.flush_log()
            self._commit(batch.waiting, batch.log.log_id, batch.log.seq)
            batch.waiting = []
            batch.applied_at = time.monotonic()

    def _end_run(self) -> None:
        """Apply what waits and remove the run log. Steps that cannot be applied now (a full
        disk) stay in the log, where they are safe: the next process that opens the journal
        applies them, and no write is let through before (store.py's ``stuck``)."""
        batch = self._batch
        if batch is None:
            return
        try:
            self._apply_waiting()
        except JournalError:
            batch.log.leave()
            return
        finally:
            self._batch = None
            batch.stop()
        batch.log.finish()

    # -- a run log found when the journal opens -------------------------------------------

    def take_leftover(self) -> None:
        """Apply the steps a dead run left in its run log (those after the marker), and
        remove it. When that cannot be done now (a full disk), or when a run is writing the
        log now, this journal reads a copy in memory with the log's steps applied, so that
        it reads what the journal will say; every write then raises why (``stuck``)."""
        directory = self.path.parent
        try:
            left = leftover(directory)
        except OSError as err:
            raise self._os_error(err, run_log_path(directory)) from None
        if left is None:
            return
        if left.live:
            self._read_live(left.path)
            return
        try:
            steps = self._after_marker(self.db, left.log_id, left.changes)
            try:
                if steps:
                    self._commit(steps, left.log_id, left.changes[-1].seq)
            except JournalError as err:
                self._view(steps, why=err)
                return
            left.remove()
        finally:
            left.close()

    def _read_live(self, path: Path) -> None:
        """A copy of the file first, then the log (it only grows, and its run applies lines
        to the file only after writing them); a log gone meanwhile was all applied."""
        try:
            found = read(path)
            if found is None:
                return
            log_id, changes = found
        except OSError as err:
            raise self._os_error(err, path) from None
        why = JournalError(f"{path.parent.parent}: a send from this event folder is running",
                           hint="wait for it to finish, then run the same command again")
        self._view(self._after_marker(self.db, log_id, changes), why=why)

    def _after_marker(self, db: sqlite3.Connection, log_id: str,
                      changes: list[Change]) -> list[tuple[str, Sequence[Param]]]:
        """The steps of log ``log_id`` that ``db`` has not applied (its marker says)."""
        with self._raw():
            found = db.execute("SELECT value FROM meta WHERE name = ?", (MARKER,)).fetchone()
        marked, _, seq = str(found[0]).partition(" ") if found else ("", "", "0")
        done = int(seq) if marked == log_id and seq.isdigit() else 0
        return [(c.kind, c.params) for c in changes if c.seq > done]

    def _view(self, steps: Sequence[tuple[str, Sequence[Param]]], *, why: JournalError) -> None:
        """Read from now on a copy in memory of the file with ``steps`` applied; writes
        raise ``why``."""
        copy = self._copy()
        try:
            with self._raw():
                apply_steps(copy, steps)
                copy.execute("PRAGMA query_only = ON")
        except BaseException:
            copy.close()
            raise
        self._file, self.db = self.db, copy
        self.stuck = why

    def _copy(self) -> sqlite3.Connection:
        raise NotImplementedError  # the Journal's: the file's content, in memory

    def _commit(self, steps: Iterable[tuple[str, Sequence[Param]]], log_id: str,
                last: int) -> None:
        """``steps`` in order and the marker, in one commit on this journal's connection."""
        with self._raw():
            commit(self.db, steps, log_id, last)

    def _error(self, err: Exception) -> JournalError:
        raise NotImplementedError  # the Journal's: the sentence for a sqlite3 or OS error

    def _os_error(self, err: OSError, path: Path) -> JournalError:
        raise NotImplementedError  # the Journal's: the sentence for a file system error

