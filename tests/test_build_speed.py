"""The worker's cheaper build and the cheaper trip back, held to the plain paths.

A message built for sending (``Campaign.build(..., wire=True)``) is stuffed as it is built,
each run of shared lines once for its group: its bytes must be the plain message stuffed
whole (``dot_stuff(data, crlf=True)``), the path it replaces. A Built pickles as its
constructor's arguments: it must come back equal, holding the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import pickle
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.campaign import Built, Campaign
from invitemail.inputs.addresses import Mailbox
from invitemail.inputs.cells import Registrant
from invitemail.inputs.registrants import unique_registrants
from invitemail.journal.store import CalendarRecord
from invitemail.mime import ics, wording
from invitemail.mime.message import MessageParts, build_message
from invitemail.mime.quoted_printable import dot_stuffed, quoted_printable
from invitemail.outcome import Made, outcome_of
from invitemail.render.body import Body, PartLayout
from invitemail.render.jinja_adapter import context_maker, render_chunks
from invitemail.render.renderer import Renderer
from invitemail.send.envelope import dot_stuff
from support.event import NOW, EventBuilder

# Lines that start with dots, alone and with text, and lines quoted-printable folds (a
# continuation line can start with a dot too).
DOTTED = (".\n..two dots\n. a dot and a space\n.{{ registrant.name }}\n"
          "Kære {{ registrant.name }}.\n...\n" + "x" * 75 + ".dot after a soft break\n"
          "{{ registrant.name }}\n")
TEMPLATES = ("invitation", "reminder", "update", "cancellation", "thanks", "missed")
# (template, assume, stage): every template, and a stage of the schedule
RUNS = [("invitation", None, None), ("reminder", None, None),
        ("reminder", None, "reminder@1 day"), ("update", None, None),
        ("cancellation", None, None), ("followup", "thanks", None),
        ("followup", "missed", None)]


def dotted_event(folder: Path) -> Path:
    link = "https://zoom.us/j/123?pwd=personal"  # two share it; one has a link of its own
    rows = [(".Deltager", "dot@example.org", "da", ""),
            ("Søren Ågård", "soren@example.org", "da", link),
            (". Karen", "karen@example.org", "en", link), ("..", "two@example.org", "en", ""),
            ("Ann Lee", "ann@example.org", "en", "https://zoom.us/j/9?pwd=own")]
    files: dict[str, bytes | str] = {}
    for language in ("da", "en"):
        for template in TEMPLATES:
            files[f"templates/{language}/{template}.txt"] = DOTTED
    return EventBuilder(header=("Navn", "E-mail", "Sprog", "Join URL"), rows=rows,
                        files=files).write(folder).folder


def campaigns(folder: Path, template: str, assume: str | None,
              stage: str | None) -> list[Campaign]:
    """The campaign with its skeletons (fast), and with every message rendered in full."""
    fast = Campaign.open(folder, template=template, now=NOW, assume=assume, stage=stage)
    plain = Campaign(fast.config, fast.source, Renderer(folder / "templates", fast=False),
                     template=template, now=NOW, followup=fast.followup, stage=stage)
    return [fast, plain]


@pytest.mark.parametrize(("template", "assume", "stage"), RUNS)
@pytest.mark.parametrize("event", ["dotted", "builtin"])
def test_messages_built_for_sending_are_the_plain_messages_stuffed(
        tmp_path: Path, template: str, assume: str | None, stage: str | None,
        event: str) -> None:
    folder = dotted_event(tmp_path / "e") if event == "dotted" else \
        EventBuilder().write(tmp_path / "e").folder
    stuffed_lines = 0
    for campaign in campaigns(folder, template, assume, stage):
        for registrant in unique_registrants(campaign.source):
            for test_to in (None, "tester@example.org"):
                plain = campaign.build(registrant, test_to=test_to)
                wire = campaign.build(registrant, test_to=test_to, wire=True)
                assert not plain.stuffed and wire.stuffed
                if test_to is None:  # a test message's Message-ID is random
                    assert wire.content == dot_stuff(plain.data, crlf=True)
                    assert wire.data == plain.data
                    assert wire == plain.for_sending()
                else:
                    assert wire.content == dot_stuff(wire.data, crlf=True)
                stuffed_lines += wire.content.count(b"\r\n..")
                made = outcome_of(campaign, registrant, encode=True, test_to=test_to,
                                  wire=True)
                assert isinstance(made, Made) and made.built.stuffed
    assert stuffed_lines > 0 or event == "builtin"  # the dotted lines were stuffed


LINE = st.one_of(st.sampled_from(["", ".", "..", ". x", ".Søren", "x" * 75 + ".y", "=",
                                  "æøå " * 30, "\t", "a\r\nb", "\r", "\n.", "<p>.</p>"]),
                 st.text(max_size=20))
TEXT = st.lists(LINE, max_size=10).map("\n".join)


@st.composite
def bodies(draw: st.DrawFn) -> Body | str:
    """A body as the renderer makes it: a whole text, or filled in from a skeleton's
    pieces (shared text, and a registrant's values)."""
    if draw(st.booleans()):
        return draw(TEXT)
    values = draw(st.lists(LINE, min_size=1, max_size=3))
    slots = draw(st.lists(st.one_of(TEXT, st.integers(0, len(values) - 1)), max_size=8))
    return Body.filled(PartLayout(slots), values)


NAMES = st.sampled_from([".Søren", "Ann", ". Lee", "", "a" * 70, "Ågård, Søren"])


@settings(max_examples=300, deadline=None)
@given(text=bodies(), html=bodies(), name=NAMES,
       subject=st.sampled_from([".dot", "Hej", " .x", "ø" * 50, "word " * 30]),
       calendar=st.one_of(st.none(), st.binary(max_size=300)))
def test_build_message_wire_is_build_message_stuffed(
        text: Body | str, html: Body | str, name: str, subject: str,
        calendar: bytes | None) -> None:
    parts = MessageParts(
        sender=Mailbox("Afsender", "from@example.org"),
        recipient=Mailbox(name, "to@example.org"), reply_to=None, subject=subject,
        date=dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC), message_id="<m@example.org>",
        text=text, html=html, calendar=calendar, method="REQUEST")
    expected = dot_stuff(build_message(parts), crlf=True)
    assert build_message(parts, wire=True) == expected
    assert build_message(parts, wire=True) == expected  # the kept encodings, again
    assert build_message(parts) == dot_stuffed_back(expected)


