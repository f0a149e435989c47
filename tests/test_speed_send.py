"""The send run's pace without giving up exactly-once: the ledger's fsync off the event loop,
fewer WAL checkpoints (each one two fsyncs the event loop waits for) while a run writes, and
each message still ``sending`` on disk before its data goes and ``sent`` before its
connection writes the next one's."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from invitemail.journal import ledger as ledger_module
from invitemail.journal.ledger import Ledger, LedgerError
from invitemail.journal.store import RUN_CHECKPOINT, CalendarRecord, Journal, State
from support.checks import assert_exactly_once, journal_states
from support.cli import run_cli
from support.event import event_for, rows
from support.relay import Script, SmtpServer

T = "invitation"
CALENDAR = CalendarRecord(3, "2027-01-01T14:00:00+01:00", 60, "https://example.org/j/1",
                          "0123456789abcdef", T)


def _journal(tmp_path: Path, count: int) -> Journal:
    journal = Journal.open(tmp_path)
    assert journal is not None
    journal.register(T, ((f"u{i}@example.org", f"u{i}@example.org", i) for i in range(count)))
    return journal


# -- the journal: fewer WAL checkpoints while a run writes ------------------------------------


def test_a_run_checkpoints_the_wal_less_often_and_closing_folds_it_in(tmp_path: Path) -> None:
    journal = _journal(tmp_path, 300)
    assert journal.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    journal.for_a_run()
    assert journal.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == RUN_CHECKPOINT
    for i in range(300):
        journal.mark_sending(T, f"u{i}@example.org", f"<m{i}>", 1, calendar=CALENDAR)
        journal.mark_done(T, f"u{i}@example.org", State.SENT if i % 3 else State.FAILED,
                          "250 ok" if i % 3 else "550 no", 1)
    wal = journal.path.with_name(journal.path.name + "-wal")
    assert wal.stat().st_size > 0
    journal.close()
    assert not wal.exists()  # folded into the journal
    states = journal_states(tmp_path)
    assert Counter(states.values()) == {State.SENT: 200, State.FAILED: 100}


# -- the ledger: its fsync on a thread of its own ----------------------------------------------


def _record(ledger: Ledger, n: int) -> None:
    ledger.record("j1", T, f"u{n}@example.org", State.SENT, f"<m{n}>", "2026-12-02T10:00:00",
                  CALENDAR if n % 2 else None)


@pytest.mark.parametrize("lines", [1, ledger_module.SYNC_EVERY - 1, ledger_module.SYNC_EVERY,
                                   ledger_module.SYNC_EVERY * 3 + 7])
def test_ledger_lines_all_read_back_after_the_fsyncs_behind(tmp_path: Path,
                                                           lines: int) -> None:
    ledger = Ledger(tmp_path / "l.jsonl", "event-1")
    ledger.open()
    ledger.begin("j1", tmp_path, "2026-12-02T09:00:00")
    for n in range(lines):
        _record(ledger, n)
        assert ledger.unsynced == (n + 1) % ledger_module.SYNC_EVERY
    flusher = ledger._flusher
    ledger.close()
    assert ledger.fd == -1 and ledger._flusher is None
    if flusher is not None:  # its thread was joined
        assert not any(t.is_alive() for t in flusher._threads)
    view = Ledger(tmp_path / "l.jsonl", "event-1").read()
    entries = view.of("j1")
    assert len(entries) == lines
    entry = entries[(T, "u1@example.org")] if lines > 1 else entries[(T, "u0@example.org")]
    assert entry.calendar == (CALENDAR if lines > 1 else None)


def test_ledger_lines_are_the_same_text_as_before(tmp_path: Path) -> None:
    """The one encoder writes what json.dumps with the same options wrote."""
    import json

    ledger = Ledger(tmp_path / "l.jsonl", "évènement")
    ledger.open()
    ledger.record("j1", "påmindelse", "Søren@example.org", State.UNCERTAIN, "<ø\u2028>",
                  "2026-12-02T10:00:00", None)
    _record(ledger, 1)
    ledger.close()
    lines = (tmp_path / "l.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    for line in lines:
        assert line == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))


def test_a_failed_fsync_behind_stops_the_next_record(tmp_path: Path) -> None:
    """fsync of a FIFO fails (EINVAL): the error of the flush behind comes from the next
    call, as a LedgerError naming the file, never as a traceback from a thread."""
    path = tmp_path / "fifo.jsonl"
    os.mkfifo(path)
    ledger = Ledger(path, "event-1")
    ledger.open()
    try:
        for n in range(ledger_module.SYNC_EVERY):  # well under the pipe's 64 KiB
            _record(ledger, n)
        with pytest.raises(LedgerError, match=r"fifo\.jsonl"):
            ledger.sync()
    finally:
        ledger.close()  # the write error is the one reported; close stays quiet
    assert ledger.fd == -1


# -- the run: exactly-once, with one commit per message --------------------------------------


def _on_disk_now(folder: Path, scratch: Path) -> Counter[str]:
    """The states the next run would find if this one were killed now: a copy of the
    journal's files as they are on disk (the SQLite file, its WAL, the run log), opened as
    the next run opens them."""
    copy = scratch / f"copy{len(list(scratch.iterdir())) if scratch.exists() else 0}"
    (copy / ".invitemail").mkdir(parents=True)
    for name in ("journal.sqlite", "journal.sqlite-wal", "run.log"):
        if (folder / ".invitemail" / name).exists():
            shutil.copyfile(folder / ".invitemail" / name, copy / ".invitemail" / name)
    journal = Journal.open(copy, create=False)
    assert journal is not None
    with journal:
        return Counter(state.value for state in journal.states(T).values())


def _watching(where: list[Path], scratch: Path, *,
              pipelining: bool) -> tuple[Script, list[Counter[str]]]:
    """A relay script that looks at the journal of the event folder ``where[0]`` on disk as
    each message's data ends."""
    seen: list[Counter[str]] = []

    def answer(verb: str, n: int) -> str | None:
        if verb == "DOT":
            seen.append(_on_disk_now(where[0], scratch))
        return None

    return Script(group_replies=pipelining, pipelining=pipelining, answer=answer), seen


@pytest.mark.parametrize("pipelining", [True, False])
def test_each_message_is_sending_on_disk_before_its_data_and_the_one_before_is_sent(
        tmp_path: Path, pipelining: bool) -> None:
    where: list[Path] = []
    script, seen = _watching(where, tmp_path / "copies", pipelining=pipelining)
    with SmtpServer(script=script) as server:
        where.append(event_for(server, tmp_path / "e", rows(40), sending="concurrency = 1\n"))
        run = run_cli("send", where[0], "--yes")
        assert run.exit_code == 0, run.output
    assert len(seen) == 40
    for n, states in enumerate(seen):  # one connection: message n+1's data, n sent before
        assert states == Counter({"sent": n, "sending": 1, "pending": 39 - n}), n
    assert set(journal_states(where[0]).values()) == {State.SENT}
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(40)])


def test_eight_connections_leave_nothing_sending_and_the_ledger_knows_each(
        tmp_path: Path) -> None:
    with SmtpServer(script=Script(group_replies=True, temp_fail_rate=0.1, seed=7)) as server:
        folder = event_for(server, tmp_path / "e", rows(300),
                           sending="concurrency = 8\nmax_attempts = 10\n")
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 0, run.output
    assert set(journal_states(folder).values()) == {State.SENT}
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(300)])
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:
        identity = journal.identity()
        assert identity is not None
    view = Ledger.of_event(identity.event_uid).read()
    assert len(view.sent(identity.journal_id)) == 300
