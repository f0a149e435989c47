"""The event's schedule: ``[schedule]`` of event.toml, durations, and each stage's window.

Pure: no I/O, no clock. ``reminders`` are durations before the start, ``followup`` one after
the end. Each stage is due at one moment and may go out until its window closes: ``slack``
after it is due (a reminder's window also closes when the event starts). A window missed by
more than its slack is skipped, never sent late (due.py applies that per registrant).

Durations are written as a whole number and a unit, or several: "1 day", "2 hours",
"30 minutes", "90 min", "1 week", "1 hour 30 minutes". The unit is at least a minute.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["reminder", "followup"]

_UNITS: Mapping[str, int] = {  # minutes
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 1),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 60),
    **dict.fromkeys(("d", "day", "days"), 60 * 24),
    **dict.fromkeys(("w", "week", "weeks"), 60 * 24 * 7),
}
_PART = re.compile(r"([0-9]+)\s*([a-z]+)")
_SEPARATORS = re.compile(r"^(?:\s|,|\band\b)*$")
LONGEST = dt.timedelta(days=366)
DURATION_EXAMPLE = '"1 day", "2 hours", "30 minutes", "90 min" or "1 week"'

# A reminder's window, unless event.toml says otherwise: half its distance from the start,
# at least 5 minutes and at most 6 hours ("1 hour": until 30 minutes before; "1 day": until
# 18 hours before; "1 week": 6 hours). The follow-up's: 1 day (it is sent by hand, from the
# attendance report, and "thank you for coming" two days late is still welcome; later not).
REMINDER_SLACK_SHARE = 0.5
REMINDER_SLACK_FLOOR = dt.timedelta(minutes=5)
REMINDER_SLACK_CAP = dt.timedelta(hours=6)
FOLLOWUP_SLACK = dt.timedelta(days=1)


class ScheduleError(ValueError):
    """A value of [schedule] that cannot be used: ``key`` is the key (``reminders``, ...),
    ``hint`` what to write instead."""

    def __init__(self, key: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.hint = hint


def parse_duration(text: str) -> dt.timedelta:
    """``"1 day"``, ``"90 min"``, ``"1 hour 30 minutes"`` -> a timedelta of whole minutes,
    above zero and at most a year. ValueError says what to write."""
    words = text.strip().lower()
    parts = list(_PART.finditer(words))
    between = [words[a.end():b.start()] for a, b in itertools.pairwise(parts)]
    well_formed = (parts and not words[:parts[0].start()].strip()
                   and not words[parts[-1].end():].strip()
                   and all(_SEPARATORS.match(gap) for gap in between))
    unknown = [p.group(2) for p in parts if p.group(2) not in _UNITS]
    if not well_formed or unknown:
        why = f"{unknown[0]!r} is not a unit; " if well_formed and unknown else ""
        raise ValueError(f"{why}write a number and a unit (minutes, hours, days or weeks), "
                         f"e.g. {DURATION_EXAMPLE}")
    minutes = sum(int(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    if minutes <= 0:
        raise ValueError(f"must be more than zero, e.g. {DURATION_EXAMPLE}")
    if minutes > LONGEST.total_seconds() // 60:
        raise ValueError("must be at most a year (366 days)")
    return dt.timedelta(minutes=minutes)


def format_duration(duration: dt.timedelta) -> str:
    """The one way a duration is written back: the largest unit that divides it exactly
    ("1 day", "26 hours", "90 minutes"), so "24 hours" and "1 day" name the same stage."""
    minutes = int(duration.total_seconds() // 60)
    for unit, size in (("week", 60 * 24 * 7), ("day", 60 * 24), ("hour", 60), ("minute", 1)):
        if minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    raise AssertionError("unreachable: every whole number of minutes divides by 1")


def default_slack(kind: Kind, offset: dt.timedelta) -> dt.timedelta:
    if kind == "followup":
        return FOLLOWUP_SLACK
    share = dt.timedelta(minutes=int(offset.total_seconds() * REMINDER_SLACK_SHARE // 60))
    return min(max(share, REMINDER_SLACK_FLOOR), REMINDER_SLACK_CAP)


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the schedule: a reminder ``offset`` before the start, or the follow-up
    ``offset`` after the end; it may go out until ``slack`` after it is due."""

    kind: Kind
    offset: dt.timedelta
    slack: dt.timedelta

    @property
    def name(self) -> str:
        """"reminder 1 day", "follow-up 2 hours": how output names the stage."""
        label = "follow-up" if self.kind == "followup" else "reminder"
        return f"{label} {format_duration(self.offset)}"

    def due(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        return start - self.offset if self.kind == "reminder" else end + self.offset

    def closes(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        """When the window ends: ``slack`` after it is due; a reminder's at the start at the
        latest (no reminder once the event has started)."""
        closes = self.due(start, end) + self.slack
        return min(closes, start) if self.kind == "reminder" else closes

    def key(self, start: dt.datetime) -> str:
        """The journal's name for this stage of an event starting at ``start``: a new start
        (a reschedule, an update that moves the time) is a new timeline, so its reminders go
        out again; "24 hours" and "1 day" are one stage."""
        when = start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
        return f"{self.kind}@{format_duration(self.offset)}@{when}"


@dataclass(frozen=True, slots=True)
class Schedule:
    reminders: tuple[Stage, ...] = ()
    followup: Stage | None = None

    @property
    def stages(self) -> tuple[Stage, ...]:
        """Every stage, in the order they fall due."""
        ordered = tuple(sorted(self.reminders, key=lambda s: -s.offset))
        return ordered + ((self.followup,) if self.followup is not None else ())

    def __bool__(self) -> bool:
        return bool(self.stages)


def stage_of_key(key: str) -> tuple[str, str, str] | None:
    """(kind, duration text, start "YYYY-MM-DDTHH:MMZ") of a stage's journal name, or None."""
    parts = key.split("@")
    if len(parts) != 3 or parts[0] not in ("reminder", "followup"):
        return None
    return parts[0], parts[1], parts[2]


class ScheduleProblems(ValueError):
    """Every problem of one [schedule] (one ScheduleError per key at most)."""

    def __init__(self, errors: list[ScheduleError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def read_schedule(section: Mapping[str, Any]) -> Schedule:
    """``[schedule]`` (already checked for unknown keys) -> a Schedule. ScheduleProblems
    holds a ScheduleError for each key that is wrong, naming it and what to write."""
    errors: list[ScheduleError] = []
    offsets: list[dt.timedelta] = []
    followup: dt.timedelta | None = None
    slack: dict[str, dt.timedelta] = {}
    try:
        offsets = _reminders(section)
    except ScheduleError as err:
        errors.append(err)
    try:
        followup = _followup(section)
    except ScheduleError as err:
        errors.append(err)
    try:  # the stages a slack table names are known once the rest reads well
        if not errors:
            slack = _slacks(section.get("slack"), offsets, followup is not None)
    except ScheduleError as err:
        errors.append(err)
    if errors:
        raise ScheduleProblems(errors)
    stages = tuple(Stage("reminder", o, slack.get(format_duration(o))
                         or default_slack("reminder", o)) for o in offsets)
    after = Stage("followup", followup, slack.get("followup") or default_slack("followup",
                                                                                followup)) \
        if followup is not None else None
    return Schedule(stages, after)


def _reminders(section: Mapping[str, Any]) -> list[dt.timedelta]:
    reminders = section.get("reminders", [])
    if isinstance(reminders, str):
        reminders = [reminders]
    if not isinstance(reminders, list) or not all(isinstance(r, str) for r in reminders):
        raise ScheduleError("reminders", "must be a list of durations before the start",
                            'write it as reminders = ["1 day", "1 hour"]')
    offsets: list[dt.timedelta] = []
    for text in reminders:
        offset = _duration("reminders", text)
        if offset in offsets:
            raise ScheduleError("reminders", f"{text!r} is given twice ({format_duration(offset)})",
                                "keep one of them")
        offsets.append(offset)
    return offsets


def _followup(section: Mapping[str, Any]) -> dt.timedelta | None:
    text = section.get("followup")
    if text is None:
        return None
    if not isinstance(text, str):
        raise ScheduleError("followup", f"must be a duration after the end, not {text!r}",
                            'write it in quotes, e.g. followup = "2 hours"')
    return _duration("followup", text)


def _duration(key: str, text: str) -> dt.timedelta:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise ScheduleError(key, f"{text!r} is not a duration", str(err)) from None


def _slacks(value: Any, offsets: list[dt.timedelta], followup: bool) -> dict[str, dt.timedelta]:
    """``slack = "30 minutes"`` (every stage) or a table: a reminder's duration as written in
    ``reminders``, ``reminders`` (every reminder) or ``followup`` -> how long it may be late."""
    names = [format_duration(o) for o in offsets] + (["followup"] if followup else [])
    if value is None:
        return {}
    if isinstance(value, str):
        return dict.fromkeys(names, _duration("slack", value))
    if not isinstance(value, dict):
        raise ScheduleError("slack", f"must be a duration or a table, not {value!r}",
                            'write slack = "30 minutes", or slack = { "1 hour" = "20 minutes", '
                            'followup = "1 day" }')
    found: dict[str, dt.timedelta] = {}
    every = value.get("reminders")
    if every is not None:
        if not isinstance(every, str):
            raise ScheduleError("slack", f"reminders = {every!r} is not a duration",
                                'write it in quotes, e.g. reminders = "30 minutes"')
        found.update((format_duration(o), _duration("slack", every)) for o in offsets)
    for name, text in value.items():
        if name == "reminders":
            continue
        try:
            which = "followup" if name == "followup" else format_duration(parse_duration(name))
        except ValueError:
            which = name
        if which not in names:
            raise ScheduleError("slack", f"{name!r} is not a stage of the schedule",
                                "name a reminder as written in reminders (e.g. \"1 hour\"), "
                                "reminders (all of them) or followup")
        if not isinstance(text, str):
            raise ScheduleError("slack", f"{name} = {text!r} is not a duration",
                                f'write it in quotes, e.g. "{name}" = "30 minutes"')
        found[which] = _duration("slack", text)
    return found
