"""A run's steps through the run log (journal/runlog.py, journal/batches.py): each on disk at
once, in the journal's file in batches, and the same rows either way.

The differential property: any sequence of steps, written through the run log with any batch
size and cut off at any point as a killed process would be, leaves the journal as the same
steps one commit each leave it. The rest: a reader beside a live run reads every step, a
dead run's log is applied once by the next opener, a torn last line is left out, a damaged
or linked log is refused with a sentence."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invitemail.journal import batches
from invitemail.journal.runlog import RUN_LOG
from invitemail.journal.safeguard import move_aside
from invitemail.journal.store import (
    CalendarRecord,
    ClaimError,
    Journal,
    JournalDamaged,
    JournalError,
    State,
)
from support.cli import run_cli
from support.event import write_event

T = "invitation"
KEYS = ["a@example.org", "b@example.org", "c@example.org"]
CALENDAR = CalendarRecord(2, "2027-01-01T14:00:00+01:00", 60, "https://example.org/j/1",
                          "0123456789abcdef", T)
CLAIMABLE = (State.PENDING, State.UNCERTAIN, State.FAILED)


class Clock:
    """A clock that moves a second per reading, the same in both journals."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


Step = tuple[str, str, int, str]  # (kind, key, attempt, reply or state)

steps_strategy = st.lists(st.tuples(
    st.sampled_from(["sending", "sent", "failed", "uncertain", "retrying", "pending"]),
    st.sampled_from(KEYS), st.integers(1, 5),
    st.text(max_size=30)), max_size=40)


def _open(folder: Path) -> Journal:
    journal = Journal.open(folder, clock=Clock())
    assert journal is not None
    return journal


def _apply(journal: Journal, step: Step) -> str:
    """One step through the Journal's public calls; what it said ("ok" or the claim's
    refusal)."""
    kind, key, attempt, text = step
    try:
        if kind == "sending":
            journal.mark_sending(T, key, f"<{attempt}@x>", attempt, calendar=CALENDAR,
                                 claimable=CLAIMABLE)
        elif kind == "retrying":
            journal.mark_retrying(T, key, text, attempt)
        elif kind == "pending":
            journal.mark_pending(T, key)
        else:
            journal.mark_done(T, key, State(kind), text, attempt)
    except ClaimError:
        return "refused"
    return "ok"


def _everything(journal: Journal) -> tuple[object, ...]:
    return (list(journal.rows(T)), journal.calendars(), journal.variants(T))


def _die(journal: Journal, *, flushed: bool = True) -> None:
    """What a killed process leaves: the run log as written, the steps not applied.
    ``flushed``: killed right after the run wrote its deferred lines (else they are lost)."""
    batch = journal._batch
    assert batch is not None
    if batch.behind is not None:  # killed right after the journal's thread committed
        batch.behind.result()
    batch.stop()
    if not flushed:
        batch.log.deferred.clear()
    batch.log.leave()
    journal._batch = None
    journal.db.close()


@contextlib.contextmanager
def _batches_of(batch: int) -> Iterator[tuple[Path, Path]]:
    """Two empty folders, ``fast`` and ``slow``, while a run applies ``batch`` steps at a
    time (never by the clock)."""
    with tempfile.TemporaryDirectory() as where, pytest.MonkeyPatch.context() as patch:
        patch.setattr(batches, "BATCH", batch)
        patch.setattr(batches, "APPLY_AFTER", 3600.0)
        fast, slow = Path(where) / "fast", Path(where) / "slow"
        fast.mkdir()
        slow.mkdir()
        yield fast, slow


def _registered(folder: Path, *, run: bool) -> Journal:
    journal = _open(folder)
    journal.register(T, ((k, k, n) for n, k in enumerate(KEYS, start=2)))
    if run:
        journal.for_a_run()
    return journal


@settings(max_examples=60, deadline=None)
@given(steps=steps_strategy, batch=st.integers(1, 6), cut=st.integers(0, 40))
# A retry does not touch a sent row: the run's own view of the states said pending, and let
# a second claim through that the journal refuses.
@example(steps=[("sending", KEYS[0], 1, ""), ("sent", KEYS[1], 1, ""),
                ("retrying", KEYS[1], 1, ""), ("sending", KEYS[1], 1, "")], batch=1, cut=4)
