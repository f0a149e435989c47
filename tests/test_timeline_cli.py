"""`send --due`, the cancellation's block, `send --reschedule` and `status`'s timeline, through
the command line on the real clock (the event is placed relative to now)."""

from __future__ import annotations

import asyncio
import datetime as dt
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from invitemail.campaign import Campaign
from invitemail.journal.folderlock import FolderLock
from invitemail.send.delivery import SendOptions
from invitemail.send.plan import send
from support.cli import run_cli
from support.event import edit_event, event_for, set_key
from support.fakes import Quiet
from support.relay import SmtpServer

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def event_starting_in(server: SmtpServer, folder: Path, delay: dt.timedelta,
                      schedule: str = 'reminders = ["1 day", "1 hour"]',
                      people: int = 2) -> tuple[Path, dt.datetime]:
    """An event folder whose start is ``delay`` from now (to the minute), with ``schedule``."""
    start = (dt.datetime.now(COPENHAGEN) + delay).replace(second=0, microsecond=0)
    folder = event_for(server, folder, [(f"Deltager {n}", f"p{n}@example.org", "da")
                                        for n in range(1, people + 1)])
    set_start(folder, start)
    if schedule:
        with edit_event(folder) as toml:
            toml.section_source("schedule", schedule)
    return folder, start


def set_start(folder: Path, start: dt.datetime) -> None:
    set_key(folder, "event", "start", start.replace(tzinfo=None))


def invite_at(folder: Path, when: dt.datetime) -> int:
    """The invitation, sent as if at ``when`` (the journal records that time)."""
    campaign = Campaign.open(folder, now=when)
    result = asyncio.run(send(campaign, password=None, options=SendOptions(), progress=Quiet(),
                              wall_clock=lambda: when))
    return result.sent


def subjects(server: SmtpServer, start: int = 0) -> list[str]:
    return [str(message_from_bytes(t.data, policy=policy.default)["Subject"])
            for t in server.transactions[start:]]


def test_due_cli_sends_the_open_window_once_and_skips_the_closed_one(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder, start = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(minutes=50))
    assert invite_at(folder, dt.datetime.now(dt.UTC) - dt.timedelta(days=3)) == 2

    # No terminal and no --yes: --due asks nothing (cron), and sends the 1-hour reminder.
    run = run_cli("send", folder, "--due")
    assert run.exit_code == 0, run.output
    assert "reminder 1 hour: sent 2, 0 failed, 0 uncertain." in run.stdout
    assert "reminder 1 day: skipped for 2 registrants (its window closed at " in run.stdout
    assert [s.split(":")[0] for s in subjects(smtp_server, 2)] == ["Påmindelse"] * 2

    again = run_cli("send", folder, "--due", "--yes")
    assert again.exit_code == 0
    assert "Nothing to send now" in again.stdout and "skipped" not in again.stdout
    assert len(smtp_server.transactions) == 4

    status = run_cli("status", folder)
    assert status.exit_code == 0
    hour = f"{start - dt.timedelta(hours=1):%Y-%m-%d %H:%M}"
    assert f"timeline (times in Europe/Copenhagen; event starts {start:%Y-%m-%d %H:%M}):" \
        in status.stdout
    until = f"{start - dt.timedelta(minutes=30):%Y-%m-%d %H:%M}"
    assert f"  reminder 1 hour: due {hour}, until {until} (open now): 2 sent, 0 skipped, " \
        "0 pending" in status.stdout
    assert "  reminder 1 day: due " in status.stdout
    assert "(closed): 0 sent, 2 skipped, 0 pending" in status.stdout
    assert "  next: nothing more is scheduled" in status.stdout


def test_due_cli_dry_run_lock_and_usage(smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder, _ = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(minutes=50))
    assert invite_at(folder, dt.datetime.now(dt.UTC) - dt.timedelta(days=3)) == 2

    dry = run_cli("send", folder, "--due", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "reminder 1 hour: dry run: 2 messages would be sent; nothing was sent." in dry.stdout
    assert len(smtp_server.transactions) == 2

    lock = FolderLock.acquire(folder)
    try:
        busy = run_cli("send", folder, "--due")
    finally:
        lock.release()
    assert busy.exit_code == 1 and "another invitemail send" in busy.stderr
    assert len(smtp_server.transactions) == 2

    for extra in (["--template", "reminder"], ["--reschedule"], ["--test-to", "a@example.org"],
                  ["--retry-failed"]):
        wrong = run_cli("send", folder, "--due", *extra)
        assert wrong.exit_code == 2
        assert f"--due sends what the schedule says; it does not go with {extra[0]}" \
            in wrong.stderr


def test_due_cli_without_a_schedule_says_what_to_add(smtp_server: SmtpServer,
                                                     tmp_path: Path) -> None:
    folder, _ = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(days=2), schedule="")
    run = run_cli("send", folder, "--due")
    assert run.exit_code == 1
    assert "there is no [schedule], so nothing is ever due" in run.stderr
    assert 'Hint: add [schedule] with reminders = ["1 day", "1 hour"]' in run.stderr
    assert "Traceback" not in run.output