def dot_stuffed_back(wire: bytes) -> bytes:
    """The message again: the final dot off, one dot off every line that starts with two."""
    data = wire[:-3]
    data = data[1:] if data.startswith(b"..") else data
    return data.replace(b"\r\n..", b"\r\n.")


@settings(max_examples=300, deadline=None)
@given(body=bodies())
def test_quoted_printable_stuffed_is_the_encoding_stuffed(body: Body | str) -> None:
    plain = quoted_printable(body)
    # The reference: every line that starts with a dot gets one more (lines split apart).
    lines = plain.split(b"\r\n")
    expected = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    assert quoted_printable(body, stuffed=True) == expected
    assert quoted_printable(body, stuffed=True) == expected  # the kept encodings, again
    assert quoted_printable(body) == plain  # the plain encoding is kept apart
    assert dot_stuffed(plain) == expected


# -- the trip from a worker --------------------------------------------------------------


@pytest.mark.parametrize(("template", "assume", "stage"), RUNS)
def test_a_built_survives_the_trip_equal_with_the_same_bytes(
        tmp_path: Path, template: str, assume: str | None, stage: str | None) -> None:
    folder = dotted_event(tmp_path / "e")
    campaign = Campaign.open(folder, template=template, now=NOW, assume=assume, stage=stage)
    for registrant in unique_registrants(campaign.source):
        for wire in (False, True):
            made = outcome_of(campaign, registrant, encode=True, wire=wire)
            assert isinstance(made, Made)
            for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
                back = pickle.loads(pickle.dumps(made, protocol))
                assert type(back) is Made and back == made
                assert back.built.content == made.built.content
                assert back.built.stuffed is made.built.stuffed
                assert type(back.built.registrant) is Registrant
                assert back.built.registrant == registrant
                assert back.built.registrant.fields == registrant.fields
                assert back.built.calendar == made.built.calendar
                if made.built.calendar is not None:
                    assert type(back.built.calendar) is CalendarRecord
                assert back.built.wire == made.built.wire