@example(steps=[("sending", KEYS[0], 1, ""), ("sent", KEYS[0], 1, "250 ok"),
                ("sending", KEYS[1], 2, ""), ("retrying", KEYS[1], 2, "451"),
                ("sending", KEYS[1], 3, ""), ("failed", KEYS[1], 3, "550")], batch=6, cut=6)
def test_any_steps_through_the_run_log_leave_the_rows_one_commit_each_leaves(
        steps: list[Step], batch: int, cut: int) -> None:
    cut = min(cut, len(steps))
    with _batches_of(batch) as (fast, slow):
        answers: dict[str, list[str]] = {}
        for folder in (slow, fast):
            journal = _registered(folder, run=folder == fast)
            answers[folder.name] = [_apply(journal, step) for step in steps[:cut]]
            if folder == fast:
                _die(journal)  # killed after ``cut`` steps, some of them applied
                assert (fast / ".invitemail" / RUN_LOG).exists()
            else:
                journal.close()
        assert answers["fast"] == answers["slow"]
        with _open(slow) as one, _open(fast) as other:
            assert _everything(other) == _everything(one)
        assert not (fast / ".invitemail" / RUN_LOG).exists()
        with _open(fast) as again:  # applying it again would change nothing: it is gone
            assert not again.stuck


@settings(max_examples=60, deadline=None)
@given(steps=steps_strategy, batch=st.integers(1, 6), cut=st.integers(0, 40))
def test_a_kill_before_the_deferred_lines_are_written_loses_only_those(
        steps: list[Step], batch: int, cut: int) -> None:
    """A finished message's line waits for the next write (a claim, a batch, the event
    loop's turn): killed before it, the journal is what the steps written before say, one
    commit each; in a run that row is then still ``sending``, uncertain at the next run."""
    cut = min(cut, len(steps))
    with _batches_of(batch) as (fast, slow):
        for folder in (fast, slow):
            journal = _registered(folder, run=folder == fast)
            if folder == fast:
                taken = [n for n, step in enumerate(steps[:cut])
                         if _apply(journal, step) == "ok"]  # the refused write no line
                written = len((fast / ".invitemail" / RUN_LOG).read_text().splitlines()) - 1
                _die(journal, flushed=False)
            else:  # the steps up to the last line on disk, one commit each
                for step in steps[:taken[written - 1] + 1 if written else 0]:
                    _apply(journal, step)
                journal.close()
        with _open(slow) as one, _open(fast) as other:
            assert _everything(other) == _everything(one)


def _run(folder: Path, steps: int) -> Journal:
    journal = _registered(folder, run=True)
    for key in KEYS[:steps]:
        journal.mark_sending(T, key, "<1@x>", 1, calendar=CALENDAR)
        journal.mark_done(T, key, State.SENT, "250 ok", 1)
    return journal


def test_a_claim_is_on_disk_at_once_the_rest_with_the_next_write_and_all_in_the_file_at_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    journal = _run(tmp_path, 2)
    assert journal.waiting == 4
    log = (tmp_path / ".invitemail" / RUN_LOG).read_text().splitlines()
    # a's claim, a's end (written with b's claim), b's claim; b's end waits for a write
    assert [line.split(",")[1] for line in log[1:]] == ['"sending"', '"done"', '"sending"']
    journal.flush_log()
    log = (tmp_path / ".invitemail" / RUN_LOG).read_text().splitlines()
    assert len(log) == 5 and '"done"' in log[4] and '"b@example.org"' in log[4]
    assert (tmp_path / ".invitemail" / RUN_LOG).stat().st_mode & 0o777 == 0o600
    assert journal.states(T)[KEYS[1]] is State.SENT  # a read applies what waits
    assert journal.waiting == 0
    journal.mark_sending(T, KEYS[2], "<1@x>", 1)
    journal.close()
    assert not (tmp_path / ".invitemail" / RUN_LOG).exists()
    with _open(tmp_path) as after:
        assert after.states(T) == {KEYS[0]: State.SENT, KEYS[1]: State.SENT,
                                   KEYS[2]: State.SENDING}
        assert set(after.calendars()) == {KEYS[0], KEYS[1]}


