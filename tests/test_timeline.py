"""The event's timeline driven end to end on a simulated clock: `send --due` over days of
runs, registrants arriving late, a missed window, a cancellation and a reschedule, each
message counted at a real relay by address and stage."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from email import message_from_bytes, policy
from pathlib import Path

import icalendar
import pytest

from invitemail.campaign import Campaign
from invitemail.errors import InvitemailError
from invitemail.journal.store import Journal
from invitemail.send.delivery import SendOptions, SendResult
from invitemail.send.due import DueResult, run_due
from invitemail.send.due_report import due_summary, status_lines
from invitemail.send.plan import send
from invitemail.send.reschedule import EventCancelled, prepare_reschedule, record_reschedule
from support.event import Raw, Value, edit_event, event_for, set_key
from support.fakes import Quiet
from support.relay import SmtpServer

ZONE = dt.timezone(dt.timedelta(hours=1))  # Copenhagen in December
START = dt.datetime(2030, 12, 10, 14, 0, tzinfo=ZONE)  # the default event's start
SCHEDULE: dict[str, Value] = {"reminders": Raw('["1 day", "1 hour"]'), "followup": "2 hours"}


def person(n: int) -> tuple[str, str, str]:
    return (f"Deltager {n}", f"p{n}@example.org", "da" if n % 2 else "en")


def write_list(folder: Path, people: Iterable[tuple[str, str, str]]) -> None:
    with (folder / "registrants.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("Navn", "E-mail", "Sprog"))
        writer.writerows(people)


def set_start(folder: Path, start: dt.datetime) -> None:
    set_key(folder, "event", "start", start.replace(tzinfo=None))


class Timeline:
    """An event folder, a relay, and a clock that only moves when the test says so."""

    def __init__(self, server: SmtpServer, folder: Path,
                 schedule: Mapping[str, Value] = SCHEDULE) -> None:
        self.server = server
        self.folder = event_for(server, folder, [person(1)])
        with edit_event(self.folder) as toml:
            toml.add_section("schedule", schedule)
        self.now = START - dt.timedelta(days=10)
        self.seen = 0

    def at(self, moment: dt.datetime) -> Timeline:
        self.now = moment
        return self

    def clock(self) -> dt.datetime:
        return self.now

    def send(self, template: str = "invitation", *, reschedule: bool = False) -> SendResult:
        """What `send --yes [--template T] [--reschedule]` does, at the simulated time."""
        campaign = Campaign.open(self.folder, template=template, now=self.now)
        options = SendOptions(reschedule=reschedule)
        if reschedule:
            options.only = prepare_reschedule(campaign)
        result = asyncio.run(send(campaign, password=None, options=options, progress=Quiet(),
                                  wall_clock=self.clock))
        if reschedule:
            record_reschedule(campaign, result.sent, self.now)
        return result

    def due(self, attendance: Path | None = None) -> DueResult:
        """What `send --due [--attendance REPORT]` does, at the simulated time."""
        return asyncio.run(run_due(self.folder, password=lambda campaign: None,
                                   progress=lambda name: contextlib.nullcontext(Quiet()),
                                   attendance=attendance, wall_clock=self.clock))

    def status(self) -> list[str]:
        """`status`'s timeline at the simulated time."""
        journal = Journal.open(self.folder, create=False)
        assert journal is not None
        with journal:
            addresses = [row[1] for row in csv.reader(
                (self.folder / "registrants.csv").open(encoding="utf-8"))][1:]
            return status_lines(self.folder, journal, addresses, self.now)

    def new(self) -> list[tuple[str, str]]:
        """(address, what) of each message the relay took since the last call, sorted."""
        found = [(address, what) for address, what, _ in self.new_with_sequence()]
        return sorted(found)

    def new_with_sequence(self) -> list[tuple[str, str, int]]:
        """(address, what, SEQUENCE): ``what`` is the template read from the subject and the
        calendar's METHOD, and for a reminder how long before the start it was sent."""
        found = []
        for transaction in self.server.transactions[self.seen:]:
            message = message_from_bytes(transaction.data, policy=policy.default)
            calendar = next(icalendar.Calendar.from_ical(part.get_payload(decode=True))
                            for part in message.walk()
                            if part.get_content_type() == "text/calendar")
            vevent = calendar.walk("VEVENT")[0]
            what = TEMPLATES[str(message["Subject"]).split(":")[0]]
            assert str(calendar["METHOD"]) == ("CANCEL" if what == "cancellation" else "REQUEST")
            if what == "reminder":
                before = vevent.decoded("DTSTART") - message["Date"].datetime
                what += " 1 day" if before > dt.timedelta(hours=12) else " 1 hour"
            (address,) = transaction.rcpt_tos
            found.append((address, what, int(vevent["SEQUENCE"])))
        self.seen = len(self.server.transactions)
        return found


TEMPLATES = {"Invitation": "invitation", "Påmindelse": "reminder", "Reminder": "reminder",
             "Aflyst": "cancellation", "Cancelled": "cancellation", "Ændring": "update",
             "Change": "update"}


