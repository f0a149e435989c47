"""Header lines stay short whatever goes in them (issue 11, class 7).

The message builder itself keeps every header line within 998 octets (RFC 5322 2.1.1) and,
with addresses of ordinary length, within 78 (76 for a line with RFC 2047 encoded words):
a display name that needs quoting doubles its backslashes and quotes, so a long one is
encoded and folded instead of written on one line. The values read back unchanged.

Display names are read back the way RFC 2047 6.2 says (the white space between adjacent
encoded words is dropped, what an encoded word holds is kept as it is). Python's
``policy.default`` address parser keeps a space between adjacent words and turns a tab in a
word into a space, so it is held to the names in one word, white space aside.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invitemail.campaign import Campaign
from invitemail.inputs.addresses import AddressError, Mailbox, normalize_address
from invitemail.inputs.config import LINE_BREAKS
from invitemail.inputs.registrants import unique_registrants
from invitemail.mime import ics
from invitemail.mime.message import (
    HeaderValueError,
    MessageParts,
    build_message,
    encode_mailbox,
    encode_text_header,
)
from invitemail.outputs.lint import lint_message
from support.cli import run_cli
from support.event import HEADER, EventBuilder

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
CALENDAR = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"

# What a header may hold: anything but line breaks and control characters other than tab
# (those are refused: test_message.py), with the characters that make names long weighted in.
header_char = st.characters(blacklist_categories=("Cc", "Cs"),
                            blacklist_characters="".join(LINE_BREAKS)) | st.sampled_from(
    ["\\", '"', " ", "  ", "\t", "=?", "?=", "(", ")", ",", "<", ">", "@", ";", ".", "ø", "Å",
     "e\u0301", "\u0308", "😀", "👩\u200d💻", "🇩🇰", "中", "\u200f", "a", "Z", "-"])
short_text = st.lists(header_char, max_size=30).map("".join)
# Long values: a short piece repeated (497 backslashes, a name of emoji), then anything.
long_text = st.builds(lambda piece, times, tail: piece * times + tail,
                      st.lists(header_char, min_size=1, max_size=4).map("".join),
                      st.integers(min_value=20, max_value=700), short_text)
header_text = short_text | long_text

SPECIAL_NAMES = ["\\" * 497, '"' * 497, "\\" * 998, '"\\' * 600, "a" * 997, "ø" * 500,
                 "😀" * 300, " " * 300, "a " * 500, "=?utf-8?b?QmNjOiB4?=" * 30, "\t" * 200]


def message(name: str, subject: str, sender_name: str = "Djøf Arrangementer", *,
            address: str = "soren@example.org") -> bytes:
    return build_message(MessageParts(
        sender=Mailbox(sender_name, "arrangementer@example.org"),
        recipient=Mailbox(name, address),
        reply_to=Mailbox(sender_name, "svar@example.org"), subject=subject, date=NOW,
        message_id="<0123@example.org>", text="Hej", html="<p>Hej</p>", calendar=CALENDAR,
        method="REQUEST"))


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def raw_header(data: bytes, name: str) -> str:
    """The header's value, unfolded (each CRLF removed), as a reader sees it."""
    found = re.search(rb"^" + name.encode() + rb": (.*?)\r\n(?! |\t)", data, re.M | re.S)
    assert found is not None, name
    return found.group(1).replace(b"\r\n", b"").decode("ascii")


def rfc2047_display_name(data: bytes, name: str) -> str:
    value = raw_header(data, name)
    phrase = value.rpartition(" <")[0] if value.endswith(">") else ""
    if phrase.startswith('"'):  # a quoted string: read it with the standard parser
        parsed = message_from_bytes(data, policy=policy.default)
        return str(parsed[name].addresses[0].display_name)
    return str(make_header(decode_header(phrase))) if phrase else ""