def test_a_reader_beside_a_live_run_reads_every_step_and_cannot_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    journal = _run(tmp_path, 2)
    journal.mark_sending(T, KEYS[2], "<1@x>", 1)
    with _open(tmp_path) as reader:  # the run holds its log: it is read, not applied
        assert reader.states(T) == {KEYS[0]: State.SENT, KEYS[1]: State.SENT,
                                    KEYS[2]: State.SENDING}
        assert reader.counts(T)[State.SENT] == 2
        with pytest.raises(JournalError, match="a send from this event folder is running"):
            reader.recover()
    assert (tmp_path / ".invitemail" / RUN_LOG).exists()
    journal.close()


def test_a_dead_run_s_log_is_applied_by_the_next_opener_from_where_it_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "BATCH", 4)  # the first message's two steps... and two more
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    journal = _run(tmp_path, 3)  # 6 steps: 4 applied, 2 only in the log
    journal.mark_sending(T, KEYS[0], "<2@x>", 2, claimable=(State.SENT,))  # a 7th
    _die(journal)
    with _open(tmp_path) as after:
        assert after.states(T) == {KEYS[0]: State.SENDING, KEYS[1]: State.SENT,
                                   KEYS[2]: State.SENT}
        assert after.recover() == 1  # the one in flight when it died
    assert not (tmp_path / ".invitemail" / RUN_LOG).exists()


def test_a_torn_last_line_is_left_out(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    journal = _run(tmp_path, 1)
    _die(journal)
    with (tmp_path / ".invitemail" / RUN_LOG).open("ab") as log:
        log.write(b'[3,"sending","<1@x>",1,"2026-')  # the write the machine stopped in
    with _open(tmp_path) as after:
        assert after.states(T) == {KEYS[0]: State.SENT, KEYS[1]: State.PENDING,
                                   KEYS[2]: State.PENDING}


@pytest.mark.parametrize("damage", [b'[2,"sent"]\n', b"garbage\n", b'[7,"done",null]\n',
                                    b'[2,"drop table",1]\n', b'{"seq":2}\n'])
def test_a_damaged_log_stops_every_opener_with_the_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes) -> None:
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    folder = write_event(tmp_path / "e")
    journal = _run(folder, 2)
    _die(journal)
    path = folder / ".invitemail" / RUN_LOG
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], damage, *lines[3:]]))
    with pytest.raises(JournalDamaged, match=r"run\.log: line 3 is not a change"):
        Journal.open(folder)
    status = run_cli("status", folder)
    assert status.exit_code != 0 and "Traceback" not in status.output
    assert "is damaged (its run log run.log, line 3, is not a change invitemail wrote)" \
        in status.stderr
    assert "no record on this machine" in status.stderr  # the test sent nothing
    assert "`invitemail send --new-journal` moves it aside" in status.stderr
    aside = move_aside(folder)  # what --restore-journal and --new-journal do first
    assert aside is not None and not path.exists()
    assert aside.with_name(aside.name + "-run.log").read_bytes().count(damage) == 1
    with _open(folder) as fresh:
        assert fresh.states(T) == {}


def test_a_run_log_that_is_a_link_is_refused_and_its_target_left_alone(
        tmp_path: Path) -> None:
    journal = _open(tmp_path)
    journal.close()
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    os.symlink(target, tmp_path / ".invitemail" / RUN_LOG)
    with pytest.raises(JournalError, match=r"run\.log: is a symbolic link"):
        Journal.open(tmp_path)
    assert target.read_text() == "precious\n"


