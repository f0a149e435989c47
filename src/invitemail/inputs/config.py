"""event.toml -> frozen dataclasses.

Every key product.md lists is read and checked here, and every error names the file, the
line where the key stands (when it can be found) and the key. Unknown keys are errors with a
"did you mean" suggestion, because a misspelt ``pasword`` silently ignored would send
invitations without a password.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import math
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from invitemail.auth.settings import Auth, read_auth
from invitemail.errors import ConfigError, InvitemailError, Problem
from invitemail.inputs.addresses import (
    AddressError,
    Mailbox,
    is_loopback_host,
    normalize_address,
    parse_mailbox,
)
from invitemail.inputs.schedule import Schedule, ScheduleProblems, read_schedule
from invitemail.outputs.placeholders import PLACEHOLDERS, START_TIME, init_uid, parse_init_uid

EVENT_FILE = "event.toml"
REGISTRANTS_FILE = "registrants.csv"
LANGUAGES: tuple[str, ...] = ("da", "en")
SECURITY_MODES: tuple[str, ...] = ("starttls", "tls", "none")
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "tls": 465, "none": 25}
# What str.splitlines() breaks at: any of them in a one-line value could start a new header
# line for some reader, so all count as line breaks, not just CR and LF.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# RFC 5545 INTEGER (SEQUENCE): a larger value makes the calendar part impossible to write.
MAX_SEQUENCE = 2**31 - 1
# event.start must be a real date: time arithmetic and time zones fail at datetime's ends.
START_YEARS = (1970, 9998)
# Keys whose text may well be all digits (a title "2030", a phone number): a bare number there
# was meant as text.
FREE_TEXT_KEYS = frozenset({"title", "description", "platform", "id", "phone", "hours"})
# Keys that take one text, or a table of texts per language ({ da = "...", en = "..." }).
PER_LANGUAGE = 'text, or a table per language such as { da = "...", en = "..." }'
# Keys whose value an error message must never repeat.
SECRET_KEYS = frozenset({("meeting", "password")})

Security = Literal["starttls", "tls", "none"]


def in_language(texts: Mapping[str, str], language: str, default: str | None = None) -> str:
    """The text for ``language`` from a table per language: else the default language's,
    else the first one written (as ``[support] hours`` has always done)."""
    found = texts.get(language) or (texts.get(default) if default else None)
    return found or next(iter(texts.values()))


@dataclass(frozen=True, slots=True)
class Event:
    title: str  # in the event's default language
    description: str | None  # in the event's default language
    start: dt.datetime  # aware, in ``timezone``
    duration: int  # minutes
    timezone: str
    language: str
    uid: str
    sequence: int
    # The text per language, when event.toml gives a table (one text: every language).
    titles: Mapping[str, str] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    # Links for the follow-up (optional).
    recording_url: str | None = None
    slides_url: str | None = None
    next_url: str | None = None

    def title_in(self, language: str) -> str:
        return in_language(self.titles, language, self.language) if self.titles else self.title

    def description_in(self, language: str) -> str | None:
        if not self.descriptions:
            return self.description
        return in_language(self.descriptions, language, self.language)

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=self.duration)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Meeting:
    platform: str
    id: str
    password: str
    join_url: str
    web_join_url: str | None
    waiting_room: bool
    recorded: bool


@dataclass(frozen=True, slots=True)
class Sender:
    mailbox: Mailbox
    reply_to: Mailbox | None

    @property
    def name(self) -> str:
        return self.mailbox.name

    @property
    def address(self) -> str:
        return self.mailbox.address


@dataclass(frozen=True, slots=True)
class Support:
    phone: str
    hours: Mapping[str, str]  # per language
    email: str

    def hours_in(self, language: str) -> str:
        return in_language(self.hours, language)


@dataclass(frozen=True, slots=True)
class Privacy:
    policy_url: str  # in the event's default language
    policy_urls: Mapping[str, str] = field(default_factory=dict)  # per language, when a table

    def policy_url_in(self, language: str) -> str:
        return in_language(self.policy_urls, language) if self.policy_urls else self.policy_url


@dataclass(frozen=True, slots=True)
class Smtp:
    host: str
    port: int
    security: Security
    username: str | None = None
    timeout: float = 30.0
    ca_file: Path | None = None
    allow_insecure_auth: bool = False
    auth: Auth = field(default_factory=Auth)  # password, or XOAUTH2 (authsettings.py)
    # RFC 2920 when the relay offers it; false for a relay that offers it but mishandles it.
    pipelining: bool = True

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Sending:
    concurrency: int = 4
    rate: float | None = None  # messages per second; None: as fast as the relay takes them
    rate_text: str | None = None
    max_attempts: int = 5
    max_consecutive_failures: int = 20
    daily_limit: int | None = None  # messages in any 24 hours (the relay's daily quota)
    daily_limit_text: str | None = None


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


def parse_rate(text: str) -> float:
    """``"10/s"``, ``"600/min"``, ``"3600/h"`` -> messages per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|min|minute|h|hour)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError('write it as "N/s", "N/min" or "N/h" with N above 0, e.g. "10/s"')
    per = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
    return float(match.group(1)) / per[match.group(2)]