def assert_lines_fit(data: bytes) -> None:
    bare = data.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare, "a bare CR or LF"
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    for line in head_lines(data):
        assert line.isascii(), line
        # The addresses here are short: every line fits the recommended length.
        assert len(line) <= (76 if b"=?" in line else 78), line
        for word in re.findall(rb"=\?utf-8\?b\?[^?]*\?=", line):
            assert len(word) <= 75, word
        assert line.strip(b" \t"), "a line of white space only"


def assert_reads_back(data: bytes, name: str, subject: str, sender_name: str) -> None:
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert str(parsed["Subject"]) == subject
    for header, expected, address in (("To", name, "soren@example.org"),
                                      ("From", sender_name, "arrangementer@example.org"),
                                      ("Reply-To", sender_name, "svar@example.org")):
        mailboxes = parsed[header].addresses
        assert [m.addr_spec for m in mailboxes] == [address], header
        assert rfc2047_display_name(data, header) == expected, header
        if raw_header(data, header).count("=?") <= 1:  # no adjacent words: see the docstring
            assert mailboxes[0].display_name.split() == expected.split(), header
    assert lint_message(data) == []


@given(name=header_text, subject=header_text, sender_name=header_text)
@settings(max_examples=200, deadline=None)
@example(name="\\" * 497, subject="x", sender_name="Djøf Arrangementer")
@example(name='"' * 497, subject='"' * 497, sender_name="\\" * 497)
@example(name="\\" * 911, subject="\\" * 990, sender_name="")
@example(name="a" * 70, subject="b " * 39 + "c" * 70, sender_name="a" * 75)
@example(name=" Søren ", subject=" x ", sender_name="\t")
def test_any_header_value_gives_short_lines_that_read_back(name: str, subject: str,
                                                          sender_name: str) -> None:
    data = message(name, subject, sender_name)

    assert_lines_fit(data)
    assert_reads_back(data, name, subject, sender_name)


@pytest.mark.parametrize("name", SPECIAL_NAMES, ids=lambda n: f"{n[:6]!r}x{len(n)}")
def test_names_that_needed_quoting_on_one_line_are_folded(name: str) -> None:
    data = message(name, name)

    assert_lines_fit(data)
    assert_reads_back(data, name, name, "Djøf Arrangementer")


@pytest.mark.parametrize(("name", "expected"), [
    ("Karen Blixen", b"To: Karen Blixen <soren@example.org>"),
    ("Bohr, Niels", b'To: "Bohr, Niels" <soren@example.org>'),
    ("a\\b", b'To: "a\\\\b" <soren@example.org>'),
    ("a  b", b'To: "a  b" <soren@example.org>'),
    ("", b"To: soren@example.org"),
])
def test_short_ascii_names_stay_readable(name: str, expected: bytes) -> None:
    assert expected + b"\r\n" in message(name, "Invitation")


def test_a_long_ascii_subject_is_folded_at_its_spaces_and_stays_readable() -> None:
    subject = " ".join(f"word{i}" for i in range(60))

    data = message("Karen", subject)

    lines = [line for line in head_lines(data)
             if line.startswith(b"Subject:") or line.startswith(b" word")]
    assert len(lines) > 3 and b"=?" not in b"".join(lines)
    assert all(len(line) <= 78 for line in lines)
    assert raw_header(data, "Subject") == subject


def test_an_address_too_long_for_a_header_is_refused_and_none_such_is_valid() -> None:
    long_address = "a" * 64 + "@" + ".".join(["b" * 63] * 16) + ".org"
    with pytest.raises(AddressError):
        normalize_address(long_address)
    with pytest.raises(HeaderValueError, match="too long for a header"):
        encode_mailbox(Mailbox("Søren", long_address))
    with pytest.raises(HeaderValueError, match="too long for a header"):
        message("Søren", "x", address=long_address)
    # The longest address email-validator accepts still fits, on a line of its own.
    longest = "a" * 64 + "@" + ".".join(["b" * 63] * 2 + ["c" * 57]) + ".org"
    assert normalize_address(longest) == longest and len(longest) == 254
    data = message("\\" * 497, "x", address=longest)
    assert b"\r\n <" + longest.encode() + b">\r\n" in data
    assert max(len(line) for line in head_lines(data)) <= 998