@pytest.mark.parametrize("calendar", [None, CalendarRecord(3, "2026-12-10T14:00:00+01:00", 90,
                                                           "https://x.example/j", "ab", "update")])
@pytest.mark.parametrize("inspected", [None, 17, {"spam": 1.5}])
def test_made_and_built_by_hand_survive_the_trip(calendar: CalendarRecord | None,
                                                  inspected: object) -> None:
    registrant = Registrant(line=7, email="A@example.org", name=".A", first_name="A",
                            last_name="", language="en", join_url="https://j.example/1",
                            timezone="Europe/Copenhagen", fields={"org": "Ø", "": ""})
    built = Built(registrant, "t@example.org", "<m@x>", "S", b"..x\r\n.\r\n", calendar,
                  "thanks", stuffed=True)
    made = Made(built, inspected)
    back = pickle.loads(pickle.dumps(made))
    assert back == made and back.inspected == inspected
    assert pickle.loads(pickle.dumps(registrant)) == registrant
    assert pickle.loads(pickle.dumps(Registrant(1, "b@x.org", "", "", "", "da", "", ""))) \
        == Registrant(1, "b@x.org", "", "", "", "da", "", "")


def test_the_pickled_forms_hold_every_field() -> None:
    """A field added to Registrant or Built must be added to its __reduce__ too."""
    registrant = Registrant(line=7, email="a@example.org", name="A", first_name="A",
                            last_name="B", language="en", join_url="https://j.example/1",
                            timezone="UTC", fields={"org": "Ø"})
    _, args = registrant.__reduce__()
    assert args == tuple(getattr(registrant, f.name) for f in dataclasses.fields(Registrant))
    record = CalendarRecord(3, "2026-12-10T14:00:00+01:00", 90, "https://x.example/j", "ab",
                            "update")
    built = Built(registrant, "t@example.org", "<m@x>", "S", b"x\r\n", record, "update", True)
    _, args = built.__reduce__()
    assert len(args) == len(dataclasses.fields(Built))
    assert args[5] == tuple(getattr(record, f.name) for f in dataclasses.fields(CalendarRecord))
    assert args[:5] + args[6:] == tuple(getattr(built, f.name) for f in dataclasses.fields(Built)
                                        if f.name != "calendar")


# -- the skeleton's filler: a context per message, made for less -------------------------

SOURCES = ["{{ x }}|{{ y }}", "{% for i in range(x|int % 4) %}{{ i }}{% endfor %}",
           "{{ dict(a=x)['a'] }}{{ range }}", "{% set ns = namespace(n=x) %}{{ ns.n }}",
           "{% set j = joiner('/') %}{% for v in [x, y] %}{{ j() }}{{ v }}{% endfor %}",
           "{{ cycler(x, y).next() }}{{ y|default('none') }}", "{{ self }}{{ x is defined }}",
           "{% block b %}{{ x }}{% endblock %}{{ self.b() }}", "{{ lipsum is defined }}"]
VARIABLES = st.dictionaries(st.sampled_from(["x", "y", "range", "dict", "z", "namespace"]),
                            st.one_of(st.integers(-5, 5), st.text(max_size=5)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from(SOURCES), variables=VARIABLES)
def test_a_context_made_for_less_is_the_one_jinja_makes(
        source: str, variables: dict[str, object]) -> None:
    env = Renderer(None).env
    template = env.from_string(source)
    made, expected = context_maker(template)(variables), template.new_context(variables)
    assert made.parent == expected.parent and made.vars == expected.vars
    assert made.globals_keys == expected.globals_keys
    assert (made.name, made.blocks.keys()) == (expected.name, expected.blocks.keys())
    assert made.eval_ctx.autoescape == expected.eval_ctx.autoescape
    try:
        wanted: str | type[Exception] = "".join(render_chunks(template, variables))
    except Exception as err:  # a value the template cannot use: it must fail the same
        wanted = type(err)
    try:
        got: str | type[Exception] = "".join(
            render_chunks(template, variables, new_context=context_maker(template)))
    except Exception as err:
        got = type(err)
    assert got == wanted


# -- the smaller pieces, each against what it replaced -----------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=3000),
                      st.integers(0, 1280).map(lambda n: (bytes(range(256)) * 5)[:n])))
