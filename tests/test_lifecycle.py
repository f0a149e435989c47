"""The whole event: invitation, reminder, update and cancellation, and the calendar entry
that follows them (one UID, a rising SEQUENCE, METHOD:CANCEL at the end)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from invitemail.campaign import Campaign
from invitemail.inputs.registrants import unique_registrants
from invitemail.journal.store import Journal
from support.cli import run_cli
from support.event import EventBuilder, EventToml, event_for, rows, set_key, write_event
from support.mail import parsed, vevent_of
from support.relay import SmtpServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "djoef-webinar"
TEMPLATES = ("invitation", "reminder", "update", "cancellation")


def received_by(server: SmtpServer, address: str) -> list[bytes]:
    return [t.data for t in server.transactions if address in t.rcpt_tos]


def test_lifecycle_same_uid_rising_sequence_and_cancel(smtp_server: SmtpServer,
                                                      tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    address = "user1@example.org"

    assert run_cli("send", folder, "--yes").exit_code == 0
    unchanged = run_cli("send", folder, "--yes", "--template", "update")
    assert unchanged.exit_code == 1
    assert "nothing changed since the last message" in unchanged.stderr

    # The user moves the event by a day and forgets to raise sequence.
    set_key(folder, "event", "start", dt.datetime(2030, 12, 11, 15, 30))
    warned = run_cli("check", folder)
    assert warned.exit_code == 0
    assert "no update was sent; send `--template update`" in warned.stderr
    assert run_cli("send", folder, "--yes", "--template", "update").exit_code == 0
    assert run_cli("send", folder, "--yes", "--template", "cancellation").exit_code == 0

    invitation, update, cancellation = received_by(smtp_server, address)
    methods, events = zip(*(vevent_of(m) for m in (invitation, update, cancellation)),
                          strict=True)
    assert methods == ("REQUEST", "REQUEST", "CANCEL")
    assert len({str(e["UID"]) for e in events}) == 1
    sequences = [e.decoded("SEQUENCE") for e in events]
    assert sequences == [0, 1, 2]
    assert events[0].decoded("DTSTART") == dt.datetime(2030, 12, 10, 13, 0, tzinfo=dt.UTC)
    assert events[1].decoded("DTSTART") == dt.datetime(2030, 12, 11, 14, 30, tzinfo=dt.UTC)
    assert str(events[2]["STATUS"]) == "CANCELLED"
    text = parsed(update).get_body(preferencelist=("plain",)).get_content()
    assert "onsdag den 11. december 2030 kl. 15.30" in text  # the new time
    assert "tirsdag den 10. december 2030 kl. 14.00" in text  # and the old one
    cancel_text = parsed(cancellation).get_body(preferencelist=("plain",)).get_content()
    assert "Kx7pQ9" not in cancel_text and "zoom.us/j/" not in cancel_text
    assert "842 1234 5678" not in cancel_text

    status = run_cli("status", folder, "--template", "update")
    assert "3 sent" in status.stdout


def test_lifecycle_update_names_a_changed_link_and_password(smtp_server: SmtpServer,
                                                           tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    assert run_cli("send", folder, "--yes").exit_code == 0
    set_key(folder, "meeting", "password", "Nyt42x")
    set_key(folder, "meeting", "join_url", "https://zoom.us/j/99912345678?pwd=new")
    assert run_cli("send", folder, "--yes", "--template", "update").exit_code == 0
    update = received_by(smtp_server, "user1@example.org")[-1]
    text = parsed(update).get_body(preferencelist=("plain",)).get_content()
    html = parsed(update).get_body(preferencelist=("html",)).get_content()
    for body in (text, html):
        assert "Nyt42x" in body and "https://zoom.us/j/99912345678?pwd=new" in body
        assert "Kx7pQ9" not in body  # the old password is never kept, never shown
    _, event = vevent_of(update)
    assert str(event["LOCATION"]) == "https://zoom.us/j/99912345678?pwd=new"


def test_lifecycle_reminder_reaches_registrants_added_later(smtp_server: SmtpServer,
                                                            tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(2))
    assert run_cli("send", folder, "--yes").exit_code == 0
    EventBuilder(EventToml.read(folder / "event.toml"), rows=rows(3)).write(folder)
    assert run_cli("send", folder, "--yes", "--template", "reminder").exit_code == 0
    assert len(received_by(smtp_server, "user2@example.org")) == 1  # the reminder only
    assert "3 sent" in run_cli("status", folder, "--template", "reminder").stdout
    assert "2 sent" in run_cli("status", folder).stdout
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:
        assert journal.templates() == ["invitation", "reminder"]


@pytest.mark.parametrize(("now", "da", "en"), [
    (dt.datetime(2030, 12, 9, 13, 0, tzinfo=dt.UTC), "i morgen kl. 14.00",
     "tomorrow at 14:00"),
    (dt.datetime(2030, 12, 10, 12, 0, tzinfo=dt.UTC), "om 1 time", "in 1 hour"),
])
def test_reminder_says_how_soon(tmp_path: Path, now: dt.datetime, da: str, en: str) -> None:
    folder = write_event(tmp_path / "e")
    campaign = Campaign.open(folder, template="reminder", now=now)
    for registrant in unique_registrants(campaign.source):
        text = parsed(campaign.build(registrant).data).get_body(
            preferencelist=("plain",)).get_content()
        assert (da if registrant.language == "da" else en) in " ".join(text.split())


def test_registrant_time_zone_is_shown_beside_the_event_zone(tmp_path: Path) -> None:
    folder = write_event(tmp_path / "e", [("Ann Lee", "ann@example.org", "en",
                                           "America/New_York")],
                         header=("Name", "Email", "Language", "Timezone"))
    campaign = Campaign.open(folder, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    registrant = next(unique_registrants(campaign.source))
    message = parsed(campaign.build(registrant).data)
    for subtype in ("plain", "html"):
        body = " ".join(message.get_body(preferencelist=(subtype,)).get_content().split())
        assert "Tuesday, 10 December 2030 at 14:00-15:00 (Denmark Time)" in body
        assert "08:00-09:00 in New York" in body


def test_calendar_links_open_the_right_time(tmp_path: Path) -> None:
    folder = EventBuilder().set("event", "start", dt.datetime(2030, 3, 31, 9, 15)).write(
        tmp_path / "e").folder  # after spring DST
    campaign = Campaign.open(folder, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    registrant = next(unique_registrants(campaign.source))
    html = parsed(campaign.build(registrant).data).get_body(
        preferencelist=("html",)).get_content()
    links = {urlsplit(u).hostname: parse_qs(urlsplit(u).query)
             for u in re.findall(r'href="([^"]+)"', html.replace("&amp;", "&"))
             if "calendar" in u}
    google = links["calendar.google.com"]
    assert google["dates"] == ["20300331T071500Z/20300331T081500Z"]
    assert google["text"] == ["Persondata i praksis"]
    outlook = links["outlook.live.com"]
    assert (outlook["startdt"], outlook["enddt"]) == (["2030-03-31T07:15:00Z"],
                                                      ["2030-03-31T08:15:00Z"])
    yahoo = links["calendar.yahoo.com"]
    assert (yahoo["st"], yahoo["et"]) == (["20300331T071500Z"], ["20300331T081500Z"])
    for params in (google, outlook, yahoo):
        assert any("https://zoom.us/j/84212345678?pwd=abc123" in v[0]
                   for v in params.values())


# Each template and language: the items its message must carry (and must not).
ITEMS = {
    "invitation": ["{title}", "{date}", "842 1234 5678", "Kx7pQ9", "{join}", "33 95 97 00",
                   "kontakt@example.org", "https://example.org/privatliv/webinarer",
                   "calendar.google.com"],
    "reminder": ["{title}", "{date}", "842 1234 5678", "Kx7pQ9", "{join}", "33 95 97 00"],
    "update": ["{title}", "{date}", "842 1234 5678", "Kx7pQ9", "{join}", "33 95 97 00"],
    "cancellation": ["{title}", "{date}", "33 95 97 00", "kontakt@example.org"],
}


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("language", ["da", "en"])
def test_each_template_and_language_carries_its_items(tmp_path: Path, template: str,
                                                      language: str) -> None:
    folder = write_event(tmp_path / "e", [("Søren Ærø", "s@example.org", language)])
    campaign = Campaign.open(folder, template=template,
                             now=dt.datetime(2030, 12, 1, tzinfo=dt.UTC))
    registrant = next(unique_registrants(campaign.source))
    message = parsed(campaign.build(registrant).data)
    date = {"da": "tirsdag den 10. december 2030", "en": "Tuesday, 10 December 2030"}[language]
    values = {"title": "Persondata i praksis", "date": date,
              "join": "https://zoom.us/j/84212345678?pwd=abc123"}
    for subtype in ("plain", "html"):
        body = " ".join(message.get_body(preferencelist=(subtype,)).get_content().split())
        body = body.replace("&amp;", "&")
        for item in ITEMS[template]:
            assert item.format(**values) in body, (template, language, subtype, item)
        if template == "cancellation":
            for secret in ("Kx7pQ9", "842 1234 5678", "zoom.us/j/"):
                assert secret not in body
    assert message.get_content_type() == "multipart/mixed"


@pytest.mark.parametrize("template", TEMPLATES)
def test_example_previews_every_template(template: str, tmp_path: Path) -> None:
    run = run_cli("preview", EXAMPLE, "--template", template, "--out", tmp_path / template)
    assert run.exit_code == 0, run.output
    assert "wrote 19 messages" in run.stdout