def test_encoders_refuse_line_breaks_before_folding() -> None:
    for value in ("a\r\nBcc: x@example.org", "a\nb", "a\u2028b"):
        with pytest.raises(HeaderValueError):
            encode_mailbox(Mailbox(value * 100, "s@example.org"))
        with pytest.raises(HeaderValueError):
            encode_text_header(value * 100)


# -- through the campaign: the rows `check` validates are the rows `send` builds --------------


@pytest.mark.parametrize("name", ["\\" * 497, '"' * 497, '"\\' * 911, "ø\\" * 600])
def test_check_and_the_built_message_agree_on_a_long_quoted_name(
        tmp_path: Path, name: str) -> None:
    rows = [(name, "soren@example.org", "da"), ("Karen Blixen", "karen@example.org", "en")]
    builder = EventBuilder(header=HEADER, rows=rows).set("event", "title", "\\" * 300)
    folder = builder.write(tmp_path / "e").folder

    run = run_cli("check", folder)

    assert run.exit_code == 0, run.output
    campaign = Campaign.open(folder, now=NOW)
    built = next(b for b in campaign.messages(unique_registrants(campaign.source))
                 if b.recipient == "soren@example.org")
    assert_lines_fit(built.data)
    assert lint_message(built.data) == []  # what check --lint says of each message
    assert rfc2047_display_name(built.data, "To") == name
    assert str(message_from_bytes(built.data, policy=policy.default)["Subject"]) == \
        built.subject
    # The calendar part holds the name too: its lines are folded at 75 octets (RFC 5545).
    parsed = message_from_bytes(built.data, policy=policy.default)
    calendar = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    ical = calendar.get_payload(decode=True)
    assert isinstance(ical, bytes)
    assert all(len(line) <= 75 for line in ical.split(b"\r\n"))
    attendee = icalendar.Calendar.from_ical(ical).walk("VEVENT")[0]["ATTENDEE"]
    assert str(attendee.params.get("CN", "")) == name.replace("\\", "")  # as icalendar reads it


@given(name=header_text)
@settings(max_examples=60, deadline=None)
def test_calendar_lines_are_folded_at_75_octets_for_any_name(name: str) -> None:
    entry = ics.CalendarEntry(
        uid="persondata-2030@example.org", sequence=0, method="REQUEST",
        start=dt.datetime(2030, 12, 10, 13, tzinfo=dt.UTC),
        end=dt.datetime(2030, 12, 10, 14, tzinfo=dt.UTC), title=name, description=name,
        location="https://zoom.us/j/1", organizer_name=name, organizer_address="a@example.org",
        attendee_name=name, attendee_address="s@example.org", stamp=NOW)
    for data in (ics.CalendarBuilder().build(entry), ics.build_ics(entry)):
        lines = data.split(b"\r\n")
        assert all(len(line) <= 75 for line in lines), max(lines, key=len)
        assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")


def test_the_builder_checks_the_whole_header_block_before_writing_it() -> None:
    parts = MessageParts(
        sender=Mailbox("Djøf", "arrangementer@example.org"),
        recipient=Mailbox("Søren", "soren@example.org"), reply_to=None, subject="x",
        date=NOW, message_id="<" + "a" * 1000 + "@example.org>", text="Hej",
        html="<p>Hej</p>", calendar=CALENDAR, method="REQUEST")
    with pytest.raises(HeaderValueError, match="the Message-ID header would have a line of "
                                               "1026 octets, more than the 998"):
        build_message(parts)
    unchecked = dataclasses.replace(parts, message_id="<1@example.org>",
                                    recipient=Mailbox("Søren", "søren@example.org"))
    with pytest.raises(HeaderValueError, match="not ASCII"):
        build_message(unchecked)
