"""The hand-over: a message's wire form made where it was built, its Date spliced in at send.

The old path, in the process that speaks SMTP, was ``dot_stuff(restamp_date(data, d),
crlf=True)``. Now the worker that builds a message stuffs it (``Built.for_sending``) and the
sending process only splices the Date into the wire form (``Built.wire_at``). These tests hold
the new path to the old one byte for byte, on drawn messages and on real relays.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from invitemail import pool
from invitemail.campaign import Built, Campaign
from invitemail.inputs.cells import Registrant
from invitemail.inputs.registrants import unique_registrants
from invitemail.mime.message import DateHeaders, restamp_date
from invitemail.send.delivery import SendOptions
from invitemail.send.envelope import Envelope, dot_stuff, unstuffed
from invitemail.send.plan import send
from support.event import NOW, EventBuilder
from support.relay import FakeClock, Script, SmtpServer

SOMEONE = Registrant(line=2, email="a@example.org", name="A", first_name="A", last_name="",
                     language="da", join_url="", timezone="")


def built_of(data: bytes) -> Built:
    return Built(SOMEONE, SOMEONE.email, "<m@example.org>", "Subject", data, None, "invitation")


def old_path(data: bytes, date: dt.datetime) -> bytes:
    """What the sending process put on the wire before: restamped, then stuffed."""
    return dot_stuff(restamp_date(data, date), crlf=True)


def new_path(data: bytes, date: dt.datetime) -> bytes:
    """What it puts there now: stuffed where built, then dated, through the Envelope; the
    run reads its clock in UTC and makes the Date's text in the event's zone once a second."""
    value = DateHeaders(date.tzinfo or dt.UTC).at(date.astimezone(dt.UTC))
    dated = built_of(data).for_sending().wire_dated(value)
    assert dated == restamp_date(built_of(data).for_sending().wire, date)
    return Envelope(SOMEONE.key, "s@example.org", SOMEONE.email, dated, stuffed=True).wire()


@given(moments=st.lists(st.datetimes(min_value=dt.datetime(2026, 3, 29),
                                     max_value=dt.datetime(2026, 3, 30)), max_size=30),
       zone=st.sampled_from([ZoneInfo("Europe/Copenhagen"), dt.UTC, ZoneInfo("Asia/Kolkata")]))
def test_date_headers_made_once_a_second_are_what_each_moment_gives(
        moments: list[dt.datetime], zone: dt.tzinfo) -> None:
    """One DateHeaders over a run's moments (in any order, across a summer-time change and
    within one second) gives for each what formatting that moment afresh gives."""
    headers = DateHeaders(zone)
    for moment in sorted(moments)[: len(moments) // 2] + moments:
        utc = moment.replace(tzinfo=dt.UTC)
        expected = format_datetime(utc.astimezone(zone).replace(microsecond=0)).encode()
        assert headers.at(utc) == expected


DATES = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1),
                     timezones=st.sampled_from([dt.UTC, ZoneInfo("Europe/Copenhagen"),
                                                dt.timezone(dt.timedelta(hours=-9,
                                                                         minutes=-30))]))
# Lines of a message: dots at the start, a line of only a dot, non-ASCII, headers' look-alikes.
LINE = st.sampled_from(["", ".", "..", ". x", ".Søren", "...", "æøå ✓", "x" * 80, "Date: body",
                        "Subject: hi", "=2E", " .", "From: a@example.org"]) | st.text(max_size=12)
HEAD = st.lists(st.sampled_from(["From: a@example.org", "To: b@example.org", "Subject: ø",
                                 "Message-ID: <m@x>", ".Odd: header", "X-Dots: ..."]),
                max_size=5)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """CRLF-only messages as build_message's shape allows: a head with or without a Date
    header (anywhere in it), an empty line, a body; a first line that may start with a dot."""
    head = draw(HEAD)
    if draw(st.booleans()):
        head.insert(draw(st.integers(0, len(head))), "Date: Fri, 20 Nov 2026 10:30:00 +0100")
    body = draw(st.lists(LINE.filter(lambda line: "\r" not in line and "\n" not in line),
                         max_size=12))
    text = "\r\n".join([*head, "", *body]) + "\r\n"
    return text.encode("utf-8")


@given(data=messages(), date=DATES)
@example(data=b"Date: x\r\n\r\n.\r\n", date=NOW)  # a Date on the first line is not a header's
@example(data=b".lead\r\nDate: Fri, 20 Nov 2026 10:30:00 +0100\r\n\r\n..\r\n.\r\n", date=NOW)
@example(data=b"From: a\r\n\r\nDate: in the body\r\n.\r\n", date=NOW)
def test_handover_wire_is_the_old_paths_bytes_for_any_message(data: bytes,
                                                              date: dt.datetime) -> None:
    assert new_path(data, date) == old_path(data, date)


PIECE = st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"Date: ", b"\r\nDate: ",
                         b"\r\n\r\n", b"x", "ø".encode(), b"\x00", b"\r\n."]) | st.binary(
    max_size=6)


@given(data=st.lists(PIECE, max_size=24).map(b"".join), date=DATES)
@example(data=b"From: a\r\nDate: x", date=NOW)  # the Date line last, with no line ending
@example(data=b"From: a\r\nDate: x\r", date=NOW)
@example(data=b"", date=NOW)
@example(data=b".", date=NOW)
@example(data=b"A\r\n\r\nDate: x\r\n", date=NOW)
def test_handover_stuffing_and_the_date_splice_commute_on_any_bytes(data: bytes,
                                                                    date: dt.datetime) -> None:
    """Whatever the bytes (stray CRs and LFs too, as crlf=True trusts them): a Date line
    never starts with a dot, so splicing it into the wire form gives the old path's bytes."""
    assert restamp_date(dot_stuff(data, crlf=True), date) == old_path(data, date)


