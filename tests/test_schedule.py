"""[schedule]: durations, slack, each stage's window, and what a window means for one
registrant (schedule.py, due.verdict), with property tests over the durations."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from invitemail.inputs.schedule import (
    Stage,
    default_slack,
    format_duration,
    parse_duration,
    read_schedule,
)
from invitemail.journal.store import State
from invitemail.send.due import verdict
from support.cli import run_cli
from support.event import EventBuilder

UNITS = {"minute": 1, "minutes": 1, "min": 1, "m": 1, "hour": 60, "hours": 60, "h": 60,
         "hr": 60, "day": 1440, "days": 1440, "d": 1440, "week": 10080, "weeks": 10080,
         "w": 10080}
START = dt.datetime(2030, 12, 10, 13, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(hours=1)


@pytest.mark.parametrize(("text", "minutes"), [
    ("1 day", 1440), ("2 hours", 120), ("30 minutes", 30), ("90 min", 90), ("1 week", 10080),
    ("1 hour 30 minutes", 90), ("1h30m", 90), ("  2 Days ", 2880), ("1 day, 2 hours", 1560),
    ("1 day and 1 hour", 1500), ("24 hours", 1440)])
def test_schedule_duration_reads_what_people_write(text: str, minutes: int) -> None:
    assert parse_duration(text) == dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(("text", "says"), [
    ("", "write a number and a unit"), ("1", "write a number and a unit"),
    ("day", "write a number and a unit"), ("1 fortnight", "'fortnight' is not a unit"),
    ("0 minutes", "more than zero"), ("-1 hour", "write a number and a unit"),
    ("1.5 hours", "write a number and a unit"), ("2 years", "'years' is not a unit"),
    ("400 days", "at most a year"), ("1 hour before", "write a number and a unit")])
def test_schedule_duration_refuses_with_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)


parts = st.lists(st.tuples(st.integers(0, 60), st.sampled_from(sorted(UNITS))), min_size=1,
                 max_size=3)


@given(parts, st.sampled_from([" ", ", ", " and ", ""]))
@example([(1, "day")], " ")
@example([(0, "h"), (5, "m")], "")
def test_schedule_duration_property(pieces: list[tuple[int, str]], separator: str) -> None:
    """Any number-and-unit text reads as the sum of its parts, or is refused with a
    ValueError (zero, longer than a year); what it is written back as reads the same."""
    text = separator.join(f"{n} {unit}" for n, unit in pieces)
    minutes = sum(n * UNITS[unit] for n, unit in pieces)
    if minutes == 0 or minutes > 366 * 1440:
        with pytest.raises(ValueError):
            parse_duration(text)
        return
    duration = parse_duration(text)
    assert duration == dt.timedelta(minutes=minutes)
    assert parse_duration(format_duration(duration)) == duration


@given(st.text(max_size=30))
@example("1 day 1")
@example("٣ hours")  # a digit of another script: \d would take it, int() too
def test_schedule_duration_anything_else_is_a_value_error(text: str) -> None:
    try:
        duration = parse_duration(text)
    except ValueError:
        return
    assert dt.timedelta(0) < duration <= dt.timedelta(days=366)
    assert duration.total_seconds() % 60 == 0


@given(st.integers(1, 366 * 1440), st.integers(1, 366 * 1440),
       st.sampled_from(["reminder", "followup"]))
def test_schedule_windows_property(offset: int, slack: int, kind: str) -> None:
    """A window opens when the stage is due and closes after it; a reminder's never after
    the start (no reminder once the event has started)."""
    stage = Stage(kind, dt.timedelta(minutes=offset), dt.timedelta(minutes=slack))  # type: ignore[arg-type]
    due, closes = stage.due(START, END), stage.closes(START, END)
    assert due < closes
    if kind == "reminder":
        assert closes <= START and due == START - stage.offset
    else:
        assert due == END + stage.offset and closes == due + stage.slack


def test_schedule_default_slack_is_half_with_a_floor_and_a_cap() -> None:
    assert default_slack("reminder", dt.timedelta(hours=1)) == dt.timedelta(minutes=30)
    assert default_slack("reminder", dt.timedelta(minutes=6)) == dt.timedelta(minutes=5)
    assert default_slack("reminder", dt.timedelta(days=1)) == dt.timedelta(hours=6)
    assert default_slack("reminder", dt.timedelta(weeks=1)) == dt.timedelta(hours=6)
    assert default_slack("followup", dt.timedelta(hours=2)) == dt.timedelta(days=1)


def test_schedule_slack_one_for_all_or_per_stage() -> None:
    one = read_schedule({"reminders": ["1 day", "1 hour"], "slack": "10 minutes"})
    assert [s.slack for s in one.reminders] == [dt.timedelta(minutes=10)] * 2
    table = read_schedule({"reminders": ["1 day", "60 min"], "followup": "2 hours",
                           "slack": {"24 hours": "2 hours", "1 hour": "20 minutes",
                                     "followup": "3 days"}})
    assert [s.slack for s in table.stages] == [dt.timedelta(hours=2), dt.timedelta(minutes=20),
                                                dt.timedelta(days=3)]
    every = read_schedule({"reminders": ["1 day", "1 hour"], "slack": {"reminders": "1 hour"}})
    assert [s.slack for s in every.stages] == [dt.timedelta(hours=1)] * 2
    assert read_schedule({}).stages == ()


def test_schedule_stage_key_follows_the_start() -> None:
    stage = read_schedule({"reminders": ["24 hours"]}).reminders[0]
    assert stage.name == "reminder 1 day"
    assert stage.key(START) == "reminder@1 day@2030-12-10T13:00Z"
    assert stage.key(START + dt.timedelta(days=7)) != stage.key(START)


def verdict_at(now: dt.datetime, invited: dt.datetime | None = START - dt.timedelta(days=9),
               state: State | None = None, skipped: str | None = None) -> str:
    due, closes = START - dt.timedelta(days=1), START - dt.timedelta(hours=18)
    return verdict(due, closes, invited, state, skipped, now)[0]


def test_schedule_verdict_for_one_registrant() -> None:
    day = dt.timedelta(days=1)
    assert verdict_at(START - 2 * day) == "pending"
    assert verdict_at(START - day) == "send"
    assert verdict_at(START - dt.timedelta(hours=18, seconds=1)) == "send"
    assert verdict_at(START - dt.timedelta(hours=18)) == "skip"  # the window closed
    assert verdict_at(START - day, invited=START - day) == "skip"  # invited as it fell due
    assert verdict_at(START - day, invited=None) == "not invited"
    assert verdict_at(START - day, state=State.SENT) == "sent"
    assert verdict_at(START - day, state=State.PENDING) == "send"  # a run that stopped
    assert verdict_at(START - day, state=State.UNCERTAIN) == "failed"  # never resent
    assert verdict_at(START - day, skipped="recorded") == "skipped"


moments = st.integers(-3 * 1440, 3 * 1440).map(lambda m: START + dt.timedelta(minutes=m))


@given(st.integers(1, 2 * 1440), st.integers(1, 2 * 1440), st.none() | moments, moments)
@example(60, 30, START - dt.timedelta(days=2), START - dt.timedelta(minutes=60))  # due
@example(60, 30, START - dt.timedelta(days=2), START - dt.timedelta(minutes=30))  # closed
@example(60, 30, START - dt.timedelta(minutes=60), START - dt.timedelta(minutes=59))
def test_schedule_verdict_sends_only_inside_the_window_to_the_invited(
        offset: int, slack: int, invited: dt.datetime | None, now: dt.datetime) -> None:
    """A reminder goes only to a registrant invited before it was due, only from its due
    time until its window closes, and never once the event has started; a registrant it
    will never reach is a skip to record (unless not invited at all)."""
    stage = Stage("reminder", dt.timedelta(minutes=offset), dt.timedelta(minutes=slack))
    due, closes = stage.due(START, END), stage.closes(START, END)
    what, why = verdict(due, closes, invited, None, None, now)
    if invited is None:
        assert what == "not invited"
    elif invited >= due:
        assert (what, why) == ("skip", "the invitation went out after this reminder was due")
    elif now < due:
        assert what == "pending"
    elif now < closes:
        assert what == "send" and due <= now < START
    else:
        assert what == "skip" and "window closed" in why


@pytest.mark.parametrize(("schedule", "key", "says"), [
    ('reminders = ["1 dya"]', "schedule.reminders", "'dya' is not a unit"),
    ('reminders = "1 day"\nfolowup = "2 hours"', "schedule.folowup",
     "did you mean 'followup'?"),
    ('reminders = [1]', "schedule.reminders", 'reminders = ["1 day", "1 hour"]'),
    ('reminders = ["1 day", "24 hours"]', "schedule.reminders", "given twice"),
    ('followup = 2', "schedule.followup", 'followup = "2 hours"'),
    ('reminders = ["1 hour"]\nslack = { "1 day" = "1 hour" }', "schedule.slack",
     "not a stage of the schedule"),
    ('reminders = ["1 hour"]\nslack = "soon"', "schedule.slack", "'soon' is not a duration"),
])
def test_schedule_errors_name_the_key_line_and_fix(tmp_path: Path, schedule: str, key: str,
                                                   says: str) -> None:
    builder = EventBuilder()
    builder.toml.section_source("schedule", schedule)
    folder = builder.write(tmp_path / "e").folder
    run = run_cli("check", folder)
    assert run.exit_code == 1
    assert f"{folder / 'event.toml'}:" in run.stderr and key in run.stderr
    assert says in run.stderr
    assert "Traceback" not in run.output
