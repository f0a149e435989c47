"""The message each registrant receives: headers, MIME structure, content, calendar."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import unicodedata
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.campaign import Campaign
from invitemail.inputs.addresses import Mailbox
from invitemail.inputs.config import LINE_BREAKS
from invitemail.inputs.registrants import unique_registrants
from invitemail.mime import ics
from invitemail.mime.message import HeaderValueError, MessageParts, build_message, encoded_words
from invitemail.outputs import placeholders
from invitemail.outputs.lint import lint_message
from invitemail.outputs.scaffold import create_event
from support.event import EventBuilder, Raw

NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
REGISTRANTS = """\
Navn,E-mail,Sprog,Join URL,Tidszone
Søren Ærø Kierkegaard,soren@example.org,da,,
Åse Møller,ase@example.org,en,https://zoom.us/w/84212345678?tk=personal,America/New_York
"Bohr, Niels",niels@example.org,,,
"""


def make_event(folder: Path, *, start: str = "2026-12-10T14:00:00",
               registrants: str = REGISTRANTS) -> Path:
    """The event.toml `invitemail init` writes, filled in as a coordinator would."""
    create_event(folder, now=NOW)
    builder = EventBuilder.from_text((folder / "event.toml").read_text(encoding="utf-8"))
    builder.registrants = registrants.encode("utf-8")
    builder.set("event", "start", Raw(start))
    builder.set("event", "title", "Persondata i praksis – æøå")
    # The rest of init's placeholders, which `check` refuses, as a coordinator fills them in.
    own = {"description": "Et webinar om persondata.", "id": "842 1234 5678",
           "password": "Kx7pQ9", "join_url": "https://zoom.us/j/84212345678?pwd=abc123",
           "web_join_url": "https://zoom.us/wc/join/84212345678",
           "from": "Djøf Arrangementer <arrangementer@example.org>"}
    for placeholder in placeholders.PLACEHOLDERS[1:]:
        assert builder.toml.has(placeholder.section, placeholder.key), placeholder
        builder.set(placeholder.section, placeholder.key, own[placeholder.key])
    return builder.write(folder).folder


def build_all(folder: Path, template: str = "invitation") -> dict[str, EmailMessage]:
    campaign = Campaign.open(folder, template=template, now=NOW)
    messages = {}
    for built in campaign.messages(unique_registrants(campaign.source)):
        parsed = message_from_bytes(built.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        messages[built.recipient] = parsed
    return messages


def calendar_of(message: EmailMessage) -> icalendar.Calendar:
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    return icalendar.Calendar.from_ical(parts[0].get_payload(decode=True))


@pytest.fixture
def event(tmp_path: Path) -> Path:
    return make_event(tmp_path / "event")


def test_message_headers_hold_one_recipient_and_encode_names(event: Path) -> None:
    messages = build_all(event)
    assert set(messages) == {"soren@example.org", "ase@example.org", "niels@example.org"}
    message = messages["soren@example.org"]
    assert message["To"].addresses[0].display_name == "Søren Ærø Kierkegaard"
    assert message["To"].addresses[0].addr_spec == "soren@example.org"
    assert len(message.get_all("To")) == 1 and message["Cc"] is None and message["Bcc"] is None
    assert message["From"].addresses[0].addr_spec == "arrangementer@example.org"
    assert message["Reply-To"].addresses[0].addr_spec == "arrangementer@example.org"
    assert "Persondata i praksis – æøå" in str(message["Subject"])
    assert message["MIME-Version"] == "1.0"
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", message["Message-ID"])
    assert message["Date"].datetime == NOW


def test_message_raw_headers_are_ascii_with_readable_addresses(event: Path) -> None:
    campaign = Campaign.open(event, now=NOW)
    built = next(campaign.messages(unique_registrants(campaign.source)))
    head = built.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    to = re.search(rb"^To: ([^\r\n]*)", head, re.M)
    assert to is not None and to.group(1).endswith(b"<soren@example.org>")
    assert b"=?utf-8?" in to.group(1)  # the display name, encoded per RFC 2047
    # A comma in a name is quoted, not read as a second address.
    niels = next(b for b in campaign.messages(unique_registrants(campaign.source))
                 if b.recipient == "niels@example.org")
    assert b'To: "Bohr, Niels" <niels@example.org>' in niels.data


def test_message_ids_are_unique_and_stable_across_runs(event: Path) -> None:
    first = {k: m["Message-ID"] for k, m in build_all(event).items()}
    second = {k: m["Message-ID"] for k, m in build_all(event).items()}
    assert first == second
    assert len(set(first.values())) == len(first)


def test_message_structure_is_text_html_calendar_plus_attachment(event: Path) -> None:
    message = build_all(event)["soren@example.org"]
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = list(message.iter_parts())
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain", "text/html", "text/calendar"]
    assert alternative.get_payload()[2].get_param("method") == "REQUEST"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_payload(decode=True) == \
        alternative.get_payload()[2].get_payload(decode=True)


def test_message_lines_are_crlf_and_short(event: Path) -> None:
    campaign = Campaign.open(event, now=NOW)
    for built in campaign.messages(unique_registrants(campaign.source)):
        assert lint_message(built.data) == []
        assert b"\n" not in built.data.replace(b"\r\n", b"")
        assert max(len(line) for line in built.data.split(b"\r\n")) <= 998


@pytest.mark.parametrize("address", ["soren@example.org", "ase@example.org"])
def test_message_both_parts_carry_every_item(event: Path, address: str) -> None:
    message = build_all(event)[address]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    personal = "https://zoom.us/w/84212345678?tk=personal"
    join = personal if address == "ase@example.org" else \
        "https://zoom.us/j/84212345678?pwd=abc123"
    if address == "soren@example.org":
        date = "torsdag den 10. december 2026 kl. 14.00"
        items = ["Adgangskode", "venterum", "krypteret", "Zoom Cloud Meetings", "opdater",
                 "Del ikke linket"]
    else:
        date = "Thursday, 10 December 2026 at 14:00"
        items = ["Password", "waiting room", "encrypted", "Zoom Cloud Meetings", "update",
                 "share"]
    common = ["Persondata i praksis – æøå", date, "842 1234 5678", "Kx7pQ9", join,
              "https://zoom.us/wc/join/84212345678", "33 95 97 00", "kontakt@example.org",
              "https://example.org/privatliv/webinarer", *items]
    for part_name, body in (("text", text), ("html", html)):
        flat = " ".join(body.split()).lower()  # the text part wraps at 76 columns
        for item in common:
            needle = item.replace("&", "&amp;") if part_name == "html" else item
            assert needle.lower() in flat, f"{item!r} missing from the {part_name} part"


def test_message_html_escapes_values_from_the_csv(tmp_path: Path) -> None:
    folder = make_event(tmp_path / "e", registrants=(
        "Navn,E-mail\n<script>alert(1)</script> & Co,x@example.org\n"))
    html = build_all(folder)["x@example.org"].get_body(preferencelist=("html",)).get_content()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_calendar_has_one_event_with_the_right_instant_and_people(event: Path) -> None:
    calendar = calendar_of(build_all(event)["ase@example.org"])
    assert str(calendar["METHOD"]) == "REQUEST"
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 1
    vevent = events[0]
    assert vevent.decoded("DTSTART") == dt.datetime(2026, 12, 10, 13, 0, tzinfo=dt.UTC)
    assert vevent.decoded("DTEND") == dt.datetime(2026, 12, 10, 14, 0, tzinfo=dt.UTC)
    attendees = vevent.get("ATTENDEE")
    assert not isinstance(attendees, list)
    assert str(attendees).lower() == "mailto:ase@example.org"
    assert str(vevent["ORGANIZER"]).lower() == "mailto:arrangementer@example.org"
    assert str(vevent["LOCATION"]) == "https://zoom.us/w/84212345678?tk=personal"
    description = str(vevent["DESCRIPTION"])
    assert "842 1234 5678" in description and "Kx7pQ9" in description
    assert vevent.decoded("SEQUENCE") == 0


def test_calendar_uid_is_stable_per_registrant(event: Path, tmp_path: Path) -> None:
    first = {k: str(calendar_of(m).walk("VEVENT")[0]["UID"]) for k, m in build_all(event).items()}
    again = {k: str(calendar_of(m).walk("VEVENT")[0]["UID"]) for k, m in build_all(event).items()}
    assert first == again and len(set(first.values())) == 3


@pytest.mark.parametrize(("start", "utc"), [
    ("2027-03-27T14:00:00", dt.datetime(2027, 3, 27, 13, 0, tzinfo=dt.UTC)),  # before spring
    ("2027-03-29T14:00:00", dt.datetime(2027, 3, 29, 12, 0, tzinfo=dt.UTC)),  # after spring
    ("2027-10-30T14:00:00", dt.datetime(2027, 10, 30, 12, 0, tzinfo=dt.UTC)),  # before autumn
    ("2027-11-01T14:00:00", dt.datetime(2027, 11, 1, 13, 0, tzinfo=dt.UTC)),  # after autumn
    ("2027-10-31T02:30:00", dt.datetime(2027, 10, 31, 0, 30, tzinfo=dt.UTC)),  # the hour twice
])
def test_calendar_start_is_the_right_instant_across_dst(tmp_path: Path, start: str,
                                                        utc: dt.datetime) -> None:
    folder = make_event(tmp_path / "e", start=start)
    for message in build_all(folder).values():
        vevent = calendar_of(message).walk("VEVENT")[0]
        assert vevent.decoded("DTSTART") == utc
    local = utc.astimezone(ZoneInfo("Europe/Copenhagen"))
    assert local.strftime("%Y-%m-%dT%H:%M:%S") == start


@given(st.text(min_size=1, max_size=300).filter(lambda s: "\r" not in s and "\n" not in s))
@settings(max_examples=300, deadline=None)
def test_message_encoded_words_round_trip_any_text(text: str) -> None:
    encoded = encoded_words(text)
    assert encoded.isascii()
    assert all(len(line) <= 76 for line in encoded.split("\r\n"))
    assert str(make_header(decode_header(encoded.replace("\r\n", "")))) == text


@given(st.text(min_size=1, max_size=120))
@settings(max_examples=200, deadline=None)
def test_message_any_display_name_parses_back_or_is_refused(name: str) -> None:
    parts = MessageParts(
        sender=Mailbox("Arrangør", "a@example.org"), recipient=Mailbox(name, "r@example.org"),
        reply_to=None, subject=name, date=NOW, message_id="<x@example.org>", text="t",
        html="<p>h</p>", calendar=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", method="REQUEST")
    if any(c in LINE_BREAKS or (c != "\t" and unicodedata.category(c) == "Cc") for c in name):
        with pytest.raises(HeaderValueError):
            build_message(parts)
        return
    data = build_message(parts)
    parsed = message_from_bytes(data, policy=policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["r@example.org"]
    assert " ".join(str(parsed["Subject"]).split()) == " ".join(name.split())
    assert lint_message(data) == []


@given(name=st.text(max_size=120), uid_part=st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), max_size=40))
@settings(max_examples=200, deadline=None)
def test_calendar_builder_writes_what_icalendar_writes(name: str, uid_part: str) -> None:
    entry = ics.CalendarEntry(
        uid=f"0123456789abcdef0123-{uid_part}@example.org", sequence=2, method="REQUEST",
        start=dt.datetime(2026, 12, 10, 13, tzinfo=dt.UTC),
        end=dt.datetime(2026, 12, 10, 14, tzinfo=dt.UTC), title="Persondata – æøå",
        description="Deltag: https://zoom.us/j/1\nMøde-ID: 842", location="https://zoom.us/j/1",
        organizer_name="Djøf, Arrangementer", organizer_address="a@example.org",
        attendee_name=name, attendee_address="s@example.org", stamp=NOW)
    fast = ics.CalendarBuilder().build(entry)
    assert all(len(line) <= 75 for line in fast.split(b"\r\n"))
    ours = icalendar.Calendar.from_ical(fast).walk("VEVENT")[0]
    assert str(ours["UID"]) == entry.uid
    assert str(ours["ATTENDEE"]) == "mailto:s@example.org"
    printable = "".join(c for c in name if c == "\n" or unicodedata.category(c) != "Cc")
    assert str(ours["ATTENDEE"].params.get("CN", "")) == printable.replace("\\", "")
    if printable == name and "\\" not in name:  # icalendar loses these in its own output
        theirs = icalendar.Calendar.from_ical(ics.build_ics(entry)).walk("VEVENT")[0]
        assert sorted(ours) == sorted(theirs)
        assert all(ours[k] == theirs[k] for k in ours if k not in ("ATTENDEE", "UID"))


def test_messages_built_in_worker_processes_are_identical(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from invitemail import pool as parallel

    people = "".join(f"Deltager {i},user{i}@example.org,{'da' if i % 3 else 'en'},,\n"
                     for i in range(parallel.MIN_ROWS + 200))
    folder = make_event(tmp_path / "e", registrants=REGISTRANTS + people)
    built: dict[str, list[bytes]] = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("INVITEMAIL_WORKERS", workers)
        campaign = Campaign.open(folder, now=NOW)
        built[workers] = [b.data for b in campaign.messages(unique_registrants(campaign.source))]
        report = campaign.check()
        assert report.ok and report.messages == len(built[workers])
    assert built["1"] == built["2"]
    assert len(built["1"]) == parallel.MIN_ROWS + 203


# -- the encoders' fast paths give what the plain encoders give -----------------------------

LINES = st.lists(st.sampled_from(["", " ", "\t", "=", ".", "a" * 80, "æøå " * 30, "x ",
                                  "\r", "\n", "\r\n", "<p style=\"a:b\">", "é" * 40, "\x7f"]),
                 max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=400), LINES))
def test_quoted_printable_line_by_line_is_what_the_whole_body_encodes_to(text: str) -> None:
    import binascii

    from invitemail.mime.quoted_printable import _quoted_printable

    body = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    whole = binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)
    assert _quoted_printable(text) == whole.replace(b"\n", b"\r\n")
    assert _quoted_printable(text) == _quoted_printable(text)  # from the line cache


@settings(max_examples=300, deadline=None)
@given(line=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                          max_size=300))
def test_calendar_lines_fold_at_75_octets_without_splitting_a_character(line: str) -> None:
    # A content line never holds CR or LF: TEXT values are escaped before folding.
    folded = ics._fold(line)
    assert folded.endswith(b"\r\n")
    pieces = folded[:-2].split(b"\r\n")
    assert all(len(piece) <= 75 for piece in pieces)
    assert all(piece.startswith(b" ") for piece in pieces[1:])
    text = [piece.decode("utf-8") for piece in pieces]  # no piece splits a character
    assert text[0] + "".join(t[1:] for t in text[1:]) == line
    for piece, following in itertools.pairwise(pieces):
        # Each piece is full: the next character would not have fitted.
        assert len(piece) + len(following[1:].decode("utf-8")[0].encode("utf-8")) > 75


PIECE = st.one_of(st.sampled_from(["\n", "\r\n", "a\nb", " \n", "x" * 90 + "\n", "=",
                                   "æ\n\nø", "\r", "end "]), st.text(max_size=30))


@settings(max_examples=400, deadline=None)
@given(constants=st.lists(PIECE, max_size=8),
       values=st.lists(st.one_of(PIECE, st.sampled_from(["", "Søren", "\r", "\n"])),
                       min_size=1, max_size=4),
       layout=st.lists(st.integers(min_value=-1, max_value=3), max_size=12))
def test_quoted_printable_from_pieces_is_what_the_joined_text_encodes_to(
        constants: list[str], values: list[str], layout: list[int]) -> None:
    from invitemail.mime.quoted_printable import _quoted_printable, quoted_printable
    from invitemail.render.body import Body, PartLayout

    pieces: list[str | int] = []
    for i, slot in enumerate(layout):  # -1: the next constant piece; else a value
        if slot < 0 or slot >= len(values):
            if constants:
                pieces.append(constants[i % len(constants)])
        else:
            pieces.append(slot)
    text = "".join(p if isinstance(p, str) else values[p] for p in pieces)
    expected = _quoted_printable(text)
    part = PartLayout(pieces)
    assert quoted_printable(Body.filled(part, values)) == expected
    assert quoted_printable(Body.filled(part, values)) == expected  # from the layout's lines