def parse_daily_limit(text: str) -> int:
    """``"2000/day"``, ``"2000/24h"`` -> 2000 messages in any 24 hours."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(day|d|24\s*h|24\s*hours?)\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) <= 0:
        raise ValueError('write it as "N/day" (or "N/24h") with N a whole number above 0, '
                         'e.g. "2000/day"')
    return int(match.group(1))


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


T = TypeVar("T")
_MISSING = object()


class _Reader:
    """Reads one parsed event.toml, section by section, with file and key in every error."""

    SECTIONS: Mapping[str, tuple[str, ...]] = {
        "event": ("title", "description", "start", "duration", "timezone", "language", "uid",
                  "sequence", "recording_url", "slides_url", "next_url"),
        "meeting": ("platform", "id", "password", "join_url", "web_join_url", "waiting_room",
                    "recorded"),
        "sender": ("from", "reply_to"),
        "support": ("phone", "hours", "email"),
        "privacy": ("policy_url",),
        "smtp": ("host", "port", "security", "username", "timeout", "ca_file",
                 "allow_insecure_auth", "auth", "token_command", "token_command_timeout",
                 "oauth", "pipelining"),
        "sending": ("concurrency", "rate", "max_attempts", "max_consecutive_failures",
                    "daily_limit"),
        "schedule": ("reminders", "followup", "slack"),
    }
    OPTIONAL_SECTIONS = frozenset({"sending", "schedule"})

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.data = data
        self.warnings: list[Problem] = []
        self.errors: list[ConfigError] = []
        # Keys an unknown key was taken for ("pasword": "password"): that key's "is missing"
        # is the same problem, reported once, with the suggestion.
        self.suggested: set[str] = set()
        # Sending through a local test server: .test, .localhost and .invalid addresses are
        # allowed in the settings too (addresses.py says why). The host is read raw here; the
        # [smtp] section's own checks report a bad one.
        smtp = data.get("smtp")
        host = smtp.get("host") if isinstance(smtp, dict) else None
        self.local_test = isinstance(host, str) and is_loopback_host(host)

    # -- helpers ---------------------------------------------------------------------------

    def attempt(self, read: Callable[[], Any], fallback: Any = None) -> Any:
        """``read()``, or ``fallback`` with its problem kept: every key is checked in one run."""
        try:
            return read()
        except ConfigError as err:
            self.errors.append(err)
            return fallback

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

    def line_of(self, section: str, key: str | None = None) -> int | None:
        """The line where ``[section]`` (or ``key`` inside it) is written, if it can be found."""
        in_section = False
        header = re.compile(r"\s*\[\[?\s*" + re.escape(section) + r"\s*\]\]?\s*(#.*)?$")
        for number, line in enumerate(self.lines, start=1):
            if key is None and re.match(r"\s*\"?" + re.escape(section) + r"\"?\s*=", line):
                return number  # `section = value` where a section was meant
            if line.lstrip().startswith("["):
                in_section = bool(header.match(line))
                if in_section and key is None:
                    return number
                continue
            if in_section and key is not None and re.match(
                r"\s*\"?" + re.escape(key) + r"\"?\s*=", line
            ):
                return number
        return None

    def error(self, section: str, key: str | None, message: str,
              hint: str | None = None) -> ConfigError:
        line = self.line_of(section, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"{section}.{key}" if key else f"[{section}]"
        return ConfigError(where, message, key=name, hint=hint)

    def warn(self, section: str, key: str, message: str) -> None:
        self.warnings.append(
            Problem(str(self.path), self.line_of(section, key), f"{section}.{key}: {message}",
                    warning=True)
        )

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, _MISSING)
        if value is _MISSING:
            if name in self.OPTIONAL_SECTIONS:
                return {}
            article = "an" if name in ("event", "smtp") else "a"  # as it is read aloud
            raise ConfigError(self.path, f"the [{name}] section is missing",
                              hint=f"add {article} [{name}] section; `invitemail init` writes a "
                              "full example")
        if not isinstance(value, dict):
            what = (f"a list of sections ([[{name}]])" if isinstance(value, list)
                    else _describe_value(value))
            raise self.error(name, None, f"must be one section, written [{name}], not {what}")
        for key in value:
            if key not in self.SECTIONS[name]:
                close = difflib.get_close_matches(key, self.SECTIONS[name], n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else "known keys: " + ", ".join(self.SECTIONS[name]))
                if close and close[0] not in value:
                    self.suggested.add(f"{name}.{close[0]}")
                self.errors.append(self.error(name, key, "unknown key", hint=hint))
        return value

    def get(self, section: dict[str, Any], name: str, key: str, kind: type[T] | tuple[type, ...],
            default: Any = _MISSING, *, describe: str | None = None) -> Any:
        value = section.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                line = self.line_of(name)
                where = f"{self.path}:{line}" if line else str(self.path)
                raise ConfigError(where, "is missing", key=f"{name}.{key}",
                                  hint=f"add `{key} = ...` under [{name}]")
            return default
        # bool is a subclass of int: never accept true where a number is meant.
        wrong_bool = isinstance(value, bool) and kind is not bool and not (
            isinstance(kind, tuple) and bool in kind)
        if wrong_bool or not isinstance(value, kind):
            wanted = describe or _describe(kind)
            secret = (name, key) in SECRET_KEYS
            hint = f'write it in quotes: {key} = "..."' if secret else _unquote_hint(key, value,
                                                                                    kind)
            raise self.error(name, key, f"must be {wanted}, not "
                             f"{_describe_value(value, secret=secret)}", hint=hint)
        return value

    def text(self, section: dict[str, Any], name: str, key: str, default: Any = _MISSING,
             *, one_line: bool = True) -> Any:
        value = self.get(section, name, key, str, default)
        if isinstance(value, str):
            if not value.strip():
                raise self.error(name, key, "is empty")
            self.check_characters(name, key, value, one_line=one_line)
            value = value.strip()
        return value

    def check_characters(self, name: str, key: str, value: str, *, one_line: bool) -> None:
        """No line break in a one-line value, and no control character anywhere: either could
        reach a header or the calendar part."""
        if one_line and any(c in LINE_BREAKS for c in value):
            raise self.error(name, key, "must be on one line")
        allowed = "\t" if one_line else "\t\n\r"
        control = next((c for c in value
                        if c not in allowed and unicodedata.category(c) == "Cc"), None)
        if control is not None:
            raise self.error(name, key, f"contains a control character (U+{ord(control):04X})",
                             hint="delete it (most editors do not show it), or retype the value")

    def url(self, section: dict[str, Any], name: str, key: str, default: Any = _MISSING) -> Any:
        value = self.text(section, name, key, default)
        if value is None or value is default:
            return value
        parts = urlsplit(value)
        # urlsplit drops tabs silently; a link with any white space is broken.
        if parts.scheme not in ("http", "https") or not parts.netloc or any(
                c.isspace() for c in value):
            raise self.error(name, key, f"{value!r} is not a web address",
                             hint="write the full link, starting with https://")
        if parts.scheme != "https":
            self.warn(name, key, f"{value} is not https; registrants' browsers may warn")
        return value

    def number(self, section: dict[str, Any], name: str, key: str, default: Any,
               minimum: float, maximum: float | None = None, *, integer: bool = True) -> Any:
        kind: tuple[type, ...] = (int,) if integer else (int, float)
        value = self.get(section, name, key, kind, default,
                         describe="a whole number" if integer else "a number")
        if math.isnan(value) or value < minimum or (maximum is not None and value > maximum):
            bounds = (f"from {minimum} to {maximum}" if maximum is not None
                      else f"at least {minimum}")
            raise self.error(name, key, f"must be {bounds}, not {value}")
        return value

    def address(self, section: dict[str, Any], name: str, key: str, default: Any = _MISSING) -> Any:
        value = self.text(section, name, key, default)
        if value is None:
            return None
        try:
            return normalize_address(value, local_test=self.local_test)
        except AddressError as err:
            raise self.error(name, key, f"{value!r} is not a valid address: {err}") from None

    def mailbox(self, section: dict[str, Any], name: str, key: str, default: Any = _MISSING) -> Any:
        value = self.text(section, name, key, default)
        if value is None:
            return None
        try:
            return parse_mailbox(value, local_test=self.local_test)
        except AddressError as err:
            raise self.error(name, key, f"{value!r} is not a valid address: {err}") from None

    # -- sections --------------------------------------------------------------------------

    def read(self) -> EventConfig:
        for name in self.data:
            if name not in self.SECTIONS:
                close = difflib.get_close_matches(name, self.SECTIONS, n=1)
                hint = f"did you mean [{close[0]}]?" if close else "known sections: " + ", ".join(
                    f"[{s}]" for s in self.SECTIONS)
                if close and close[0] not in self.data:
                    self.suggested.add(f"[{close[0]}]")
                self.errors.append(self.error(name, None, "unknown section", hint=hint))
        k = self.attempt
        config = EventConfig(
            path=self.path,
            event=k(self.read_event),
            meeting=k(self.read_meeting),
            sender=k(self.read_sender),
            support=k(self.read_support),
            privacy=k(self.read_privacy),
            smtp=k(self.read_smtp),
            sending=k(self.read_sending),
            warnings=tuple(self.warnings),
            schedule=k(self.read_schedule, Schedule()),
        )
        self.raise_errors()
        placeholders = tuple(self.find_placeholders(config.event))
        return replace(config, event=self.follow_date(config.event),
                       warnings=tuple(self.warnings), placeholders=placeholders)

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

    def read_privacy(self) -> Privacy:
        s = self.section("privacy")
        urls = self.attempt(lambda: self.per_language(s, "privacy", "policy_url", url=True), {})
        if not urls:
            return Privacy(None)  # type: ignore[arg-type]  # the error is reported
        return Privacy(policy_url=urls.get("") or in_language(urls, self.default_language()),
                       policy_urls={} if "" in urls else urls)

    def default_language(self) -> str:
        event = self.data.get("event")
        language = event.get("language") if isinstance(event, dict) else None
        return language if language in LANGUAGES else "da"

    def read_event(self) -> Event:
        s, n, k = self.section("event"), "event", self.attempt
        timezone = k(lambda: self.text(s, n, "timezone"))
        zone = k(lambda: self.read_zone(timezone)) if timezone is not None else None
        start = k(lambda: self.get(s, n, "start", (dt.datetime, dt.date, str),
                                   describe="a date and time such as 2026-12-10T14:00:00"))
        if start is not None and zone is not None:
            start = k(lambda: self.read_start(start, zone))
        language = self.default_language()
        titles = k(lambda: self.per_language(s, n, "title"), {})
        descriptions = k(lambda: self.per_language(s, n, "description", None, one_line=False),
                         {})
        return Event(
            title=(titles.get("") or in_language(titles, language))
            if titles else None,  # type: ignore[arg-type]  # the error is reported
            description=(descriptions.get("") or in_language(descriptions, language))
            if descriptions else None,
            titles={} if "" in titles else titles,
            descriptions={} if "" in descriptions else descriptions,
            recording_url=k(lambda: self.url(s, n, "recording_url", None)),
            slides_url=k(lambda: self.url(s, n, "slides_url", None)),
            next_url=k(lambda: self.url(s, n, "next_url", None)),
            start=start,
            duration=k(lambda: self.number(s, n, "duration", _MISSING, 1, 24 * 60)),
            timezone=timezone,
            language=k(lambda: self.read_language(s)),
            uid=k(lambda: self.read_uid(s)),
            sequence=k(lambda: self.read_sequence(s)),
        )

    def read_zone(self, timezone: str) -> ZoneInfo:
        try:
            return ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.error("event", "timezone", f"{timezone!r} is not a known time zone",
                             hint='use an IANA name such as "Europe/Copenhagen"') from None

    def read_language(self, s: dict[str, Any]) -> str:
        language: str = self.text(s, "event", "language", "da")
        if language not in LANGUAGES:
            raise self.error("event", "language", f"{language!r} is not supported",
                             hint="use " + " or ".join(repr(x) for x in LANGUAGES))
        return language

    def read_uid(self, s: dict[str, Any]) -> str:
        uid: str = self.text(s, "event", "uid")
        if any(c.isspace() or not c.isprintable() for c in uid):
            raise self.error("event", "uid", "must not contain spaces or invisible characters",
                             hint='use something like "webinar-2026-12-10@example.org"')
        return uid

    def read_sequence(self, s: dict[str, Any]) -> int:
        sequence: int = self.number(s, "event", "sequence", 0, 0)
        if sequence > MAX_SEQUENCE:
            raise self.error("event", "sequence", f"must be at most {MAX_SEQUENCE} (the "
                             f"calendar format's limit), not {sequence}",
                             hint="raise it by one for each change; it need not be large")
        return sequence

    def read_start(self, value: Any, zone: ZoneInfo) -> dt.datetime:
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise self.error("event", "start", f"{value!r} is not a date and time",
                                 hint="write it as 2026-12-10T14:00:00, without quotes") from None
            # fromisoformat reads "2026-12-10" as midnight; a date alone is reported below.
            value = parsed.date() if _is_date_only(value) else parsed
        if not isinstance(value, dt.datetime):
            raise self.error("event", "start", "has a date but no time",
                             hint="write it as 2026-12-10T14:00:00")
        first, last = START_YEARS
        if not first <= value.year <= last:
            raise self.error("event", "start",
                             f"{value.isoformat(sep=' ', timespec='minutes')} is out of range",
                             hint=f"write a date in the years {first} to {last}")
        if value.tzinfo is None:
            local = value.replace(tzinfo=zone)
            # A local time that does not exist (the hour skipped in spring) would silently move.
            round_trip = local.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
            if round_trip != value:
                raise self.error("event", "start",
                                 f"{value:%Y-%m-%d %H:%M} does not exist in {zone.key} "
                                 "(the clocks skip that hour)", hint="choose another time")
            return local
        return value.astimezone(zone)

    def read_meeting(self) -> Meeting:
        s, n, k = self.section("meeting"), "meeting", self.attempt
        return Meeting(
            platform=k(lambda: self.text(s, n, "platform", "Zoom")),
            id=k(lambda: self.read_meeting_id(s)),
            password=k(lambda: self.text(s, n, "password")),
            join_url=k(lambda: self.url(s, n, "join_url")),
            web_join_url=k(lambda: self.url(s, n, "web_join_url", None)),
            waiting_room=k(lambda: self.get(s, n, "waiting_room", bool, True,
                                            describe="true or false")),
            recorded=k(lambda: self.get(s, n, "recorded", bool, False,
                                        describe="true or false")),
        )

    def read_meeting_id(self, s: dict[str, Any]) -> str:
        meeting_id = self.get(s, "meeting", "id", (str, int),
                              describe="text such as \"842 1234 5678\"")
        if isinstance(meeting_id, str):
            if not meeting_id.strip():
                raise self.error("meeting", "id", "is empty")
            self.check_characters("meeting", "id", meeting_id, one_line=True)
        return str(meeting_id).strip()

    def read_sender(self) -> Sender:
        s, n, k = self.section("sender"), "sender", self.attempt
        return Sender(mailbox=k(lambda: self.mailbox(s, n, "from")),
                      reply_to=k(lambda: self.mailbox(s, n, "reply_to", None)))

    def read_support(self) -> Support:
        s, n, k = self.section("support"), "support", self.attempt
        return Support(
            phone=k(lambda: self.text(s, n, "phone")),
            hours=k(lambda: self.read_hours(s)),
            email=k(lambda: self.address(s, n, "email")),
        )

    def read_hours(self, s: dict[str, Any]) -> dict[str, str]:
        hours = self.per_language(s, "support", "hours")
        return dict(hours) if len(hours) > 1 or "" not in hours \
            else dict.fromkeys(LANGUAGES, hours[""])

    def per_language(self, s: dict[str, Any], n: str, key: str, default: Any = _MISSING, *,
                     one_line: bool = True, url: bool = False) -> dict[str, str]:
        """One text, as ``{"": text}``, or a table per language ({ da = "...", en = "..." }),
        each entry checked as the one text would be; ``{}`` when absent and optional."""
        value = self.get(s, n, key, (str, dict), default, describe=PER_LANGUAGE)
        if value is None or value is default:
            return {}
        check = self.url if url else functools.partial(self.text, one_line=one_line)
        if isinstance(value, str):
            return {"": check(s, n, key)}
        if not value:
            raise self.error(n, key, "is empty",
                             hint='give text per language: { da = "...", en = "..." }')
        texts: dict[str, str] = {}
        for lang, text in value.items():
            if lang not in LANGUAGES or not isinstance(text, str) or not text.strip():
                raise self.error(n, key, f"has a bad entry {lang!r}",
                                 hint='give text per language: { da = "...", en = "..." }')
            texts[lang] = check({key: text}, n, key)
        return texts

    def read_smtp(self) -> Smtp:
        s, n, k = self.section("smtp"), "smtp", self.attempt
        security = k(lambda: self.read_security(s), "starttls")
        timeout = k(lambda: self.number(s, n, "timeout", 30, 0.001, 3600, integer=False), 30)
        return Smtp(
            host=k(lambda: self.text(s, n, "host")),
            port=k(lambda: self.number(s, n, "port", DEFAULT_PORTS[security], 1, 65535)),
            security=security,
            username=k(lambda: self.text(s, n, "username", None)),
            timeout=float(timeout),
            ca_file=k(lambda: self.read_ca_file(s)),
            allow_insecure_auth=k(lambda: self.get(s, n, "allow_insecure_auth", bool, False,
                                                   describe="true or false")),
            auth=k(lambda: read_auth(s, self.auth_error, source=str(self.path),
                                     has_username="username" in s), Auth()),
            pipelining=k(lambda: self.get(s, n, "pipelining", bool, True,
                                          describe="true or false")),
        )

    def auth_error(self, key: str, message: str, hint: str | None) -> ConfigError:
        section, _, name = f"smtp.{key}".rpartition(".")
        return self.error(section, name or None, message, hint=hint)

    def read_security(self, s: dict[str, Any]) -> Security:
        security: Security = self.text(s, "smtp", "security", "starttls")
        if security not in SECURITY_MODES:
            raise self.error("smtp", "security", f"{security!r} is not one of "
                             + ", ".join(repr(m) for m in SECURITY_MODES),
                             hint='use "starttls" (port 587), "tls" for implicit TLS (port 465) '
                             'or "none"')
        return security

    def read_ca_file(self, s: dict[str, Any]) -> Path | None:
        ca_file = self.text(s, "smtp", "ca_file", None)
        if ca_file is None:
            return None
        ca_path: Path = (self.path.parent / ca_file).expanduser()
        if ca_path.is_dir():
            raise self.error("smtp", "ca_file", f"{ca_path} is a folder, not a file",
                             hint="give the PEM file that holds the CA certificate")
        if not ca_path.is_file():
            raise self.error("smtp", "ca_file", f"{ca_path} does not exist")
        return ca_path

    def read_sending(self) -> Sending:
        s, n, k = self.section("sending"), "sending", self.attempt
        rate_text = k(lambda: self.text(s, n, "rate", None))
        rate = k(lambda: self.read_rate(rate_text)) if rate_text is not None else None
        daily, daily_text = k(lambda: self.read_daily_limit(s), (None, None))
        return Sending(
            concurrency=k(lambda: self.number(s, n, "concurrency", 4, 1, 100)),
            rate=rate,
            rate_text=rate_text,
            max_attempts=k(lambda: self.number(s, n, "max_attempts", 5, 1, 100)),
            max_consecutive_failures=k(lambda: self.number(s, n, "max_consecutive_failures", 20,
                                                           1, 100000)),
            daily_limit=daily,
            daily_limit_text=daily_text,
        )

    def read_schedule(self) -> Schedule:
        try:
            return read_schedule(self.section("schedule"))  # schedule.py reads it
        except ScheduleProblems as problems:
            self.errors.extend(self.error("schedule", e.key, e.message, hint=e.hint)
                               for e in problems.errors)
            return Schedule()

    def read_rate(self, rate_text: str) -> float:
        try:
            return parse_rate(rate_text)
        except ValueError as err:
            raise self.error("sending", "rate", f"{rate_text!r} is not a rate",
                             hint=str(err)) from None

    def read_daily_limit(self, s: dict[str, Any]) -> tuple[int | None, str | None]:
        n = "sending"
        written = s.get("daily_limit")
        shown = None
        if isinstance(written, int) and not isinstance(written, bool):  # 2000: per day
            s, shown = {**s, "daily_limit": f"{written}/day"}, str(written)
        daily_text = self.text(s, n, "daily_limit", None)
        daily = None
        if daily_text is not None:
            try:
                daily = parse_daily_limit(daily_text)
            except ValueError as err:
                raise self.error(n, "daily_limit", f"{shown or repr(daily_text)} is not a "
                                 "daily limit", hint=str(err)) from None
        return daily, daily_text


def _is_date_only(text: str) -> bool:
    """True for a date without a time, such as ``"2026-12-10"``."""
    try:
        dt.date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _describe(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
             dict: "a table", dt.datetime: "a date and time"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unquote_hint(key: str, value: Any, kind: type | tuple[type, ...]) -> str | None:
    """How to write a value of the wrong type, when it is clear: a quoted number or true/false
    without the quotes, a number meant as text in quotes, 1 or 0 as true or false."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if str in kinds and key in FREE_TEXT_KEYS:  # a title or phone number of digits
            return f'write it in quotes: {key} = "{value}"'
        if bool in kinds:
            return f"write true or false: {key} = {'true' if value else 'false'}"
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if bool in kinds:
        if text.lower() in ("true", "false"):
            return f"write it without quotes: {key} = {text.lower()}"
        return f"write true or false, without quotes: {key} = true"
    if int in kinds or float in kinds:
        try:
            number = float(text) if float in kinds else int(text)
        except ValueError:
            return None
        if math.isfinite(number):
            return f"write it without quotes: {key} = {text}"
    return None


def _describe_value(value: Any, *, secret: bool = False) -> str:
    if secret:  # the kind only: a secret's value must never reach the terminal or a log
        return {int: "a number", float: "a number", str: "text"}.get(
            type(value), _describe_value(value))
    if isinstance(value, bool):
        return "true/false"
    kinds: dict[type, Callable[[Any], str]] = {
        str: lambda v: f"text {v!r}", int: lambda v: f"the number {v}",
        float: lambda v: f"the number {v}", dict: lambda v: "a table",
        list: lambda v: "a list", dt.datetime: lambda v: "a date and time",
        dt.date: lambda v: "a date", dt.time: lambda v: "a time",
    }
    for kind, describe in kinds.items():
        if type(value) is kind:
            return describe(value)
    return type(value).__name__