def test_base64_lines_are_what_encodebytes_writes(data: bytes) -> None:
    assert ics.base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")


ENTRY_NAMES = st.sampled_from(["Søren", "", "A" * 200, "Ann;Lee", "x\x07y", "Karen Blixen"])


@settings(max_examples=200, deadline=None)
@given(people=st.lists(st.tuples(ENTRY_NAMES, st.sampled_from(["a@x.org", "b@example.org"]),
                                 st.sampled_from(["REQUEST", "CANCEL"]),
                                 st.sampled_from(["", "https://j.example/1", "L" * 150])),
                       min_size=1, max_size=6),
       stray=st.binary(max_size=200))
def test_a_calendar_encoded_by_its_builder_is_its_base64(
        people: list[tuple[str, str, str, str]], stray: bytes) -> None:
    builder = ics.CalendarBuilder()
    start = dt.datetime(2026, 12, 10, 14, 0, tzinfo=dt.UTC)
    for name, address, method, location in people:
        entry = ics.CalendarEntry(
            uid=ics.registrant_uid("ev@example.org", address), sequence=1, method=method,
            start=start, end=start + dt.timedelta(hours=1), title="Møde", description="d",
            location=location, organizer_name="O", organizer_address="o@example.org",
            attendee_name=name, attendee_address=address, stamp=start)
        calendar = builder.build(entry)
        expected = base64.encodebytes(calendar).replace(b"\n", b"\r\n")
        assert builder.encoded(calendar) == expected
        assert builder.encoded(calendar) == expected  # from the encoded start, again
        assert builder.encoded(stray) == base64.encodebytes(stray).replace(b"\n", b"\r\n")


def test_printable_drops_what_unicodedata_calls_control_and_keeps_the_rest() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    expected = "".join(c for c in every if c == "\n" or unicodedata.category(c) != "Cc")
    assert ics._printable(every) == expected
    assert len(every) - len(expected) == 64  # U+0000-001F and U+007F-009F, but the LF
    assert ics._printable("Søren Ågård") == "Søren Ågård"


@pytest.mark.parametrize(("template", "assume", "stage"), RUNS)
def test_the_record_built_is_the_current_record_at_the_message_sequence(
        tmp_path: Path, template: str, assume: str | None, stage: str | None) -> None:
    folder = dotted_event(tmp_path / "e")
    campaign = Campaign.open(folder, template=template, now=NOW, assume=assume, stage=stage)
    for registrant in [*unique_registrants(campaign.source)] * 2:  # the second: kept ones
        built = campaign.build(registrant)
        if campaign.followup is not None:
            assert built.calendar is None
            continue
        previous = campaign.history.get(registrant.key) or campaign.latest
        assert built.calendar == dataclasses.replace(
            campaign.current_record(registrant),
            sequence=campaign.sequence_for(registrant, previous))


def test_a_kept_record_is_not_given_to_another_campaign(tmp_path: Path) -> None:
    folder = dotted_event(tmp_path / "e")
    kept: wording.KeptRecords = {}
    for template in ("invitation", "cancellation", "invitation"):
        campaign = Campaign.open(folder, template=template, now=NOW)
        for registrant in unique_registrants(campaign.source):
            expected = dataclasses.replace(campaign.current_record(registrant), sequence=4)
            assert wording.sent_record(campaign, registrant, 4, kept) == expected
            campaign.template = "reminder"  # the same config, another template
            expected = dataclasses.replace(campaign.current_record(registrant), sequence=4)
            assert wording.sent_record(campaign, registrant, 4, kept) == expected
            campaign.template = template
