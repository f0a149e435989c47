"""The send flow's rails: hints that fit the refusal, a dry run that counts what a real run
would send, the Date header taken at hand-over, prompts that say what will happen, and a
registrant removed from the list that never keeps a run from finishing."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from invitemail.journal.store import Journal, State
from support.checks import journal_states
from support.cli import run_cli
from support.event import Value, event_for, rows, set_key
from support.relay import Script, SmtpServer

SKIP_HINT = "--skip-invalid"


# -- 3: the hint fits the refusal -----------------------------------------------------------


@pytest.mark.parametrize("setup", ["unchanged-update", "update-before-invitation",
                                   "event-in-past", "no-registrants"])
def test_refusal_not_about_rows_does_not_suggest_skip_invalid(
        smtp_server: SmtpServer, tmp_path: Path, setup: str) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    args: list[str | Path] = ["send", folder, "--yes"]
    if setup == "unchanged-update":
        assert run_cli("send", folder, "--yes").exit_code == 0
        args += ["--template", "update"]
    elif setup == "update-before-invitation":
        args += ["--template", "update"]
    elif setup == "event-in-past":
        set_key(folder, "event", "start", dt.datetime(2001, 12, 10, 14, 0))
    else:
        (folder / "registrants.csv").write_text("Navn,E-mail,Sprog\n", encoding="utf-8")
    received = len(smtp_server.transactions)
    for extra in ([], ["--skip-invalid"]):
        refused = run_cli(*args, *extra)
        assert refused.exit_code == 1, refused.output
        assert "Traceback" not in refused.output
        hint = refused.stderr.split("Hint:", 1)[1]
        assert "does not help here" in hint and "nothing was sent" in hint
        assert "give --skip-invalid" not in hint
    assert len(smtp_server.transactions) == received


def test_refusal_about_rows_still_suggests_skip_invalid(smtp_server: SmtpServer,
                                                        tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e",
                       [*rows(2), ("Bad Row", "not-an-address", "da")])
    refused = run_cli("send", folder, "--yes")
    assert refused.exit_code == 1
    assert "give --skip-invalid" in refused.stderr.split("Hint:", 1)[1]
    sent = run_cli("send", folder, "--yes", "--skip-invalid")
    assert sent.exit_code == 0, sent.output
    assert len(smtp_server.transactions) == 2


# -- 14: a registrant removed from the list -------------------------------------------------


def write_rows(folder: Path, kept: list[tuple[str, str, str]]) -> None:
    lines = ["Navn,E-mail,Sprog", *(",".join(row) for row in kept)]
    (folder / "registrants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("left", ["pending", "failed", "two pending"])
def test_registrant_removed_from_list_does_not_keep_runs_from_finishing(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path, left: str) -> None:
    everyone = rows(6)
    gone = [everyone[5]] if left != "two pending" else everyone[4:]
    server = start_smtp_server(script=Script(reject={gone[0][1]} if left == "failed"
                                             else set()))
    folder = event_for(server, tmp_path / "e", everyone)
    first = run_cli("send", folder, "--yes", *(["--limit", str(6 - len(gone))]
                                               if left != "failed" else []))
    assert first.exit_code == 3, first.output
    write_rows(folder, [row for row in everyone if row not in gone])

    for _ in range(2):  # and it stays so
        again = run_cli("send", folder, "--yes")
        assert again.exit_code == 0, again.output
        assert f"Not sent to {len(gone)}: removed from the list" in again.stdout
    kept = [row[1] for row in everyone if row not in gone]
    assert sorted(server.received().elements()) == sorted(kept)

    status = run_cli("status", folder)
    assert status.exit_code == 0, status.output
    state = "failed" if left == "failed" else "pending"
    head = status.stdout.splitlines()[0]
    assert f"6 registrants: {6 - len(gone)} sent, {len(gone)} removed from the list" in head
    assert state not in head
    for row in gone:
        assert f"removed from the list: {row[1]} (was line" in status.stdout
        assert f"{state}); not sent to" in status.stdout
    assert "  failed:" not in status.stdout

    # Back in the list: sent to again like anyone pending (a failed one with --retry-failed).
    write_rows(folder, everyone)
    back = run_cli("send", folder, "--yes", *(["--retry-failed"] if left == "failed" else []))
    if left == "failed":
        assert back.exit_code == 3 and "failed" in back.stdout
    else:
        assert back.exit_code == 0, back.output
        assert sorted(server.received().elements()) == sorted(row[1] for row in everyone)


# -- 4: a dry run counts what the real run sends --------------------------------------------


def _spawn(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "invitemail", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _kill_with_in_flight(folder: Path, in_flight: int) -> None:
    """Start a send, wait until ``in_flight`` messages are out and unanswered, kill -9 it."""
    process = _spawn("send", folder, "--yes")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (Journal.path_in(folder).exists() and list(
                    journal_states(folder).values()).count(State.SENDING) == in_flight):
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"the messages never went out: {journal_states(folder)}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)


def _would_send(dry: str) -> int:
    found = re.search(r"Dry run: (\d+) messages? would be sent", dry)
    assert found is not None, dry
    return int(found.group(1))


@pytest.mark.parametrize(("count", "in_flight", "sending"), [
    (15, 4, "concurrency = 4\n"),
    (9, 2, "concurrency = 2\n"),
    (12, 3, "concurrency = 3\ndaily_limit = 10\n"),
])
def test_dry_run_after_a_killed_run_counts_what_the_real_run_sends(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path, count: int,
        in_flight: int, sending: str) -> None:
    server = start_smtp_server(script=Script(reply_delay=60, reply_delay_count=in_flight))
    folder = event_for(server, tmp_path / "e", rows(count), sending=sending)
    _kill_with_in_flight(folder, in_flight)

    dry = run_cli("send", folder, "--dry-run")
    assert dry.exit_code == 0, dry.output
    real = run_cli("send", folder, "--yes")
    done = re.search(r"Sent (\d+) messages?, (\d+) failed, (\d+) uncertain", real.stdout)
    assert done is not None, real.output
    went = sum(int(number) for number in done.groups())  # the relay's answers aside
    assert _would_send(dry.stdout) == went > 0, real.output
    for line in real.stdout.splitlines():  # the same skipped lines, in the same words
        if line.startswith("Skipped"):
            assert line in dry.stdout
    assert f"Skipped {in_flight}: uncertain" in dry.stdout
    held_back = "lets only these go now" in dry.stdout
    assert held_back == (went < count - in_flight)  # the limit kept some


# -- 10: the question says what will happen -------------------------------------------------


@contextlib.contextmanager
def _at_the_question(*args: str | Path) -> Iterator[tuple[int, bytes, subprocess.Popen[bytes]]]:
    """`invitemail send ARGS` on a terminal of its own, run until it asks: (the terminal, what
    it printed so far, the process). The caller answers and waits for it."""
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "invitemail", "send", *map(str, args)],
                               stdin=child, stdout=child, stderr=child,
                               env={**os.environ, "COLUMNS": "500"})
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                seen += os.read(main, 4096)
        yield main, seen, process
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)


def _question(*args: str | Path) -> str:
    """Run `invitemail send ARGS` on a terminal, answer no to its question; the question."""
    with _at_the_question(*args) as (main, seen, process):
        os.write(main, b"n\n")
        assert process.wait(timeout=60) == 1
    text = seen.decode()
    assert "[y/N]" in text, text
    return " ".join(text[text.index("Send "):text.index("[y/N]")].split())


def test_the_question_counts_the_messages_that_go_now(smtp_server: SmtpServer,
                                                      tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(15))
    assert "invitation messages to 15 registrants for" in _question(folder)
    assert run_cli("send", folder, "--yes", "--limit", "4").exit_code == 3
    assert ("invitation messages to 11 registrants (of 15; the others have it"
            in _question(folder))
    assert "messages to 3 registrants (of 15" in _question(folder, "--limit", "3")
    assert run_cli("send", folder, "--yes").exit_code == 0
    received = len(smtp_server.transactions)
    again = subprocess.run([sys.executable, "-m", "invitemail", "send", str(folder)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)  # nothing to send: no question, nothing sent
    assert "no terminal to ask" in again.stderr  # without a terminal it still refuses
    with_terminal = _no_question(folder)
    assert "Sent 0 messages" in with_terminal and "Skipped 15: already sent" in with_terminal
    assert len(smtp_server.transactions) == received


def _no_question(folder: Path) -> str:
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "invitemail", "send", str(folder)],
                               stdin=child, stdout=child, stderr=child,
                               env={**os.environ, "COLUMNS": "500"})
    os.close(child)
    seen = b""
    try:
        while process.poll() is None or select.select([main], [], [], 0.2)[0]:
            if select.select([main], [], [], 0.2)[0]:
                try:
                    seen += os.read(main, 4096)
                except OSError:
                    break
        assert process.wait(timeout=60) == 0
    finally:
        os.close(main)
    assert b"[y/N]" not in seen
    return " ".join(seen.decode().split())


@pytest.mark.parametrize(("section", "key", "new", "said"), [
    ("event", "start", dt.datetime(2030, 12, 11, 15, 30), "the time changed"),
    ("meeting", "password", "NewKx7pQ9", "the password changed"),
])
def test_the_update_question_says_what_changed(smtp_server: SmtpServer, tmp_path: Path,
                                               section: str, key: str, new: Value,
                                               said: str) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    assert run_cli("send", folder, "--yes").exit_code == 0
    set_key(folder, section, key, new)
    question = _question(folder, "--template", "update")
    assert f"update messages to 3 registrants, saying that {said}" in question


# -- 6: the Date header is when the message left --------------------------------------------


@pytest.mark.parametrize("wait", [2.5, 4.0])
def test_date_is_taken_when_the_message_is_handed_over(smtp_server: SmtpServer,
                                                       tmp_path: Path, wait: float) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    with _at_the_question(folder) as (main, _, process):
        time.sleep(wait)  # the coordinator reads the question
        answered = dt.datetime.now(dt.UTC).replace(microsecond=0)
        os.write(main, b"y\n")
        assert process.wait(timeout=60) == 0
    assert len(smtp_server.transactions) == 3
    for transaction in smtp_server.transactions:
        message = message_from_bytes(transaction.data, policy=policy.default)
        date = parsedate_to_datetime(str(message["Date"]))
        assert answered <= date <= dt.datetime.now(dt.UTC), (date, answered)