def sequence_and_method(data: bytes) -> tuple[int, str]:
    message = message_from_bytes(data, policy=policy.default)
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    calendar = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    return int(calendar.walk("VEVENT")[0]["SEQUENCE"]), str(calendar["METHOD"])


def test_cancelled_event_refuses_until_rescheduled(smtp_server: SmtpServer,
                                                   tmp_path: Path) -> None:
    folder, start = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(days=3))
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert run_cli("send", folder, "--yes", "--template", "cancellation").exit_code == 0
    cancel_sequence, method = sequence_and_method(smtp_server.transactions[-1].data)
    assert method == "CANCEL"
    today = dt.datetime.now(COPENHAGEN)

    for args in ([], ["--template", "reminder"], ["--template", "update"], ["--due"]):
        run = run_cli("send", folder, "--yes", *args)
        assert run.exit_code == 1, (args, run.output)
        assert f"{folder}: the event was cancelled on {today:%Y-%m-%d} " in run.stderr
        assert "(a cancellation went to 2 registrants)" in run.stderr
        assert f"run `invitemail send {folder} --reschedule`" in run.stderr
        assert "Traceback" not in run.output
    assert len(smtp_server.transactions) == 4

    same = run_cli("send", folder, "--yes", "--reschedule")
    assert same.exit_code == 1
    assert f"event.start is still {start:%Y-%m-%d %H:%M}, as it was when the event was " \
        "cancelled" in same.stderr
    assert run_cli("send", folder, "--reschedule", "--template", "reminder").exit_code == 2

    set_start(folder, start + dt.timedelta(days=1))
    moved = run_cli("send", folder, "--yes", "--reschedule")
    assert moved.exit_code == 0, moved.output
    assert "Sent 2 messages" in moved.stdout and "The event is rescheduled" in moved.stdout
    restored = [sequence_and_method(t.data) for t in smtp_server.transactions[4:]]
    assert all(method == "REQUEST" and sequence > cancel_sequence
               for sequence, method in restored) and len(restored) == 2

    rerun = run_cli("send", folder, "--yes", "--reschedule")
    assert rerun.exit_code == 0 and "Skipped 2: already sent." in rerun.stdout
    with (folder / "registrants.csv").open("a", encoding="utf-8") as file:
        file.write("Deltager 3,p3@example.org,en\n")
    invited = run_cli("send", folder, "--yes")
    assert invited.exit_code == 0 and "Sent 1 message" in invited.stdout
    assert len(smtp_server.transactions) == 7

    status = run_cli("status", folder)
    assert f"  cancelled (to 2 registrants) on {today:%Y-%m-%d}" in status.stdout
    new_start = start + dt.timedelta(days=1)
    assert f"  rescheduled to {new_start:%Y-%m-%d %H:%M} on {today:%Y-%m-%d}" in status.stdout
    assert f"  next: reminder 1 day at {new_start - dt.timedelta(days=1):%Y-%m-%d %H:%M}" \
        in status.stdout


def test_reschedule_of_an_event_never_cancelled_points_to_update(smtp_server: SmtpServer,
                                                                 tmp_path: Path) -> None:
    folder, _ = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(days=3))
    assert run_cli("send", folder, "--yes").exit_code == 0
    run = run_cli("send", folder, "--yes", "--reschedule")
    assert run.exit_code == 1
    assert "the event was not cancelled, so there is nothing to reschedule" in run.stderr
    assert f"invitemail send {folder} --template update" in run.stderr


def remove_journal(folder: Path) -> None:
    for path in (folder / ".invitemail").glob("journal.sqlite*"):
        path.unlink()


def test_cancellation_and_reschedule_survive_a_rebuilt_journal(smtp_server: SmtpServer,
                                                               tmp_path: Path) -> None:
    """The block is read from the deliveries, which the record of sent messages keeps: a
    journal deleted and rebuilt is still cancelled, and still rescheduled."""
    folder, start = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(days=3))
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert run_cli("send", folder, "--yes", "--template", "cancellation").exit_code == 0
    remove_journal(folder)
    with (folder / "registrants.csv").open("a", encoding="utf-8") as file:
        file.write("Deltager 3,p3@example.org,en\n")

    rebuilt = run_cli("send", folder, "--yes", "--restore-journal")
    assert rebuilt.exit_code == 1, rebuilt.output
    assert "the event was cancelled on" in rebuilt.stderr
    assert len(smtp_server.transactions) == 4

    set_start(folder, start + dt.timedelta(days=2))
    moved = run_cli("send", folder, "--yes", "--reschedule")
    assert moved.exit_code == 0, moved.output
    assert sorted(a for t in smtp_server.transactions[4:] for a in t.rcpt_tos) == \
        ["p1@example.org", "p2@example.org"]
    remove_journal(folder)
    again = run_cli("send", folder, "--yes", "--restore-journal")
    assert again.exit_code == 0, again.output
    assert [a for t in smtp_server.transactions[6:] for a in t.rcpt_tos] == ["p3@example.org"]