def test_a_batch_the_file_refuses_stops_the_next_claim_and_loses_no_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's thread cannot write a batch (a full disk): the steps written to the run
    log stay on record, the next claim is refused before a line is written, and the steps
    reach the file once it can take them."""
    monkeypatch.setattr(batches, "BATCH", 2)
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    real_commit = batches.commit
    refused: list[str] = []

    def commit(db: sqlite3.Connection, *args: object) -> None:
        if threading.current_thread().name.startswith("invitemail-journal") and not refused:
            refused.append("once")
            raise sqlite3.OperationalError("database or disk is full")
        real_commit(db, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(batches, "commit", commit)
    journal = _open(tmp_path)
    journal.register(T, ((k, k, n) for n, k in enumerate(KEYS, start=2)))
    journal.for_a_run()
    for key in KEYS[:2]:  # the first pair goes to the thread, which fails; then the second
        journal.mark_sending(T, key, "<1@x>", 1, calendar=CALENDAR)
        journal.mark_done(T, key, State.SENT, "250 ok", 1)  # finds it out, keeps its step
    with pytest.raises(JournalError, match="is full"):
        journal.mark_sending(T, KEYS[2], "<1@x>", 1)
    assert refused and '"sending"' not in (tmp_path / ".invitemail" / RUN_LOG).read_text(
    ).splitlines()[-1]
    journal.close()  # the file takes them now
    with _open(tmp_path) as after:
        assert after.states(T) == {KEYS[0]: State.SENT, KEYS[1]: State.SENT,
                                   KEYS[2]: State.PENDING}
    assert not (tmp_path / ".invitemail" / RUN_LOG).exists()


def test_a_read_waits_for_the_batch_the_journal_s_thread_is_applying(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read right after a batch went to the thread sees it, however slow the thread is
    (a run's last count read the file before the thread's commit, and found rows sending)."""
    monkeypatch.setattr(batches, "BATCH", 2)
    monkeypatch.setattr(batches, "APPLY_AFTER", 3600.0)
    real_commit = batches.commit

    def slow_commit(db: sqlite3.Connection, *args: object) -> None:
        if threading.current_thread().name.startswith("invitemail-journal"):
            time.sleep(0.3)
        real_commit(db, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(batches, "commit", slow_commit)
    journal = _run(tmp_path, 1)  # the pair went to the thread, which takes its time
    assert journal._batch is not None and journal._batch.behind is not None
    assert journal.waiting == 0
    assert journal.states(T)[KEYS[0]] is State.SENT
    assert journal.counts(T)[State.SENDING] == 0
    journal.close()


def test_with_the_wall_clock_the_journal_stamps_what_the_clock_says_to_the_second(
        tmp_path: Path) -> None:
    """The wall clock's stamps come through time.time, once per second: the same text the
    clock's datetime gives."""
    from invitemail.clock import utcnow

    with Journal.open(tmp_path) as journal:  # type: ignore[union-attr]
        assert journal.clock is utcnow
        before = utcnow().replace(microsecond=0)
        stamp = journal.now_text()
        after = utcnow().replace(microsecond=0)
    assert stamp in {before.isoformat(), after.isoformat()}
    assert stamp == dt.datetime.fromisoformat(stamp).isoformat(timespec="seconds")



def test_a_claim_and_its_final_state_in_one_batch_are_one_statement() -> None:
    """The batch runs one UPDATE per message whose claim and final state it holds both of
    (coalesce.py), and leaves the rows and the calendars as two statements each leave them."""
    executed: list[str] = []
    with _batches_of(64) as (fast, slow):
        for folder in (slow, fast):
            journal = _registered(folder, run=folder == fast)
            for n, key in enumerate(KEYS):
                _apply(journal, ("sending", key, 1, ""))
                _apply(journal, ("sent" if n else "failed", key, 1, "250 ok"))
            if folder == fast:
                journal.db.set_trace_callback(executed.append)
                journal._apply_waiting()  # the batch, on this connection
                journal.db.set_trace_callback(None)
            journal.close()
        with _open(slow) as one, _open(fast) as other:
            assert _everything(other) == _everything(one)
            assert len(other.calendars()) == len(KEYS) - 1  # the sent ones' calendars
    updates = [sql for sql in executed if sql.startswith("UPDATE deliveries")]
    # (sqlite3 may trace a statement more than once: what counts is which ones ran.)
    assert not any("state = 'sending'" in sql for sql in updates)  # no claim on its own
    assert all(any(f"key = '{key}'" in sql and "message_id = '<1@x>'" in sql
                   and "last_reply = '250 ok'" in sql for sql in updates) for key in KEYS)