def test_restamp_keeps_the_whole_message_when_the_date_line_is_last() -> None:
    """The splice used to end at ``find`` = -1 there, and kept the last byte after the new
    Date ("Date: <new>o")."""
    date = dt.datetime(2026, 12, 2, 4, 5, 6, 789, tzinfo=dt.UTC)
    stamp = format_datetime(date.replace(microsecond=0)).encode()
    for head in (b"From: a\r\nDate: Sun, 1 Nov 2026 10:00:00 +0000", b"X: y\r\nDate: o",
                 b"\r\nDate: "):
        start = head.index(b"\r\nDate: ") + len(b"\r\nDate: ")
        assert restamp_date(head, date) == head[:start] + stamp


@given(data=messages())
@example(data=b".\r\n")
@example(data=b"..\r\n.\r\n...\r\n")
def test_built_for_sending_still_gives_the_message_as_built(data: bytes) -> None:
    sendable = built_of(data).for_sending()
    assert sendable.stuffed and sendable.wire == dot_stuff(data, crlf=True)
    assert sendable.data == data == unstuffed(sendable.wire)
    assert sendable.for_sending() is sendable  # never stuffed twice
    # What the worker found of its bytes is what the transport would find (BODY=8BITMIME),
    # and a Date spliced in later changes nothing of it.
    assert sendable.ascii == data.isascii()
    assert restamp_date(sendable.wire, dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
                        ).isascii() == sendable.ascii
    assert pickle.loads(pickle.dumps(sendable)) == sendable


@pytest.mark.parametrize("data", [b"a\nb\rc", b".x\n.y", b"Subject: s\r\n\r\n.\n", b"no end"])
def test_a_message_not_known_to_be_crlf_is_still_stuffed_and_mended_on_the_way_out(
        data: bytes) -> None:
    envelope = Envelope("k", "s@example.org", "r@example.org", data)
    assert envelope.wire() == dot_stuff(data) and envelope.wire().endswith(b"\r\n.\r\n")
    assert b"\n" not in envelope.wire().replace(b"\r\n", b"")


# -- real messages: built by worker processes, sent to real relays ------------------------------

DOTS = (".\n..two dots\n. a dot and a space\n.{{ registrant.name }}\n"
        "Kære {{ registrant.name }}.\n...\n")


def dotted_event(folder: Path, people: int, relay: SmtpServer | None = None) -> Path:
    rows = [(f".Deltager {i}", f"user{i}@example.org", "da") for i in range(people)]
    builder = EventBuilder(rows=rows, files={"templates/da/invitation.txt": DOTS})
    if relay is not None:
        builder.smtp_for(relay)
    return builder.write(folder).folder


