"""event.toml -> an :class:`EventConfig`: the file read (the only module that uses tomllib),
its tables checked, and every problem reported at once, each naming the file, the line where
the key stands (when it can be found) and the key.

What each table holds and how it is checked: event_settings.py ([event], [meeting],
[sender], [support], [privacy]), smtp_settings.py ([smtp], [sending]) and schedule.py
([schedule]); keys.py reads one key at a time and finds its line. The names they define are
importable from here too, where the rest of the package has always found them.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from invitemail.errors import ConfigError, InvitemailError, Problem
from invitemail.inputs.event_settings import (
    Event,
    Meeting,
    Privacy,
    Sender,
    Support,
    read_event,
    read_meeting,
    read_privacy,
    read_sender,
    read_support,
)
from invitemail.inputs.keys import LANGUAGES, LINE_BREAKS, KeyReader, in_language
from invitemail.inputs.schedule import Schedule, ScheduleProblems, read_schedule
from invitemail.inputs.smtp_settings import (
    DEFAULT_PORTS,
    SECURITY_MODES,
    Security,
    Sending,
    Smtp,
    parse_daily_limit,
    parse_rate,
    read_sending,
    read_smtp,
)
from invitemail.outputs.placeholders import PLACEHOLDERS, START_TIME, init_uid, parse_init_uid

__all__ = ["DEFAULT_PORTS", "EVENT_FILE", "LANGUAGES", "LINE_BREAKS", "REGISTRANTS_FILE",
           "SECURITY_MODES", "ConfigProblemsError", "Event", "EventConfig", "Meeting",
           "Privacy", "Security", "Sender", "Sending", "Smtp", "Support", "find_event_file",
           "in_language", "load_config", "parse_daily_limit", "parse_rate"]

EVENT_FILE = "event.toml"
REGISTRANTS_FILE = "registrants.csv"


@dataclass(frozen=True, slots=True)
class EventConfig:
    """Everything event.toml says, checked."""

    path: Path
    event: Event
    meeting: Meeting
    sender: Sender
    support: Support
    privacy: Privacy
    smtp: Smtp
    sending: Sending
    warnings: tuple[Problem, ...] = field(default=())
    schedule: Schedule = field(default=Schedule())  # [schedule]: reminders, follow-up
    # Values still as `invitemail init` wrote them: problems at `check` and `send`.
    placeholders: tuple[Problem, ...] = field(default=())

    @property
    def folder(self) -> Path:
        return self.path.parent


class ConfigProblemsError(ConfigError):
    """Several problems in one event.toml, all reported at once, in the order of the file."""

    def __init__(self, path: Path, errors: list[ConfigError]) -> None:
        lines = [f"{err} ({err.hint})" if err.hint else str(err) for err in errors]
        lines.append(f"{len(errors)} problems found.")
        InvitemailError.__init__(self, "\n".join(lines),
                                 hint=f"fix them all in {path}, then run `invitemail check` again")
        self.path = str(path)
        self.key = None
        self.errors = errors


def find_event_file(location: Path) -> Path:
    """Resolve the EVENT argument: a folder holding event.toml, or the file itself."""
    path = location / EVENT_FILE if location.is_dir() else location
    if not path.is_file():
        if not location.exists():
            raise ConfigError(location, "no such folder or file",
                              hint="give the event folder, or run `invitemail init DIR` first")
        raise ConfigError(path, "not found",
                          hint=f"is {location} an event folder? `invitemail init DIR` makes one")
    return path


def load_config(location: Path) -> EventConfig:
    """Read and check event.toml at ``location`` (a folder or the file)."""
    path = find_event_file(location)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(path, "is not UTF-8 text", hint="save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(path, f"cannot be read: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        # tomllib says "... (at line 3, column 7)"; put the line where every error has it.
        message = str(err)
        where: Path | str = path
        found = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if found:
            where = f"{path}:{found.group(1)}"
            message = f"{_toml_problem(message[:found.start()])} (column {found.group(2)})"
        elif message.endswith(" (at end of document)"):
            message = _toml_problem(message.removesuffix(" (at end of document)"))
            message += " (at the end of the file)"
        raise ConfigError(where, f"is not valid TOML: {message}",
                          hint="see https://toml.io for the syntax") from None
    return _Reader(path, text, data).read()


def _toml_problem(message: str) -> str:
    """tomllib's words for the mistakes people make most, in theirs; the rest as they are."""
    declared = re.fullmatch(r"Cannot declare \((.*)\) twice", message)
    if declared:
        parts = declared.group(1).split(",")
        names = ".".join(part.strip(" '\"") for part in parts if part.strip())
        return f"the section [{names}] is written twice; keep one"
    plain = {
        "Illegal character '\\n'": 'the line ends inside a quoted value: a closing " is missing',
        "Unterminated string": 'a quoted value is never closed: a closing " is missing',
        "Cannot overwrite a value": "a key is given a second time (or a key and a section share "
                                    "a name); keep one",
        "Invalid value": 'the value is not one TOML knows: text needs quotes, as in title = "..."',
        "Invalid date or datetime": "not a real date and time; write it as 2026-12-10T14:00:00",
    }
    return plain.get(message, message)


