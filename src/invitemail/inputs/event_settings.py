"""The [event], [meeting], [sender], [support] and [privacy] tables of event.toml: what each
holds (frozen dataclasses) and how each is read and checked (through a
:class:`~invitemail.inputs.keys.KeyReader`, so every error names file:line and key)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from invitemail.inputs.addresses import Mailbox
from invitemail.inputs.keys import LANGUAGES, MISSING, KeyReader, in_language

# RFC 5545 INTEGER (SEQUENCE): a larger value makes the calendar part impossible to write.
MAX_SEQUENCE = 2**31 - 1
# event.start must be a real date: time arithmetic and time zones fail at datetime's ends.
START_YEARS = (1970, 9998)


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


def read_privacy(r: KeyReader) -> Privacy:
    s = r.section("privacy")
    urls = r.attempt(lambda: r.per_language(s, "privacy", "policy_url", url=True), {})
    if not urls:
        return Privacy(None)  # type: ignore[arg-type]  # the error is reported
    return Privacy(policy_url=urls.get("") or in_language(urls, r.default_language()),
                   policy_urls={} if "" in urls else urls)


def read_event(r: KeyReader) -> Event:
    s, n, k = r.section("event"), "event", r.attempt
    timezone = k(lambda: r.text(s, n, "timezone"))
    zone = k(lambda: _read_zone(r, timezone)) if timezone is not None else None
    start = k(lambda: r.get(s, n, "start", (dt.datetime, dt.date, str),
                            describe="a date and time such as 2026-12-10T14:00:00"))
    if start is not None and zone is not None:
        start = k(lambda: _read_start(r, start, zone))
    language = r.default_language()
    titles = k(lambda: r.per_language(s, n, "title"), {})
    descriptions = k(lambda: r.per_language(s, n, "description", None, one_line=False),
                     {})
    return Event(
        title=(titles.get("") or in_language(titles, language))
        if titles else None,  # type: ignore[arg-type]  # the error is reported
        description=(descriptions.get("") or in_language(descriptions, language))
        if descriptions else None,
        titles={} if "" in titles else titles,
        descriptions={} if "" in descriptions else descriptions,
        recording_url=k(lambda: r.url(s, n, "recording_url", None)),
        slides_url=k(lambda: r.url(s, n, "slides_url", None)),
        next_url=k(lambda: r.url(s, n, "next_url", None)),
        start=start,
        duration=k(lambda: r.number(s, n, "duration", MISSING, 1, 24 * 60)),
        timezone=timezone,
        language=k(lambda: _read_language(r, s)),
        uid=k(lambda: _read_uid(r, s)),
        sequence=k(lambda: _read_sequence(r, s)),
    )


def _read_zone(r: KeyReader, timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise r.error("event", "timezone", f"{timezone!r} is not a known time zone",
                      hint='use an IANA name such as "Europe/Copenhagen"') from None


def _read_language(r: KeyReader, s: dict[str, Any]) -> str:
    language: str = r.text(s, "event", "language", "da")
    if language not in LANGUAGES:
        raise r.error("event", "language", f"{language!r} is not supported",
                      hint="use " + " or ".join(repr(x) for x in LANGUAGES))
    return language


def _read_uid(r: KeyReader, s: dict[str, Any]) -> str:
    uid: str = r.text(s, "event", "uid")
    if any(c.isspace() or not c.isprintable() for c in uid):
        raise r.error("event", "uid", "must not contain spaces or invisible characters",
                      hint='use something like "webinar-2026-12-10@example.org"')
    return uid


def _read_sequence(r: KeyReader, s: dict[str, Any]) -> int:
    sequence: int = r.number(s, "event", "sequence", 0, 0)
    if sequence > MAX_SEQUENCE:
        raise r.error("event", "sequence", f"must be at most {MAX_SEQUENCE} (the "
                      f"calendar format's limit), not {sequence}",
                      hint="raise it by one for each change; it need not be large")
    return sequence


def _read_start(r: KeyReader, value: Any, zone: ZoneInfo) -> dt.datetime:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise r.error("event", "start", f"{value!r} is not a date and time",
                          hint="write it as 2026-12-10T14:00:00, without quotes") from None
        # fromisoformat reads "2026-12-10" as midnight; a date alone is reported below.
        value = parsed.date() if _is_date_only(value) else parsed
    if not isinstance(value, dt.datetime):
        raise r.error("event", "start", "has a date but no time",
                      hint="write it as 2026-12-10T14:00:00")
    first, last = START_YEARS
    if not first <= value.year <= last:
        raise r.error("event", "start",
                      f"{value.isoformat(sep=' ', timespec='minutes')} is out of range",
                      hint=f"write a date in the years {first} to {last}")
    if value.tzinfo is None:
        local = value.replace(tzinfo=zone)
        # A local time that does not exist (the hour skipped in spring) would silently move.
        round_trip = local.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
        if round_trip != value:
            raise r.error("event", "start",
                          f"{value:%Y-%m-%d %H:%M} does not exist in {zone.key} "
                          "(the clocks skip that hour)", hint="choose another time")
        return local
    return value.astimezone(zone)


def read_meeting(r: KeyReader) -> Meeting:
    s, n, k = r.section("meeting"), "meeting", r.attempt
    return Meeting(
        platform=k(lambda: r.text(s, n, "platform", "Zoom")),
        id=k(lambda: _read_meeting_id(r, s)),
        password=k(lambda: r.text(s, n, "password")),
        join_url=k(lambda: r.url(s, n, "join_url")),
        web_join_url=k(lambda: r.url(s, n, "web_join_url", None)),
        waiting_room=k(lambda: r.get(s, n, "waiting_room", bool, True,
                                     describe="true or false")),
        recorded=k(lambda: r.get(s, n, "recorded", bool, False,
                                 describe="true or false")),
    )


def _read_meeting_id(r: KeyReader, s: dict[str, Any]) -> str:
    meeting_id = r.get(s, "meeting", "id", (str, int),
                       describe="text such as \"842 1234 5678\"")
    if isinstance(meeting_id, str):
        if not meeting_id.strip():
            raise r.error("meeting", "id", "is empty")
        r.check_characters("meeting", "id", meeting_id, one_line=True)
    return str(meeting_id).strip()


def read_sender(r: KeyReader) -> Sender:
    s, n, k = r.section("sender"), "sender", r.attempt
    return Sender(mailbox=k(lambda: r.mailbox(s, n, "from")),
                  reply_to=k(lambda: r.mailbox(s, n, "reply_to", None)))


def read_support(r: KeyReader) -> Support:
    s, n, k = r.section("support"), "support", r.attempt
    return Support(
        phone=k(lambda: r.text(s, n, "phone")),
        hours=k(lambda: _read_hours(r, s)),
        email=k(lambda: r.address(s, n, "email")),
    )


def _read_hours(r: KeyReader, s: dict[str, Any]) -> dict[str, str]:
    hours = r.per_language(s, "support", "hours")
    return dict(hours) if len(hours) > 1 or "" not in hours \
        else dict.fromkeys(LANGUAGES, hours[""])


def _is_date_only(text: str) -> bool:
    """True for a date without a time, such as ``"2026-12-10"``."""
    try:
        dt.date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True