def test_messages_built_for_sending_by_workers_are_the_plain_ones_stuffed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "MIN_ROWS", 8)  # workers for a short list (decided here)
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    folder = dotted_event(tmp_path / "e", 24)
    campaign = Campaign.open(folder, now=NOW)
    plain = list(campaign.messages(unique_registrants(campaign.source)))
    assert pool.pays(len(plain))
    sendable = list(campaign.messages(unique_registrants(campaign.source), wire=True))
    assert pool.worker_pids(campaign)  # built by the workers
    assert [b.stuffed for b in sendable] == [True] * 24
    assert [b.wire for b in sendable] == [dot_stuff(b.data, crlf=True) for b in plain]
    assert [b.data for b in sendable] == [b.data for b in plain]
    for built in sendable:  # each line that starts with a dot gets one more
        assert b"\r\n...two dots\r\n" in built.wire and b"\r\n..two dots\r\n" in built.data
        assert b"\r\n....\r\n" in built.wire and b"\r\n...Deltager " in built.wire


def text_of(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


class _Quiet:
    def started(self, total: int) -> None: ...
    def finished(self, key: str, state: str, reply: str) -> None: ...
    def retrying(self, key: str, reply: str, delay: float) -> None: ...


HANDED_OVER = dt.datetime(2030, 1, 2, 8, 15, 42, 654321, tzinfo=dt.UTC)


@pytest.mark.parametrize("test_to", [None, "tester@example.org"])
@pytest.mark.parametrize("script", [Script(group_replies=True), Script(pipelining=False)],
                         ids=["pipelined", "one-command-at-a-time"])
def test_dotted_lines_arrive_intact_with_the_hand_over_date(
        tmp_path: Path, script: Script, test_to: str | None) -> None:
    with SmtpServer(script=script) as relay:
        folder = dotted_event(tmp_path / "e", 3, relay)
        campaign = Campaign.open(folder, now=NOW)
        clock = FakeClock()
        result = asyncio.run(send(campaign, password=None,
                                  options=SendOptions(test_to=test_to, limit=3),
                                  progress=_Quiet(), clock=clock, sleep=clock.sleep,
                                  wall_clock=lambda: HANDED_OVER))
        received = relay.transactions
    assert result.sent == len(received) == 3
    zone = Campaign.open(folder, now=NOW).config.event.zone
    stamp = format_datetime(HANDED_OVER.astimezone(zone).replace(microsecond=0)).encode()
    fresh = Campaign.open(folder, now=NOW)
    registrants = {r.name: r for r in unique_registrants(fresh.source)}
    named = [str(message_from_bytes(t.data, policy=policy.default)["To"].addresses[0]
                 .display_name) for t in received]
    assert sorted(named) == sorted(registrants)  # each registrant's message once
    for transaction in received:
        data = transaction.data
        registrant = registrants[str(message_from_bytes(data, policy=policy.default)["To"]
                                     .addresses[0].display_name)]
        assert transaction.rcpt_tos == (test_to or registrant.email,)
        assert re.findall(rb"\r\nDate: ([^\r]*)\r\n", data.partition(b"\r\n\r\n")[0]) == [stamp]
        name = registrant.name
        assert text_of(data) == (f".\n..two dots\n. a dot and a space\n.{name}\n"
                                 f"Kære {name}.\n...\n")
        if test_to is None:  # byte for byte the message as built, with the hand-over Date
            built = fresh.build(registrant).data
            assert data == re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: " + stamp + b"\r\n",
                                  built, count=1)


def test_one_instant_in_two_zones_gets_each_zones_date() -> None:
    """The Date's text is cached; two zones' datetimes of one instant are equal, and once
    shared one text (whichever zone came first)."""
    instant = dt.datetime(2026, 12, 2, 9, 30, 15, tzinfo=dt.UTC)
    head = b"From: a\r\nDate: x\r\n\r\nbody\r\n"
    assert b"Date: Wed, 02 Dec 2026 09:30:15 +0000\r\n" in restamp_date(head, instant)
    copenhagen = instant.astimezone(ZoneInfo("Europe/Copenhagen"))
    assert b"Date: Wed, 02 Dec 2026 10:30:15 +0100\r\n" in restamp_date(head, copenhagen)