def each(what: str, *numbers: int) -> list[tuple[str, str]]:
    return [(f"p{n}@example.org", what) for n in numbers]


def test_timeline_whole_event(smtp_server: SmtpServer, tmp_path: Path) -> None:
    t = Timeline(smtp_server, tmp_path / "event")
    write_list(t.folder, [person(1), person(2)])
    day, hour, minute = dt.timedelta(days=1), dt.timedelta(hours=1), dt.timedelta(minutes=1)
    every: list[tuple[str, str]] = []

    def new() -> list[tuple[str, str]]:
        found = t.new()
        every.extend(found)
        return found

    # Ten days before: the coordinator invites 1 and 2. Nothing is due yet.
    assert t.send().sent == 2
    assert new() == each("invitation", 1, 2)
    assert t.due().sent == 0 and new() == []

    # The 1-day reminder, a minute after it is due; a second run in the same minute sends
    # nothing twice.
    assert t.at(START - day + minute).due().sent == 2
    assert new() == each("reminder 1 day", 1, 2)
    again = t.due()
    assert again.sent == 0 and new() == []
    assert "Nothing to send now" in due_summary(again, t.folder)[-1][0]
    assert t.status() == [
        "timeline (times in Europe/Copenhagen; event starts 2030-12-10 14:00):",
        "  reminder 1 day: due 2030-12-09 14:00, until 2030-12-09 20:00 (open now): 2 sent, "
        "0 skipped, 0 pending",
        "  reminder 1 hour: due 2030-12-10 13:00, until 2030-12-10 13:30 (ahead): 0 sent, "
        "0 skipped, 2 pending",
        "  follow-up 2 hours: due 2030-12-10 17:00, until 2030-12-11 17:00: ahead",
        "  next: reminder 1 hour at 2030-12-10 13:00"]

    # 3 registers late and is invited 20 hours before: no "tomorrow" reminder for them.
    write_list(t.folder, [person(1), person(2), person(3)])
    assert t.at(START - dt.timedelta(hours=20)).send().sent == 1
    assert new() == each("invitation", 3)
    write_list(t.folder, [person(1), person(2), person(3), person(5)])  # 5: not invited
    late = t.at(START - dt.timedelta(hours=19, minutes=55)).due()
    assert late.sent == 0 and new() == []
    skipped = {(p.stage.name, k) for p in late.timeline.stages for k, _, _ in p.newly_skipped}
    assert skipped == {("reminder 1 day", "p3@example.org")}
    assert ("1 registrant on the list is not invited yet: `send --due` sends them no reminder "
            f"until `invitemail send {t.folder}` has invited them.", False) \
        in due_summary(late, t.folder)
    assert t.status()[1:3] == [
        "  reminder 1 day: due 2030-12-09 14:00, until 2030-12-09 20:00 (open now): 2 sent, "
        "1 skipped, 0 pending, 1 not invited",
        "  reminder 1 hour: due 2030-12-10 13:00, until 2030-12-10 13:30 (ahead): 0 sent, "
        "0 skipped, 3 pending, 1 not invited"]
    write_list(t.folder, [person(1), person(2), person(3)])

    # Nobody ran --due in the 1-hour reminder's window (13:00-13:30): it is skipped, said,
    # and recorded, never sent late.
    missed = t.at(START - dt.timedelta(minutes=25)).due()
    assert missed.sent == 0 and new() == []
    said = "\n".join(line for line, _ in due_summary(missed, t.folder))
    assert "reminder 1 hour: skipped for 3 registrants (its window closed at 2030-12-10 13:30" \
        in said
    later = t.at(START - dt.timedelta(minutes=24)).due()
    assert [(p.skipped, p.newly_skipped) for p in later.timeline.stages] == [(1, []), (3, [])]

    # A cancellation in the middle: from then on the invitation, reminders, updates and
    # --due refuse, saying when it was cancelled; 4, added now, gets nothing.
    assert t.at(START - dt.timedelta(minutes=20)).send("cancellation").sent == 3
    cancels = t.new_with_sequence()
    every.extend(sorted((a, w) for a, w, _ in cancels))
    assert sorted((a, w) for a, w, _ in cancels) == each("cancellation", 1, 2, 3)
    write_list(t.folder, [person(1), person(2), person(3), person(4)])
    for attempt in (t.due, t.send, lambda: t.send("reminder"), lambda: t.send("update")):
        with pytest.raises(EventCancelled, match="cancelled on 2030-12-10 13:40"):
            attempt()
    assert new() == []
    assert t.status()[-2:] == ["  cancelled (to 3 registrants) on 2030-12-10 13:40",
                               "  cancelled: nothing more is sent until `send --reschedule`"]

    # A reschedule with the start unchanged is refused; with a new start it restores the
    # calendar entry (REQUEST, a higher SEQUENCE) of the three who got the cancellation.
    with pytest.raises(InvitemailError, match=r"event\.start is still 2030-12-10 14:00"):
        t.send("update", reschedule=True)
    start2 = START + dt.timedelta(days=7)
    set_start(t.folder, start2)
    assert t.at(START - dt.timedelta(minutes=10)).send("update", reschedule=True).sent == 3
    updates = t.new_with_sequence()
    every.extend(sorted((a, w) for a, w, _ in updates))
    assert sorted((a, w) for a, w, _ in updates) == each("update", 1, 2, 3)
    assert min(q for _, _, q in updates) > max(q for _, _, q in cancels)
    assert t.send().sent == 1  # the block is lifted: 4's invitation goes
    assert new() == each("invitation", 4)

    # The new start's reminders go afresh, to all four; nothing once the event has started.
    assert t.at(start2 - day + minute).due().sent == 4
    assert new() == each("reminder 1 day", 1, 2, 3, 4)
    assert t.at(start2 - hour + 3 * minute).due().sent == 4
    assert new() == each("reminder 1 hour", 1, 2, 3, 4)
    assert t.due().sent == 0
    assert t.at(start2 + 5 * minute).due().sent == 0

    # The follow-up is due 2 hours after the end: said, not sent.
    after = t.at(start2 + dt.timedelta(hours=3, minutes=1)).due()
    assert after.sent == 0 and new() == []
    assert after.followup_note is not None
    assert after.followup_note.startswith("follow-up due")
    assert f"invitemail send {t.folder} --template followup --attendance REPORT" \
        in after.followup_note
    assert t.status()[-4:] == [
        "  follow-up 2 hours: due 2030-12-17 17:00, until 2030-12-18 17:00: due now: send "
        "--template followup --attendance REPORT",
        "  cancelled (to 3 registrants) on 2030-12-10 13:40",
        "  rescheduled to 2030-12-17 14:00 on 2030-12-10 13:50",
        "  next: nothing more is scheduled"]

    # Its window missed: said once, recorded, then not again.
    gone = t.at(start2 + dt.timedelta(days=2)).due()
    assert gone.followup_note is not None
    assert gone.followup_note.startswith("follow-up not sent: its window closed at "
                                         "2030-12-18 17:00")
    assert t.due().followup_note is None
    assert "not sent, its window closed" in t.status()[3]

    # Exactly what the rules say, per address and stage.
    assert Counter(every) == Counter(
        each("invitation", 1, 2, 3, 4) + each("reminder 1 day", 1, 2)
        + each("cancellation", 1, 2, 3) + each("update", 1, 2, 3)
        + each("reminder 1 day", 1, 2, 3, 4) + each("reminder 1 hour", 1, 2, 3, 4))
    assert len(smtp_server.transactions) == len(every)


