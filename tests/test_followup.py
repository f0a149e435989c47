"""`send --template followup --attendance FILE`: attendees get `thanks`, everyone else on the
list `missed`, through a real SMTP server; the report's other rows are listed, not mailed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from invitemail.campaign import Campaign
from invitemail.inputs.registrants import unique_registrants
from invitemail.journal.store import Journal
from invitemail.render.renderer import Renderer
from invitemail.send.delivery import SendOptions
from invitemail.send.plan import send
from support.attendance_reports import TEAMS, ZOOM_MEETING, ZOOM_WEBINAR, write_report
from support.cli import run_cli
from support.event import NOW, EventBuilder, set_key
from support.relay import SmtpServer

# The event is over (the real clock runs in `send`).
PAST = dt.datetime(2020, 12, 10, 14, 0)
LINKS = {"recording_url": "https://zoom.us/rec/share/abc",
         "slides_url": "https://example.org/slides.pdf",
         "next_url": "https://example.org/next-webinar"}
REGISTRANTS = [("Søren Kierkegaard", "soren@example.org", "da"),
               ("Åse Møller", "ase@example.org", "en"),
               ("Late Joiner", "late@example.org", "da"),
               ("Karen Blixen", "karen@example.org", "en")]
SUBJECTS = {("thanks", "da"): "Tak fordi du deltog: Persondata i praksis",
            ("thanks", "en"): "Thank you for attending: Persondata i praksis",
            ("missed", "da"): "Vi savnede dig: Persondata i praksis",
            ("missed", "en"): "Sorry we missed you: Persondata i praksis"}


def followup_event(server: SmtpServer | None, folder: Path, *,
                   links: Mapping[str, str] = LINKS,
                   rows: list[tuple[str, str, str]] = REGISTRANTS) -> Path:
    builder = EventBuilder(rows=rows).set("event", "start", PAST)
    for key, url in links.items():
        builder.set("event", key, url)
    if server is not None:
        builder.toml.replace_section("smtp", {"host": "127.0.0.1", "port": server.port,
                                              "security": "none", "timeout": 5})
        builder.drop("sending")
    return builder.write(folder).folder


class Quiet:
    """A Progress that shows nothing."""

    def started(self, total: int) -> None:
        pass

    def finished(self, key: str, state: str, reply: str) -> None:
        pass

    def retrying(self, key: str, reply: str, delay: float) -> None:
        pass


def received(server: SmtpServer) -> dict[str, EmailMessage]:
    found = {}
    for transaction in server.transactions:
        message = message_from_bytes(transaction.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        (recipient,) = transaction.rcpt_tos
        assert recipient not in found, f"{recipient} got two messages"
        found[recipient] = message
    return found


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def test_followup_zoom_webinar_report_thanks_attendees_and_misses_the_rest(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    report = write_report(tmp_path, "attendees.csv", ZOOM_WEBINAR)

    run = run_cli("send", folder, "--template", "followup", "--attendance", report, "--yes")

    assert run.exit_code == 0, run.output
    assert "Sent 4 messages, 0 failed" in run.stdout
    got = received(smtp_server)
    # Søren came (twice); Late Joiner is "No" with 3 minutes in the session; Åse is "No";
    # Karen is not in the report at all.
    assert {address: str(m["Subject"]) for address, m in got.items()} == {
        "soren@example.org": SUBJECTS["thanks", "da"],
        "late@example.org": SUBJECTS["thanks", "da"],
        "ase@example.org": SUBJECTS["missed", "en"],
        "karen@example.org": SUBJECTS["missed", "en"]}
    for message in got.values():  # the event is over: no calendar entry to add
        kinds = [part.get_content_type() for part in message.walk()]
        assert kinds == ["multipart/alternative", "text/plain", "text/html"]
    thanks, missed = text_of(got["soren@example.org"]), text_of(got["ase@example.org"])
    assert "Tak fordi du deltog i webinaret" in thanks
    assert "https://zoom.us/rec/share/abc" in thanks and "slides.pdf" in thanks
    assert "We are sorry we did not see you" in missed
    assert "https://zoom.us/rec/share/abc" in missed and "next-webinar" in missed
    assert "https://zoom.us/rec/share/abc" in html_of(got["ase@example.org"])
    # The report's people who are not registrants are named, and not mailed.
    assert "walkin@example.org (Walk In, attended) is not on the registrant list" in run.stderr
    assert f"{report}:17: warning: Phone Caller has no email address" in run.stderr
    assert f"{report}:7: warning: arrangementer@example.org" in run.stderr
    assert "Traceback" not in run.output


def test_followup_status_shows_who_got_which_and_a_rerun_sends_nothing(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    report = write_report(tmp_path, "attendees.csv", ZOOM_WEBINAR)
    invited = asyncio.run(send(  # the invitation first, before the event
        Campaign.open(folder, now=dt.datetime(2020, 12, 1, tzinfo=dt.UTC)), password=None,
        options=SendOptions(), progress=Quiet()))
    assert invited.sent == 4
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:
        calendars = journal.calendars()
    assert run_cli("send", folder, "-t", "followup", "--attendance", report,
                   "--yes").exit_code == 0

    status = run_cli("status", folder, "--template", "followup")
    assert status.exit_code == 0, status.output
    assert "template 'followup', 4 registrants: 4 sent" in status.stdout
    assert "follow-ups: 2 thanks, 2 missed" in status.stdout
    assert "  thanks: soren@example.org (sent)" in status.stdout
    assert "  missed: karen@example.org (sent)" in status.stdout

    again = run_cli("send", folder, "-t", "followup", "--attendance", report, "--yes")
    assert again.exit_code == 0 and "Sent 0 messages" in again.stdout
    assert len(smtp_server.transactions) == 8  # 4 invitations, 4 follow-ups, nothing twice
    assert len(calendars) == 4
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:  # the follow-up carried no calendar: the entries stay as invited
        assert journal.calendars() == calendars
        assert journal.variants("invitation") == {}


@pytest.mark.parametrize(("name", "text", "encoding", "attended"), [
    ("participants.csv", ZOOM_MEETING, "utf-8", {"karen@example.org"}),
    ("teams.csv", TEAMS, "utf-16", {"ase@example.org"}),
    ("webinar.csv", ZOOM_WEBINAR, "utf-8-sig",
     {"soren@example.org", "late@example.org"}),
])
def test_followup_each_platform_s_report_through_the_relay(
        smtp_server: SmtpServer, tmp_path: Path, name: str, text: str, encoding: str,
        attended: set[str]) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    report = write_report(tmp_path, name, text, encoding=encoding)

    run = run_cli("send", folder, "--template", "followup", "--attendance", report, "--yes")

    assert run.exit_code == 0, run.output
    got = received(smtp_server)
    assert set(got) == {address for _, address, _ in REGISTRANTS}
    for (_, address, language) in REGISTRANTS:
        variant = "thanks" if address in attended else "missed"
        assert str(got[address]["Subject"]) == SUBJECTS[variant, language], address


@pytest.mark.parametrize(("text", "encoding", "message"), [
    ("Attended,User Name (Original Name),Join Time\nYes,Søren,x\n", "utf-8",
     "{report}:1: the Zoom webinar attendee report has no email column"),
    ("Navn,E-mail\nSøren,soren@example.org\n", "utf-8",
     "{report}: is not an attendance report invitemail knows"),
    ("", "utf-8", "{report}: is empty"),
    ("Full Name\tUser Action\tTimestamp\nÅse\tJoined\tx\n", "utf-16",
     "{report}:1: the Teams attendance list (older format) has no email column"),
])
def test_followup_bad_report_stops_before_sending(
        smtp_server: SmtpServer, tmp_path: Path, text: str, encoding: str,
        message: str) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    report = write_report(tmp_path, "bad.csv", text, encoding=encoding)

    for command in (["send", "--yes"], ["check"], ["preview"]):
        run = run_cli(*command, folder, "-t", "followup", "--attendance", report)
        assert run.exit_code == 1, (command, run.output)
        assert f"Error: {message.format(report=report)}" in run.stderr
        assert "Hint: " in run.stderr and "Traceback" not in run.output
    assert smtp_server.transactions == []


def test_followup_needs_the_report_to_send_and_only_the_followup_takes_one(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    report = write_report(tmp_path, "attendees.csv", ZOOM_WEBINAR)

    run = run_cli("send", folder, "-t", "followup", "--yes")
    assert run.exit_code == 2
    assert "Error: the follow-up needs the attendance report" in run.stderr
    assert "--attendance FILE" in run.stderr

    run = run_cli("send", folder, "--attendance", report, "--yes")
    assert run.exit_code == 2
    assert "Error: --attendance is for the follow-up, not for 'invitation'" in run.stderr
    assert smtp_server.transactions == []

    run = run_cli("send", folder, "-t", "thanks", "--yes")  # only through the follow-up
    assert run.exit_code == 1 and "there is no template 'thanks'" in run.stderr


def test_followup_check_counts_each_and_preview_without_a_report_shows_both(
        tmp_path: Path) -> None:
    folder = followup_event(None, tmp_path / "e")
    report = write_report(tmp_path, "attendees.csv", ZOOM_WEBINAR)

    run = run_cli("check", folder, "-t", "followup", "--attendance", report)
    assert run.exit_code == 0, run.output
    assert "4 followup messages built (2 thanks, 2 missed)" in run.stdout

    run = run_cli("preview", folder, "-t", "followup")  # before the report is downloaded
    assert run.exit_code == 0, run.output
    assert "Subject: Tak fordi du deltog: Persondata i praksis" in run.stdout
    assert "Subject: Vi savnede dig: Persondata i praksis" in run.stdout
    assert "Parts: text/plain, text/html\n" in run.stdout

    run = run_cli("check", folder, "-t", "followup")
    assert run.exit_code == 0, run.output
    assert "(4 thanks)" in run.stdout and "(4 missed)" in run.stdout

    out = tmp_path / "gallery"
    run = run_cli("preview", folder, "-t", "followup", "--out", out)
    assert run.exit_code == 0, run.output
    assert run.stdout.endswith(f"wrote 8 messages to {out}\n")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count("Thank you for attending: Persondata") == 2
    assert index.count("Sorry we missed you: Persondata") == 2
    assert "no calendar part" not in index  # not a warning for a follow-up


def test_followup_without_links_leaves_their_lines_out(tmp_path: Path) -> None:
    folder = followup_event(None, tmp_path / "e", links={})
    report = write_report(tmp_path, "attendees.csv", ZOOM_WEBINAR)
    campaign = Campaign.open(folder, template="followup", attendance=report, now=NOW)
    for registrant in unique_registrants(campaign.source):
        built = campaign.build(registrant)
        message = message_from_bytes(built.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        text, html = text_of(message), html_of(message)
        for gone in ("Watch it again", "Se det igen", "recording", "optagelsen", "next event",
                     "næste arrangement", "None"):
            assert gone not in text and gone not in html, (built.template, gone)


def test_followup_fast_path_matches_the_full_render(tmp_path: Path) -> None:
    rows = [(f"N{i}", f"r{i}@example.org", "da" if i % 4 < 2 else "en") for i in range(8)]
    folder = followup_event(None, tmp_path / "e", rows=rows)
    report = write_report(tmp_path, "r.csv", "Attended,Email,Time in Session (minutes)\n"
                          + "".join(f"{'Yes' if i % 3 else 'No'},r{i}@example.org,{i}\n"
                                    for i in range(0, 8, 2)))
    fast = Campaign.open(folder, template="followup", attendance=report, now=NOW)
    plain = Campaign(fast.config, fast.source, Renderer(folder / "templates", fast=False),
                     template="followup", now=NOW, followup=fast.followup)
    seen = set()
    for registrant in unique_registrants(fast.source):
        built = fast.build(registrant)
        assert built.data == plain.build(registrant).data
        seen.add((built.template, registrant.language))
    assert seen == {("thanks", "da"), ("thanks", "en"), ("missed", "da"), ("missed", "en")}
    assert fast.renderer.filled == len(rows)


# -- the report as a workbook: read through the registrant list's sheet reader -------------

def write_workbook_report(path: Path, text: str) -> Path:
    import csv
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Attendee Report"
    for cells in csv.reader(io.StringIO(text)):
        sheet.append(cells)
    book.save(path)
    return path


def test_followup_zoom_report_as_a_workbook_through_the_relay(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    report = write_workbook_report(tmp_path / "attendees.xlsx", ZOOM_WEBINAR)

    run = run_cli("send", folder, "--template", "followup", "--attendance", report, "--yes")

    assert run.exit_code == 0, run.output
    subjects = {address: str(m["Subject"]) for address, m in received(smtp_server).items()}
    assert subjects == {"soren@example.org": SUBJECTS["thanks", "da"],
                        "late@example.org": SUBJECTS["thanks", "da"],
                        "ase@example.org": SUBJECTS["missed", "en"],
                        "karen@example.org": SUBJECTS["missed", "en"]}
    assert "walkin@example.org (Walk In, attended) is not on the registrant list" in run.stderr


def test_followup_messages_pass_the_linter(tmp_path: Path) -> None:
    from invitemail.outputs.lint import lint_built

    folder = followup_event(None, tmp_path / "e")
    report = write_report(tmp_path, "attendees.csv", ZOOM_WEBINAR)
    campaign = Campaign.open(folder, template="followup", attendance=report, now=NOW)
    for registrant in unique_registrants(campaign.source):
        built = campaign.build(registrant)
        assert built.calendar is None
        assert lint_built(built) == [], built.template


def test_followup_with_a_report_before_the_end_is_refused_and_without_one_only_warned(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = followup_event(smtp_server, tmp_path / "e")
    set_key(folder, "event", "start", dt.datetime(2030, 12, 10, 14, 0))
    report = tmp_path / "attendees.csv"
    report.write_text(ZOOM_WEBINAR, encoding="utf-8")
    before_the_end = "the event ends 2030-12-10 15:00: it is not over yet"

    for command in ("check", "send"):
        extra = ("--yes",) if command == "send" else ()
        run = run_cli(command, folder, "--template", "followup", "--attendance", report, *extra)
        assert run.exit_code == 1, run.output
        assert f"{folder / 'event.toml'}: {before_the_end}" in run.stderr
        assert "Traceback" not in run.output
    assert smtp_server.transactions == []

    # Without the report, a look ahead at the follow-up is fine: a warning only.
    run = run_cli("check", folder, "--template", "followup")
    assert run.exit_code == 0, run.output
    assert f"warning: {before_the_end}" in run.output
