"""Sending end to end: the CLI and the library against real SMTP servers on 127.0.0.1.

The library-level tests run the whole pipeline (check, journal, transport) with a fake
clock, so backoff and rate limiting take no real time; the CLI tests use faults that need
no waiting (5xx, AUTH, TLS).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import icalendar
import pytest

from invitemail.campaign import Campaign
from invitemail.journal.store import State
from invitemail.send.delivery import SendOptions, SendResult
from invitemail.send.plan import send
from support.checks import assert_exactly_once, journal_states
from support.cli import run_cli
from support.event import NOW, edit_event, event_for, rows
from support.fakes import Quiet
from support.relay import FakeClock, Script, SmtpServer

PASSWORD = "smtp-secret-3f9a"  # a unique marker: it must never show up outside the server


def send_library(folder: Path, *, password: str | None = None, clock: FakeClock | None = None,
                 template: str = "invitation", **options: Any) -> SendResult:
    campaign = Campaign.open(folder, template=template, now=NOW)
    fake = clock or FakeClock()
    return asyncio.run(send(campaign, password=password, options=SendOptions(**options),
                            progress=Quiet(), clock=fake, sleep=fake.sleep))


# -- issue 2: the pipeline ----------------------------------------------------------------


def test_send_one_message_per_unique_registrant_with_one_recipient(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    people = [*rows(4), ("Mette Holm", "Mette.Holm@example.org", "da"),
              ("Mette Holm", "mette.holm@EXAMPLE.org", "da")]
    folder = event_for(smtp_server, tmp_path / "e", people)

    run = run_cli("send", folder, "--yes")

    assert run.exit_code == 0, run.output
    assert "Sent 5 messages, 0 failed, 0 uncertain" in run.stdout
    assert_exactly_once(smtp_server, [f"user{i}@example.org" for i in range(4)]
                        + ["Mette.Holm@example.org"])
    for transaction in smtp_server.transactions:
        assert len(transaction.rcpt_tos) == 1
        message = message_from_bytes(transaction.data, policy=policy.default)
        assert [a.addr_spec for a in message["To"].addresses] == list(transaction.rcpt_tos)
        assert transaction.mail_from == "arrangementer@example.org"
    assert "Traceback" not in run.output


def test_send_danish_names_and_subjects_survive(smtp_server: SmtpServer,
                                                tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", [("Åse Ærø Østergård", "ase@example.org",
                                                      "da")])
    assert run_cli("send", folder, "--yes").exit_code == 0
    message = message_from_bytes(smtp_server.transactions[0].data, policy=policy.default)
    assert message["To"].addresses[0].display_name == "Åse Ærø Østergård"
    assert str(message["From"].addresses[0].display_name) == "Djøf Arrangementer"
    assert "Persondata i praksis" in str(message["Subject"])
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Kære Åse" in text and "tirsdag den 10. december 2030 kl. 14.00" in text
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    vevent = icalendar.Calendar.from_ical(calendar.get_payload(decode=True)).walk("VEVENT")[0]
    assert vevent.decoded("DTSTART") == dt.datetime(2030, 12, 10, 13, 0, tzinfo=dt.UTC)


def test_send_rerun_sends_nothing_twice(smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    assert run_cli("send", folder, "--yes").exit_code == 0
    again = run_cli("send", folder, "--yes")
    assert again.exit_code == 0
    assert "Sent 0 messages" in again.stdout and "Skipped 3: already sent." in again.stdout
    assert len(smtp_server.transactions) == 3


def test_send_dry_run_connects_to_nothing(smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    run = run_cli("send", folder, "--dry-run")
    assert run.exit_code == 0
    assert "Dry run: 3 messages would be sent" in run.stdout
    assert smtp_server.connections == 0
    assert not (folder / ".invitemail").exists()


def test_send_test_to_sends_one_marked_copy_and_journals_nothing(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    run = run_cli("send", folder, "--yes", "--test-to", "me@example.org")
    assert run.exit_code == 0, run.output
    assert [t.rcpt_tos for t in smtp_server.transactions] == [("me@example.org",)]
    message = message_from_bytes(smtp_server.transactions[0].data, policy=policy.default)
    assert str(message["Subject"]).startswith("[TEST] ")
    assert "user0@example.org" not in smtp_server.transactions[0].data.decode("ascii")
    assert journal_states(folder) == {} if (folder / ".invitemail").exists() else True
    # The real run afterwards still sends to everyone.
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert len(smtp_server.transactions) == 4


def test_send_without_terminal_or_yes_refuses(smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    run = run_cli("send", folder)
    assert run.exit_code == 2
    assert "add --yes to send" in run.stderr
    assert smtp_server.connections == 0


# -- issue 3: relays that misbehave -------------------------------------------------------


async def _send_in_loop(folder: Path, server_options: dict[str, Any],
                        count: int, **send_options: Any) -> tuple[SendResult, SmtpServer]:
    async with SmtpServer(**server_options) as server:
        event_for(server, folder, rows(count), sending=send_options.pop("sending", ""))
        campaign = Campaign.open(folder, now=NOW)
        fake = FakeClock()
        result = await send(campaign, password=send_options.pop("password", None),
                            options=SendOptions(**send_options), progress=Quiet(),
                            clock=fake, sleep=fake.sleep)
        return result, server


def test_send_random_451s_still_deliver_exactly_once(tmp_path: Path) -> None:
    script = Script(temp_fail_rate=0.1, seed=7)
    result, server = asyncio.run(_send_in_loop(tmp_path / "e", {"script": script}, 300,
                                               sending="concurrency = 4\nmax_attempts = 8\n"))
    assert result.complete and result.sent == 300 and result.retried > 0
    assert server.handler.temp_failures > 0
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(300)])
    assert set(journal_states(tmp_path / "e").values()) == {State.SENT}


def test_send_connection_dropped_every_37th_still_delivers_exactly_once(tmp_path: Path) -> None:
    result, server = asyncio.run(_send_in_loop(tmp_path / "e",
                                               {"script": Script(drop_every=37)}, 300))
    assert result.complete and result.sent == 300
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(300)])
    assert server.connections > 4


def test_send_421_at_connect_backs_off_and_completes(tmp_path: Path) -> None:
    result, server = asyncio.run(_send_in_loop(
        tmp_path / "e", {"script": Script(refuse_connections=3)}, 20,
        sending="concurrency = 2\nmax_attempts = 6\n"))
    assert result.complete and result.sent == 20
    assert server.handler.refused == 3
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(20)])


def test_send_rate_20_per_second_is_kept_within_5_percent(tmp_path: Path) -> None:
    async def run() -> tuple[SendResult, list[float]]:
        async with SmtpServer() as server:
            folder = event_for(server, tmp_path / "e", rows(400),
                               sending='concurrency = 4\nrate = "20/s"\n')
            campaign = Campaign.open(folder, now=NOW)
            fake = FakeClock()
            stamps: list[float] = []

            class Stamps(Quiet):
                def finished(self, key: str, state: str, reply: str) -> None:
                    stamps.append(fake())

            result = await send(campaign, password=None, options=SendOptions(),
                                progress=Stamps(), clock=fake, sleep=fake.sleep)
            return result, stamps

    result, stamps = asyncio.run(run())
    assert result.sent == 400
    observed = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 19.0 <= observed <= 21.0, observed


def test_send_550_for_three_then_retry_failed_sends_only_those(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path) -> None:
    refused = {"user3@example.org", "user7@example.org", "user11@example.org"}
    server = start_smtp_server(script=Script(reject=set(refused)))
    folder = event_for(server, tmp_path / "e", rows(15))

    run = run_cli("send", folder, "--yes")

    assert run.exit_code == 3, run.output
    assert "Sent 12 messages, 3 failed" in run.stdout
    assert "failed: user3@example.org: 550" in run.stderr
    assert "--retry-failed" in run.stderr
    states = journal_states(folder)
    assert {a for a, s in states.items() if s is State.FAILED} == refused
    status = run_cli("status", folder)
    assert "12 sent, 3 failed" in status.stdout and "550" in status.stdout

    server.script.refusing = False
    plain = run_cli("send", folder, "--yes")
    assert plain.exit_code == 3 and "Skipped 3: failed before" in plain.stdout
    retry = run_cli("send", folder, "--yes", "--retry-failed")
    assert retry.exit_code == 0, retry.output
    assert "Sent 3 messages" in retry.stdout
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(15)])


def test_send_535_on_auth_exits_1_and_names_host_and_user(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_smtp_server(auth=("arrangementer", "the-right-one"))
    folder = event_for(server, tmp_path / "e", rows(4))
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", PASSWORD)

    run = run_cli("send", folder, "--yes")

    assert run.exit_code == 1, run.output
    assert f"127.0.0.1:{server.port}" in run.stderr and "arrangementer" in run.stderr
    assert PASSWORD not in run.output
    assert server.transactions == []
    assert State.SENT not in set(journal_states(folder).values())
    journal_bytes = b"".join(p.read_bytes() for p in (folder / ".invitemail").iterdir())
    assert PASSWORD.encode() not in journal_bytes


def test_send_auth_over_starttls_with_private_ca(start_smtp_server: Callable[..., SmtpServer],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_smtp_server(tls="starttls", auth=("arrangementer", PASSWORD))
    folder = event_for(server, tmp_path / "e", rows(3))
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", PASSWORD)
    run = run_cli("send", folder, "--yes")
    assert run.exit_code == 0, run.output
    assert all(t.tls and t.user == "arrangementer" for t in server.transactions)
    assert len(server.transactions) == 3


def test_send_refuses_a_certificate_it_cannot_verify(start_smtp_server: Callable[..., SmtpServer],
                                                     tmp_path: Path) -> None:
    server = start_smtp_server(tls="tls")
    folder = event_for(server, tmp_path / "e", rows(2), smtp={"ca_file": '""'})
    with edit_event(folder) as toml:
        toml.drop("smtp", "ca_file")
    run = run_cli("send", folder, "--yes")
    assert run.exit_code == 1, run.output
    assert f"127.0.0.1:{server.port}" in run.stderr and "ca_file" in run.stderr
    assert server.transactions == []


def test_send_refuses_auth_over_plaintext_unless_allowed(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_smtp_server(auth=("arrangementer", PASSWORD))
    folder = event_for(server, tmp_path / "e", rows(2),
                       smtp={"allow_insecure_auth": "false"})
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", PASSWORD)
    run = run_cli("send", folder, "--yes")
    assert run.exit_code == 1, run.output
    assert "allow_insecure_auth" in run.output
    assert server.connections == 0


def test_status_report_neutralises_formulas(start_smtp_server: Callable[..., SmtpServer],
                                            tmp_path: Path) -> None:
    server = start_smtp_server(script=Script(
        reject={"user1@example.org"}, reject_reply="550 =HYPERLINK(\"http://x\") {address}"))
    folder = event_for(server, tmp_path / "e", rows(3))
    assert run_cli("send", folder, "--yes").exit_code == 3
    report = tmp_path / "report.csv"
    run = run_cli("status", folder, "--report", report)
    assert run.exit_code == 0 and "wrote 3 rows" in run.stdout
    with report.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["state"] for r in table] == ["sent", "failed", "sent"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in table for cell in r.values())


# -- crash safety: a real process, killed ------------------------------------------------


def _spawn_send(folder: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "invitemail", "send", str(folder), "--yes",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_send_killed_half_way_resumes_without_duplicates(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path) -> None:
    server = start_smtp_server(script=Script())
    addresses = [f"user{i}@example.org" for i in range(2000)]
    folder = event_for(server, tmp_path / "e", rows(2000), sending="concurrency = 4\n")

    process = _spawn_send(folder)
    _wait_for(lambda: len(server.transactions) >= 300)
    # From here the relay holds each message's reply, so messages are surely in flight (their
    # data taken, no answer yet) when the process is killed; the rerun finds it fast again.
    server.script.reply_delay = 60.0
    _wait_for(lambda: server.handler.messages_seen > len(server.transactions))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    server.script.reply_delay = 0.0
    first_run = len(server.transactions)
    assert first_run < 2000

    rerun = _spawn_send(folder)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 3, (out + err).decode()  # the uncertain ones remain
    states = journal_states(folder)
    uncertain = {a for a, s in states.items() if s is State.UNCERTAIN}
    assert 1 <= len(uncertain) <= 4
    assert {s for a, s in states.items() if a not in uncertain} == {State.SENT}
    received = server.received()
    for address in addresses:
        if address in uncertain:
            assert received[address] <= 1
        else:
            assert received[address] == 1, address
    status = run_cli("status", folder)
    assert f"{len(uncertain)} uncertain" in status.stdout
    assert all(a in status.stdout for a in uncertain)
    # Not resent unless asked; then exactly those.
    again = run_cli("send", folder, "--yes")
    assert again.exit_code == 3 and f"Skipped {len(uncertain)}: uncertain" in again.stdout
    before = len(server.transactions)
    resend = run_cli("send", folder, "--yes", "--resend-uncertain")
    assert resend.exit_code == 0, resend.output
    assert len(server.transactions) - before == len(uncertain)


@pytest.mark.slow
def test_send_ctrl_c_stops_gracefully_and_says_how_to_continue(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path) -> None:
    server = start_smtp_server(script=Script(reply_delay=0.01))
    folder = event_for(server, tmp_path / "e", rows(400), sending="concurrency = 2\n")
    process = _spawn_send(folder)
    _wait_for(lambda: len(server.transactions) >= 20)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3, (out + err).decode()
    assert "To continue, run the same command again" in err.decode()
    assert "Traceback" not in (out + err).decode()
    states = journal_states(folder)
    assert State.SENDING not in set(states.values())
    sent = {a for a, s in states.items() if s is State.SENT}
    assert sent == {a for t in server.transactions for a in t.rcpt_tos}
    finish = _spawn_send(folder)
    finish.communicate(timeout=120)
    assert finish.returncode == 0
    assert_exactly_once(server, [f"user{i}@example.org" for i in range(400)])


@pytest.mark.slow
def test_send_ctrl_c_at_a_terminal_reaches_the_workers_too_and_they_keep_quiet(
        start_smtp_server: Callable[..., SmtpServer], tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole process group, the worker processes that build
    the messages (1,200 rows) included: the run still stops as it does above."""
    server = start_smtp_server(script=Script(reply_delay=0.01))
    folder = event_for(server, tmp_path / "e", rows(1200), sending="concurrency = 2\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "INVITEMAIL_WORKERS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "invitemail", "send", str(folder),
                                "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, start_new_session=True)
    _wait_for(lambda: len(server.transactions) >= 20)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3, (out + err).decode()
    assert "To continue, run the same command again" in err.decode()
    assert "Traceback" not in (out + err).decode() and "KeyboardInterrupt" not in err.decode()
    states = journal_states(folder)
    assert State.SENDING not in set(states.values())
    assert {a for a, s in states.items() if s is State.SENT} == \
        {a for t in server.transactions for a in t.rcpt_tos}


def test_journal_file_is_private(smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert (folder / ".invitemail").stat().st_mode & 0o777 == 0o700
    assert (folder / ".invitemail" / "journal.sqlite").stat().st_mode & 0o777 == 0o600
    db = sqlite3.connect(folder / ".invitemail" / "journal.sqlite")
    dump = "\n".join(db.iterdump())
    assert "Kx7pQ9" not in dump and "Kære" not in dump  # no meeting password, no body