# Zoom's meeting participants report: whoever has a row attended.
PARTICIPANTS = ("Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes),Guest\n"
                "Deltager 1,p1@example.org,12/10/2030 13:58,12/10/2030 15:00,62,Yes\n"
                "Deltager 3,P3@example.org,12/10/2030 14:05,12/10/2030 14:40,35,Yes\n"
                "Walk In,walkin@example.org,12/10/2030 14:10,12/10/2030 14:20,10,Yes\n")


def followups_received(server: SmtpServer, since: int) -> list[tuple[str, str]]:
    """(address, "thanks" or "missed") of each follow-up the relay took since ``since``."""
    found = []
    for transaction in server.transactions[since:]:
        message = message_from_bytes(transaction.data, policy=policy.default)
        assert not any(part.get_content_type() == "text/calendar" for part in message.walk())
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        what = "thanks" if "Tak fordi" in text or "Thank you for" in text else "missed"
        (address,) = transaction.rcpt_tos
        found.append((address, what))
    return sorted(found)


def test_due_with_the_attendance_report_sends_the_followup_in_its_window_once(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    t = Timeline(smtp_server, tmp_path / "event")
    write_list(t.folder, [person(n) for n in range(1, 5)])
    report = tmp_path / "participants.csv"
    report.write_text(PARTICIPANTS, encoding="utf-8")
    assert t.send().sent == 4
    t.new()
    end = START + dt.timedelta(hours=1)

    # Before its window the report changes nothing: the follow-up is not due.
    before = t.at(end + dt.timedelta(minutes=30)).due(report)
    assert before.sent == 0 and len(smtp_server.transactions) == t.seen

    # In its window: attendees get thanks, the rest missed; the walk-in is not mailed.
    seen = len(smtp_server.transactions)
    due = t.at(end + dt.timedelta(hours=2, minutes=3)).due(report)
    assert due.sent == 4 and due.complete and due.followup_note is None
    assert followups_received(smtp_server, seen) == [
        ("p1@example.org", "thanks"), ("p2@example.org", "missed"),
        ("p3@example.org", "thanks"), ("p4@example.org", "missed")]
    assert any(line.startswith("follow-up 2 hours: sent 4") for line, _ in due_summary(
        due, t.folder))

    # Again in the same minute, and later in the window: nothing goes twice.
    seen = len(smtp_server.transactions)
    assert t.due(report).sent == 0
    assert t.at(end + dt.timedelta(hours=20)).due(report).sent == 0
    assert len(smtp_server.transactions) == seen
    assert "sent" in t.status()[-2]
