"""A journal that cannot silently lie (issue 12): deleted, emptied, damaged, replaced, another
event's, on a full or read-only disk (a tmpfs the test mounts, which needs root; a file size
limit, which works anywhere). Each time nobody is mailed twice, no command shows a traceback,
and the exit code is the one product.md gives."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from invitemail.journal.ledger import Ledger
from invitemail.journal.store import Journal, JournalError, State, new_journal_id
from support.checks import assert_exactly_once, journal_states
from support.cli import run_cli
from support.event import EventToml, event_for, rows, set_key
from support.relay import SmtpServer

UID = "persondata-2030-12-10@example.org"  # the default event's
ADDRESSES = [f"user{i}@example.org" for i in range(6)]


def _no_traceback(*runs: object) -> None:
    for run in runs:
        assert "Traceback" not in str(run), run


def _journal(folder: Path) -> Path:
    return folder / ".invitemail" / "journal.sqlite"


def _sent_four_of_six(server: SmtpServer, folder: Path) -> bytes:
    """Send 2, keep a copy of that journal, send 2 more: 4 of 6 have the message. Returns
    the copy."""
    event_for(server, folder, rows(6))
    assert run_cli("send", folder, "--yes", "--limit", "2").exit_code == 3
    older = _journal(folder).read_bytes()  # closed: everything is in the main file
    assert run_cli("send", folder, "--yes", "--limit", "2").exit_code == 3
    return older


def _another_journal_of_this_event(tmp_path: Path) -> bytes:
    """A journal of the same event made elsewhere (another id), that sent nothing."""
    (tmp_path / "elsewhere").mkdir()
    with Journal.open(tmp_path / "elsewhere") as other:  # type: ignore[union-attr]
        other.stamp(UID, new_journal_id())
        other.register("invitation", [(a, a, 2) for a in ADDRESSES])
    return _journal(tmp_path / "elsewhere").read_bytes()


DAMAGES = {
    "deleted": "is missing",
    "truncated to nothing": "is empty",
    "random bytes": "is damaged (file is not a database)",
    "a text file": "is damaged (file is not a database)",
    "an older copy of itself": "lacks 2 of the 4 messages recorded as sent from it",
    "another journal of this event": "was replaced",
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_lost_journal_is_refused_then_restored_and_nobody_is_mailed_twice(
        smtp_server: SmtpServer, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "e"
    older = _sent_four_of_six(smtp_server, folder)
    journal = _journal(folder)
    if damage == "deleted":
        shutil.rmtree(folder / ".invitemail")
    elif damage == "truncated to nothing":
        os.truncate(journal, 0)
    elif damage == "random bytes":
        journal.write_bytes(random.Random(12).randbytes(8192))
    elif damage == "a text file":
        journal.write_bytes(b"id,state\nuser0@example.org,sent\n" * 40)
    elif damage == "an older copy of itself":
        journal.write_bytes(older)
    else:
        journal.write_bytes(_another_journal_of_this_event(tmp_path))
    damaged = journal.read_bytes() if journal.exists() else None

    refused = run_cli("send", folder, "--yes")
    dry = run_cli("send", folder, "--dry-run")
    status = run_cli("status", folder)
    assert (refused.exit_code, dry.exit_code, status.exit_code) == (1, 1, 1)
    assert (f"Error: the journal .invitemail/journal.sqlite {DAMAGES[damage]}, but 4 messages "
            "of this event were sent from this machine, the last at ") in refused.stderr
    assert "`invitemail send --restore-journal` rebuilds it" in refused.stderr
    assert "`invitemail send --new-journal` starts afresh and may mail those 4 again" \
        in refused.stderr
    assert DAMAGES[damage] in dry.stderr and DAMAGES[damage] in status.stderr
    assert len(smtp_server.transactions) == 4  # nothing more was sent
    check, preview = run_cli("check", folder), run_cli("preview", folder)
    assert check.exit_code == 0 and preview.exit_code == 0  # still usable
    _no_traceback(refused, dry, status, check, preview)

    restored = run_cli("send", folder, "--yes", "--restore-journal")
    assert restored.exit_code == 0, restored.output
    assert "Rebuilt the journal from the record of what was sent: 4 messages." \
        in restored.stdout
    assert_exactly_once(smtp_server, ADDRESSES)
    kept = list((folder / ".invitemail").glob("journal-set-aside-*.sqlite"))
    if damaged is None:
        assert kept == []
    elif "damaged" in DAMAGES[damage]:  # moved aside as it was, never deleted
        assert [p.read_bytes() for p in kept] == [damaged]
    else:  # moved aside (once opened, sqlite may have tidied it), never deleted
        assert len(kept) == 1
    assert set(journal_states(folder).values()) == {State.SENT}
    again = run_cli("send", folder, "--yes")
    assert again.exit_code == 0 and "Skipped 6: already sent." in again.stdout
    _no_traceback(restored, again)


def test_a_copied_event_folder_with_a_new_uid_is_refused_until_new_journal(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    first = event_for(smtp_server, tmp_path / "first", rows(3))
    assert run_cli("send", first, "--yes").exit_code == 0
    second = tmp_path / "second"
    shutil.copytree(first, second)
    set_key(second, "event", "uid", "next-webinar@example.org")

    refused, status = run_cli("send", second, "--yes"), run_cli("status", second)
    assert refused.exit_code == 1 and status.exit_code == 1
    assert (f"the journal {_journal(second)} is the journal of another event, {UID!r}; there "
            "is no record on this machine of messages sent for this event") in refused.stderr
    assert "`invitemail send --new-journal` moves it aside (it is kept)" in refused.stderr
    assert "is the journal of another event" in status.stderr
    nothing = run_cli("send", second, "--yes", "--restore-journal")
    assert nothing.exit_code == 1 and "there is nothing to restore" in nothing.stderr
    assert len(smtp_server.transactions) == 3
    _no_traceback(refused, status, nothing)

    fresh = run_cli("send", second, "--yes", "--new-journal")
    assert fresh.exit_code == 0, fresh.output
    assert "The old journal was moved aside to" in fresh.stdout
    assert smtp_server.received() == {f"user{i}@example.org": 2 for i in range(3)}  # 2 events
    assert len(list((second / ".invitemail").glob("journal-set-aside-*.sqlite"))) == 1
    for folder in (first, second):
        again = run_cli("send", folder, "--yes")
        assert again.exit_code == 0 and "Skipped 3: already sent." in again.stdout
    assert len(smtp_server.transactions) == 6


def test_one_event_sent_from_two_folders_is_noticed(smtp_server: SmtpServer,
                                                    tmp_path: Path) -> None:
    first = event_for(smtp_server, tmp_path / "first", rows(6))
    assert run_cli("send", first, "--yes", "--limit", "2").exit_code == 3
    second = tmp_path / "second"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(".invitemail"))
    missing = run_cli("send", second, "--yes")
    assert missing.exit_code == 1 and "is missing, but 2 messages" in missing.stderr
    assert run_cli("send", second, "--yes", "--new-journal").exit_code == 0  # asked for: all 6
    back = run_cli("send", first, "--yes")
    assert back.exit_code == 1, back.output
    assert (f"is not the one this event last sent from (that one is in {second.resolve()}): "
            "one event is being sent from two folders, but 6 messages") in back.stderr
    assert len(smtp_server.transactions) == 8
    _no_traceback(missing, back)


def test_new_journal_is_refused_for_a_sound_journal(smtp_server: SmtpServer,
                                                    tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    assert run_cli("send", folder, "--yes").exit_code == 0
    run = run_cli("send", folder, "--yes", "--new-journal")
    assert run.exit_code == 1 and "is sound (2 messages recorded as sent from it)" in run.stderr
    assert len(smtp_server.transactions) == 2
    usage = run_cli("send", folder, "--dry-run", "--restore-journal")
    assert usage.exit_code == 2


def test_a_journal_from_before_the_ledger_is_adopted_and_then_guarded(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    assert run_cli("send", folder, "--yes", "--limit", "2").exit_code == 3
    # As an earlier version left it: no identity, and no ledger.
    with Journal.open(folder) as journal:  # type: ignore[union-attr]
        journal.db.execute("DELETE FROM meta")
    shutil.rmtree(Path(os.environ["INVITEMAIL_DATA_DIR"]))
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert_exactly_once(smtp_server, ADDRESSES[:3])
    shutil.rmtree(folder / ".invitemail")
    refused = run_cli("send", folder, "--yes")
    assert refused.exit_code == 1 and "but 3 messages of this event were sent" in refused.stderr


def test_an_unwritable_ledger_stops_the_run_before_it_sends(
        smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("INVITEMAIL_DATA_DIR", str(tmp_path / "a-file" / "data"))
    run = run_cli("send", folder, "--yes")
    assert run.exit_code == 1 and not smtp_server.transactions
    assert f"{tmp_path / 'a-file'}" in run.stderr and "(the record of sent messages)" \
        in run.stderr and "set INVITEMAIL_DATA_DIR" in run.stderr
    _no_traceback(run)


def test_a_ledger_line_cut_short_by_a_crash_is_skipped_and_the_next_starts_afresh(
        tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.jsonl", UID).open()
    ledger.begin("j1", tmp_path, "2030-01-01T00:00:00+00:00")
    ledger.record("j1", "invitation", "a@x", State.SENT, "<1@x>", "2030-01-01T00:00:01+00:00",
                  None)
    ledger.close()
    with (tmp_path / "l.jsonl").open("ab") as file:
        file.write(b'{"j":"j1","t":"invitation","k":"b@x","s":"se')
    with Ledger(tmp_path / "l.jsonl", UID).open() as again:
        again.record("j1", "invitation", "c@x", State.SENT, "<3@x>", "2030-01-01T00:00:03",
                     None)
    view = Ledger(tmp_path / "l.jsonl", UID).read()
    assert view.current == "j1"
    assert sorted(view.sent("j1")) == [("invitation", "a@x"), ("invitation", "c@x")]


# -- a full disk, a read-only disk: a small tmpfs of the test's own ----------------------------


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True)
    if mounted.returncode != 0:
        why = f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode()}"
        if os.environ.get("CI"):  # CI runs as root on a machine that can: a skip hides a gap
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up, then free ``leave`` bytes of it."""
    filler = disk / "filler"
    with filler.open("wb") as file:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                file.write(chunk)
                file.flush()
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.mark.slow
def test_a_full_disk_mid_run_exits_3_and_the_rerun_mails_nobody_twice(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    addresses = [f"user{i}@example.org" for i in range(400)]
    with _small_disk(tmp_path / "disk", "8m") as disk:  # the WAL grows to 4 MB
        folder = event_for(smtp_server, disk / "e", rows(400), sending="concurrency = 2\n")
        assert run_cli("send", folder, "--yes", "--limit", "1").exit_code == 3  # all registered
        filler = _fill(disk, 160 * 1024)
        full = run_cli("send", folder, "--yes")
        assert full.exit_code == 3, full.output
        assert f"Error: the run stopped: the disk holding {_journal(folder)} is full" \
            in full.stderr
        assert "free space on that disk, then run the same command again" in full.stderr
        sent = len(smtp_server.transactions)
        assert 1 < sent < 400 and f"Sent {sent - 1} messages" in full.stdout
        assert all(n == 1 for n in smtp_server.received().values())
        status = run_cli("status", folder)
        assert status.exit_code == 0, status.output

        nothing = run_cli("send", folder, "--yes")  # still full: nothing sent by this run
        assert nothing.exit_code in (1, 3), nothing.output
        assert "is full" in nothing.stderr
        _no_traceback(full, status, nothing)

        filler.unlink()
        rest = run_cli("send", folder, "--yes")
        assert rest.exit_code == 0, rest.output
        _no_traceback(rest)
        assert_exactly_once(smtp_server, addresses)
        assert set(journal_states(folder).values()) == {State.SENT}


def _file_size_limit() -> None:
    """In the child: no file may grow past 100 kB (writes past it fail with EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


@pytest.mark.slow
def test_a_file_size_limit_mid_run_exits_3_and_the_rerun_mails_nobody_twice(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    """The same without root: the journal's run log (about 300 bytes a step) or its WAL
    (a batch's pages) reaches the limit half way, whichever is first."""
    folder = event_for(smtp_server, tmp_path / "e", rows(400), sending="concurrency = 2\n")
    assert run_cli("send", folder, "--yes", "--limit", "1").exit_code == 3  # all registered
    limited = subprocess.run([sys.executable, "-m", "invitemail", "send", str(folder), "--yes"],
                             capture_output=True, text=True, preexec_fn=_file_size_limit,
                             env=os.environ.copy(), timeout=300)
    assert limited.returncode == 3, limited.stdout + limited.stderr
    assert (f"Error: the run stopped: cannot read or write {_journal(folder)}: disk I/O error "
            "(SQLITE_IOERR_WRITE)" in limited.stderr
            or f"Error: the run stopped: the disk holding {_journal(folder)} is full (File too "
            "large)" in limited.stderr), limited.stderr
    sent = len(smtp_server.transactions)
    assert 1 < sent < 400 and f"Sent {sent - 1} messages" in limited.stdout
    _no_traceback(limited.stdout + limited.stderr)
    rest = run_cli("send", folder, "--yes")
    assert rest.exit_code == 0, rest.output
    assert_exactly_once(smtp_server, [f"user{i}@example.org" for i in range(400)])


def test_a_full_disk_before_anything_is_sent_exits_1(smtp_server: SmtpServer,
                                                     tmp_path: Path) -> None:
    with _small_disk(tmp_path / "disk", "1m") as disk:
        folder = event_for(smtp_server, disk / "e", rows(300))
        assert run_cli("send", folder, "--yes", "--limit", "1").exit_code == 3
        _fill(disk, 0)
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 1, run.output
        assert "is full" in run.stderr and len(smtp_server.transactions) == 1
        _no_traceback(run)


def test_a_read_only_disk_is_named_and_status_still_reads_it(smtp_server: SmtpServer,
                                                             tmp_path: Path) -> None:
    with _small_disk(tmp_path / "disk", "2m") as disk:
        folder = event_for(smtp_server, disk / "e", rows(3))
        assert run_cli("send", folder, "--yes", "--limit", "2").exit_code == 3
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(OSError) as refused:  # as root, only a read-only mount stops writes
            (disk / "probe").write_text("")
        assert refused.value.errno == errno.EROFS
        send, status = run_cli("send", folder, "--yes"), run_cli("status", folder)
        assert send.exit_code == 1 and "Read-only file system" in send.stderr
        with pytest.raises(JournalError, match=r"cannot write .*journal\.sqlite: its disk "
                                               r"is mounted read-only") as error:
            Journal.open(folder)  # a writer (the lock stops `send` before it gets here)
        assert error.value.hint is not None and "read-only" in error.value.hint
        assert status.exit_code == 0 and "1 pending, 2 sent" in status.stdout
        print(send.stderr)
        check, preview = run_cli("check", folder), run_cli("preview", folder)
        assert check.exit_code == 0 and preview.exit_code == 0
        _no_traceback(send, status, check, preview)
        assert len(smtp_server.transactions) == 2


def test_the_toml_uid_is_what_the_journal_is_checked_against() -> None:
    assert EventToml.parse().value("event", "uid") == f'"{UID}"'


def test_the_ledger_is_private_and_holds_no_password_and_no_body(
        smtp_server: SmtpServer, tmp_path: Path, data_dir: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    assert run_cli("send", folder, "--yes").exit_code == 0
    (ledger,) = (data_dir / "ledger").iterdir()
    assert ledger.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "ledger").stat().st_mode & 0o777 == 0o700
    text = ledger.read_text()
    assert "Kx7pQ9" not in text and "Kære" not in text and "Dear" not in text
    assert text.count('"s":"sent"') == 2 and UID in text.splitlines()[0]