class _Reader(KeyReader):
    """Reads one parsed event.toml, table by table, with file and key in every error."""

    def read(self) -> EventConfig:
        for name in self.data:
            if name not in self.SECTIONS:
                import difflib  # only for a misspelt name: not on a good file's path

                close = difflib.get_close_matches(name, self.SECTIONS, n=1)
                hint = f"did you mean [{close[0]}]?" if close else "known sections: " + ", ".join(
                    f"[{s}]" for s in self.SECTIONS)
                if close and close[0] not in self.data:
                    self.suggested.add(f"[{close[0]}]")
                self.errors.append(self.error(name, None, "unknown section", hint=hint))
        k = self.attempt
        config = EventConfig(
            path=self.path,
            event=k(lambda: read_event(self)),
            meeting=k(lambda: read_meeting(self)),
            sender=k(lambda: read_sender(self)),
            support=k(lambda: read_support(self)),
            privacy=k(lambda: read_privacy(self)),
            smtp=k(lambda: read_smtp(self)),
            sending=k(lambda: read_sending(self)),
            warnings=tuple(self.warnings),
            schedule=k(self.read_schedule, Schedule()),
        )
        self.raise_errors()
        placeholders = tuple(self.find_placeholders(config.event))
        return replace(config, event=self.follow_date(config.event),
                       warnings=tuple(self.warnings), placeholders=placeholders)

    def raise_errors(self) -> None:
        self.errors = [err for err in self.errors if not (
            (err.key in self.suggested and err.message.endswith(": is missing"))
            or any(err.message.endswith(f": the {name} section is missing")
                   for name in self.suggested))]
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            def line(err: ConfigError) -> int:
                found = re.search(r":(\d+)$", err.path)
                return int(found.group(1)) if found else 0
            raise ConfigProblemsError(self.path, sorted(self.errors, key=line))

    def read_schedule(self) -> Schedule:
        try:
            return read_schedule(self.section("schedule"))  # schedule.py reads it
        except ScheduleProblems as problems:
            self.errors.extend(self.error("schedule", e.key, e.message, hint=e.hint)
                               for e in problems.errors)
            return Schedule()

    def follow_date(self, event: Event) -> Event:
        """init's uid names the date it wrote; until the first message is sent, it follows a
        changed ``start`` (no calendar has seen it). Once sent, it stays."""
        init = parse_init_uid(event.uid)
        if init is None:
            return event
        day, token = init
        try:
            stamped, sent = self.journal_state()
        except InvitemailError:  # the commands that use the journal say what is wrong
            return event
        if stamped is not None:  # the uid the journal, and any message sent, carry
            if stamped == event.uid or (parse_init_uid(stamped) or (day, ""))[1] != token:
                return event
            self.warn("event", "uid", f"is {stamped} as in the messages already begun; it "
                      "no longer follows the date")
            return replace(event, uid=stamped)
        if sent or day == event.start.date():
            return event
        uid = init_uid(event.start.date(), token)
        self.warn("event", "uid", f"follows the new date: {uid} (init wrote it for {day}); "
                  "it stays as it is once the first message is sent")
        return replace(event, uid=uid)

    def journal_state(self) -> tuple[str | None, bool]:
        """The uid the event folder's journal is stamped with, and whether it shows any
        message sent (or maybe sent)."""
        from invitemail.journal.store import Journal, State

        journal = Journal.open(self.path.parent, create=False)
        if journal is None:
            return None, False
        try:
            identity = journal.identity()
            gone = (State.SENT, State.SENDING, State.UNCERTAIN)
            sent = any(journal.counts(template)[state] for template in journal.templates()
                       for state in gone)
            return (identity.event_uid if identity else None), sent
        finally:
            journal.close()

    def find_placeholders(self, event: Event) -> list[Problem]:
        """Every value init wrote for the coordinator to replace that is still there."""
        found: list[Problem] = []
        for placeholder in PLACEHOLDERS:
            section = self.data.get(placeholder.section)
            written = section.get(placeholder.key) if isinstance(section, dict) else None
            if isinstance(written, str) and written.strip() == placeholder.value:
                shown = ("example password" if placeholder.secret
                         else f"placeholder {placeholder.value!r}")
                found.append(self.placeholder(placeholder.section, placeholder.key,
                                              f"is still init's {shown}: {placeholder.todo}"))
        init = parse_init_uid(event.uid)
        if init is not None and event.start.replace(tzinfo=None) == dt.datetime.combine(
                init[0], START_TIME):
            found.append(self.placeholder(
                "event", "start", f"is still init's placeholder date "
                f"{event.start:%Y-%m-%d %H:%M}: write your event's date and time (if that is "
                "the right one, give uid a name of your own)"))
        return sorted(found, key=lambda problem: problem.line or 0)

    def placeholder(self, section: str, key: str, message: str) -> Problem:
        return Problem(str(self.path), self.line_of(section, key), f"[{section}] {key} {message}")