def test_due_cli_two_stages_at_once_share_one_password(start_smtp_server: Any,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two windows open at once (the machine was off, or they overlap): both go in one run,
    with the one password the run was given."""
    server = start_smtp_server(auth=("arrangementer@example.org", "pw 1"),
                               auth_require_tls=False)
    folder, _ = event_starting_in(server, tmp_path / "e", dt.timedelta(minutes=45),
                                  schedule='reminders = ["1 hour", "50 minutes"]')
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    campaign = Campaign.open(folder, now=when)
    assert asyncio.run(send(campaign, password="pw 1", options=SendOptions(),
                            progress=Quiet(), wall_clock=lambda: when)).sent == 2
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", "pw 1")
    run = run_cli("send", folder, "--due")
    assert run.exit_code == 0, run.output
    assert "reminder 1 hour: sent 2," in run.stdout
    assert "reminder 50 minutes: sent 2," in run.stdout
    assert len(server.transactions) == 6


def test_due_cli_refuses_a_lost_journal(smtp_server: SmtpServer, tmp_path: Path) -> None:
    """A journal deleted would read as "nobody invited yet": --due says what happened
    instead of sending nothing in silence."""
    folder, _ = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(minutes=50))
    assert invite_at(folder, dt.datetime.now(dt.UTC) - dt.timedelta(days=3)) == 2
    remove_journal(folder)
    run = run_cli("send", folder, "--due")
    assert run.exit_code == 1
    assert "journal.sqlite" in run.stderr and "--restore-journal" in run.stderr
    assert len(smtp_server.transactions) == 2


def test_reschedule_at_the_same_time_by_raising_the_sequence(smtp_server: SmtpServer,
                                                             tmp_path: Path) -> None:
    """Held at the same time after all: a sequence above the cancellation's is the change."""
    folder, _ = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(days=3))
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert run_cli("send", folder, "--yes", "--template", "cancellation").exit_code == 0
    cancel_sequence, _ = sequence_and_method(smtp_server.transactions[-1].data)
    refused = run_cli("send", folder, "--yes", "--reschedule")
    assert refused.exit_code == 1
    assert f"raise [event] sequence above {cancel_sequence}" in refused.stderr
    set_key(folder, "event", "sequence", cancel_sequence + 1)
    run = run_cli("send", folder, "--yes", "--reschedule")
    assert run.exit_code == 0, run.output
    restored = [sequence_and_method(t.data) for t in smtp_server.transactions[4:]]
    assert restored == [(cancel_sequence + 1, "REQUEST")] * 2


def test_due_cli_leaves_out_a_bad_row_added_later(smtp_server: SmtpServer,
                                                  tmp_path: Path) -> None:
    """A row with a problem added after the invitations does not stop every reminder of an
    unattended run: it is left out (it was never invited) and said."""
    folder, _ = event_starting_in(smtp_server, tmp_path / "e", dt.timedelta(minutes=50))
    assert invite_at(folder, dt.datetime.now(dt.UTC) - dt.timedelta(days=3)) == 2
    with (folder / "registrants.csv").open("a", encoding="utf-8") as file:
        file.write("Deltager 3,not an address,da\n")
    run = run_cli("send", folder, "--due")
    assert run.exit_code == 0, run.output
    assert "reminder 1 hour: sent 2," in run.stdout
    assert "reminder 1 hour: 1 row of the list with problems left out; `invitemail check " \
        in run.stderr
    assert len(smtp_server.transactions) == 4


def test_due_cli_with_the_attendance_report_sends_the_followup_once(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    # The event ended 2 hours 5 minutes ago; its follow-up is due 2 hours after the end.
    ago = -dt.timedelta(hours=3, minutes=5)
    folder, start = event_starting_in(smtp_server, tmp_path / "e", ago,
                                      schedule='followup = "2 hours"', people=3)
    assert invite_at(folder, start - dt.timedelta(days=3)) == 3
    report = tmp_path / "participants.csv"
    report.write_text("Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes)\n"
                      "Deltager 2,p2@example.org,x,y,55\n", encoding="utf-8")

    without = run_cli("send", folder, "--due")
    assert without.exit_code == 0, without.output
    assert "follow-up due (until " in without.stdout and len(smtp_server.transactions) == 3

    run = run_cli("send", folder, "--due", "--attendance", report)
    assert run.exit_code == 0, run.output
    assert "follow-up 2 hours: sent 3, 0 failed, 0 uncertain." in run.stdout
    assert sorted(s.split(":")[0] for s in subjects(smtp_server, 3)) == [
        "Tak fordi du deltog", "Vi savnede dig", "Vi savnede dig"]

    again = run_cli("send", folder, "--due", "--attendance", report)
    assert again.exit_code == 0, again.output
    assert len(smtp_server.transactions) == 6
