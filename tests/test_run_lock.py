"""One `send` per event folder (issue 12): two real processes on one folder mail each
registrant once; the loser exits 1 at once and names the holder; `status` and `preview` work
beside a running send; a row is claimed only from a state this run may send from."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from invitemail.campaign import Campaign
from invitemail.journal.folderlock import FolderBusy, FolderLock
from invitemail.journal.store import ClaimError, Journal, State
from invitemail.send.delivery import SendOptions
from invitemail.send.plan import send
from support.checks import assert_exactly_once, journal_states
from support.cli import run_cli
from support.event import NOW, event_for, rows
from support.fakes import Quiet
from support.relay import FakeClock, Script, SmtpServer


def _spawn(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "invitemail", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_two_sends_at_once_mail_each_registrant_once_and_the_second_exits_1(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path) -> None:
    server = start_smtp_server(script=Script(reply_delay=0.015))  # 15 ms per message
    addresses = [f"user{i}@example.org" for i in range(150)]
    folder = event_for(server, tmp_path / "e", rows(150), sending="concurrency = 1\n")

    first, second = _spawn("send", folder, "--yes"), _spawn("send", folder, "--yes")
    # While one of them sends, the readers work beside it.
    deadline = time.monotonic() + 60
    while not server.transactions:
        assert time.monotonic() < deadline, "nothing was sent"
        time.sleep(0.01)
    status, preview = run_cli("status", folder), run_cli("preview", folder)
    runs = [(p, *p.communicate(timeout=120)) for p in (first, second)]

    assert sorted(p.returncode for p, _, _ in runs) == [0, 1], runs
    (winner, *_), (_, out, err) = sorted(runs, key=lambda r: r[0].returncode)
    assert f"another invitemail send (pid {winner.pid}, started " in err
    assert f"is sending from {folder}" in err and "wait for it to finish" in err
    assert "Traceback" not in out + err and "Sent" not in out
    assert_exactly_once(server, addresses)
    assert set(journal_states(folder).values()) == {State.SENT}  # none turned uncertain
    assert status.exit_code == 0 and "template 'invitation', 150 registrants" in status.stdout
    assert preview.exit_code == 0 and "Traceback" not in status.output + preview.output


def test_a_held_folder_refuses_send_and_leaves_the_in_flight_rows_alone(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    assert run_cli("send", folder, "--yes", "--limit", "1").exit_code == 3
    with Journal.open(folder) as journal:  # type: ignore[union-attr]
        journal.mark_sending("invitation", "user1@example.org", "<x@y>", 1)  # in flight
    with FolderLock.acquire(folder):
        process = _spawn("send", folder, "--yes")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1, out + err
        assert f"another invitemail send (pid {os.getpid()}, started " in err
        assert "Traceback" not in out + err
        dry = run_cli("send", folder, "--dry-run")  # reads, takes no lock
        assert dry.exit_code == 0 and "Dry run: 1 message would be sent" in dry.stdout
        test = run_cli("send", folder, "--yes", "--test-to", "me@example.org")
        assert test.exit_code == 0, test.output  # journals nothing: needs no lock
    assert journal_states(folder)["user1@example.org"] is State.SENDING  # not recovered
    assert smtp_server.received_by("user1@example.org") == 0
    # The holder gone (the kernel drops the lock with it), the next run takes the folder.
    again = run_cli("send", folder, "--yes")
    assert again.exit_code == 3, again.output  # user1 is uncertain now: it was in flight
    assert "1 message(s) were in flight" in again.stdout
    assert smtp_server.received() == {"user0@example.org": 1, "user2@example.org": 1,
                                      "me@example.org": 1}


def test_the_lock_goes_with_a_killed_process(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; "
        "from invitemail.journal.folderlock import FolderLock; "
        f"lock = FolderLock.acquire(Path({str(tmp_path / 'e')!r})); "
        "print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(FolderBusy, match=rf"\(pid {holder.pid}, started \d\d:\d\d:\d\d\)"):
        FolderLock.acquire(tmp_path / "e")
    holder.kill()
    holder.wait(timeout=30)
    with FolderLock.acquire(tmp_path / "e") as lock:
        assert f'"pid": {os.getpid()}' in lock.path.read_text()


# -- the claim: one statement, checked by its row count --------------------------------------


@pytest.mark.parametrize("state", ["sending", "sent", "uncertain", "failed"])
def test_a_row_is_claimed_only_from_a_state_this_run_may_send_from(
        tmp_path: Path, state: str) -> None:
    with Journal.open(tmp_path) as journal:  # type: ignore[union-attr]
        journal.register("invitation", [("a@example.org", "a@example.org", 2)])
        journal.db.execute("UPDATE deliveries SET state = ?", (state,))
        with pytest.raises(ClaimError, match=re.escape(
                f"a@example.org cannot be claimed for sending: it is '{state}'")):
            journal.mark_sending("invitation", "a@example.org", "<1@x>", 1)
        assert journal.states("invitation") == {"a@example.org": State(state)}
        if state in ("uncertain", "failed"):  # --resend-uncertain / --retry-failed
            journal.mark_sending("invitation", "a@example.org", "<1@x>", 1,
                                 claimable=(State.PENDING, State(state)))
            assert journal.states("invitation") == {"a@example.org": State.SENDING}


def test_two_connections_cannot_both_claim_a_row(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as one, Journal.open(tmp_path) as two:  # type: ignore[union-attr]
        one.register("invitation", [("a@example.org", "a@example.org", 2)])
        one.mark_sending("invitation", "a@example.org", "<1@x>", 1)
        with pytest.raises(ClaimError):
            two.mark_sending("invitation", "a@example.org", "<2@x>", 1)


class _Intruder(Quiet):
    """A Progress that, as the run starts, claims rows behind the run's back through a
    connection of its own: what a second writer that ignores the lock would do."""

    def __init__(self, folder: Path, keys: list[str]) -> None:
        super().__init__()
        self.folder, self.keys = folder, keys

    def started(self, total: int) -> None:
        super().started(total)
        db = sqlite3.connect(Journal.path_in(self.folder), isolation_level=None)
        db.executemany("UPDATE deliveries SET state = 'sending' WHERE key = ?",
                       [(k,) for k in self.keys])
        db.close()


@pytest.mark.parametrize("taken", [[0], [3], [0, 7, 8]])
def test_a_row_claimed_behind_the_runs_back_is_never_sent(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path, taken: list[int]) -> None:
    server = start_smtp_server()
    folder = event_for(server, tmp_path / "e", rows(10), sending="concurrency = 1\n")
    keys = [f"user{i}@example.org" for i in taken]
    clock = FakeClock()
    run = send(Campaign.open(folder, now=NOW), password=None, options=SendOptions(),
               progress=_Intruder(folder, keys), clock=clock, sleep=clock.sleep)
    if taken[0] == 0:  # the very first claim fails: nothing was sent by this run, exit 1
        with pytest.raises(ClaimError, match=r"user0@example\.org cannot be claimed"):
            asyncio.run(run)
        assert not server.transactions
        return
    result = asyncio.run(run)  # some were sent, then the run stopped: exit 3
    assert isinstance(result.stopped, ClaimError)
    assert f"{keys[0]} cannot be claimed for sending: it is 'sending'" in str(result.stopped)
    assert result.sent == len(server.transactions) == taken[0]
    assert all(n == 1 for n in server.received().values())
    assert all(server.received_by(key) == 0 for key in keys)
