"""The calendar invitation: the only module that uses icalendar.

One VEVENT per message, in UTC (every client converts UTC correctly; a VTIMEZONE block is
where clients disagree). The UID is derived from the event's uid and the registrant's
address, so the same registrant gets the same calendar entry from the invitation, every
update and the cancellation, and a rerun never adds a second entry.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from icalendar import Component, Event

PRODID = "-//invitemail//invitemail//EN"


def preload() -> None:
    """Import icalendar now (it is imported where first used, for a fast start): for the
    fork server, whose workers then all have it (invitemail.preload)."""
    import icalendar  # noqa: F401


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """What the calendar part says, independent of the file format."""

    uid: str
    sequence: int
    method: str  # "REQUEST" or "CANCEL"
    start: dt.datetime
    end: dt.datetime
    title: str
    description: str
    location: str
    organizer_name: str
    organizer_address: str
    attendee_name: str
    attendee_address: str
    stamp: dt.datetime


def registrant_uid(event_uid: str, address: str) -> str:
    """The calendar UID of one registrant's entry: stable across runs and templates."""
    digest = hashlib.sha256(f"{event_uid}\0{address.lower()}".encode()).hexdigest()[:20]
    return f"{digest}-{event_uid}"


def _vevent_lines(entry: CalendarEntry, *, personal: bool, shared: bool) -> Event:
    # icalendar is imported here, at the first calendar built (it takes longer to import
    # than anything else a run needs before it); the same for reading one back below.
    from icalendar import Event, vCalAddress, vText

    event = Event()
    if personal:
        event.add("uid", entry.uid)
    if shared:
        event.add("sequence", entry.sequence)
        event.add("dtstamp", entry.stamp.astimezone(dt.UTC))
        event.add("dtstart", entry.start.astimezone(dt.UTC))
        event.add("dtend", entry.end.astimezone(dt.UTC))
        event.add("summary", entry.title)
        event.add("description", entry.description)
        if entry.location:
            event.add("location", entry.location)
            event.add("url", entry.location)
        organizer = vCalAddress(f"mailto:{entry.organizer_address}")
        if entry.organizer_name:
            organizer.params["cn"] = vText(entry.organizer_name)
        event.add("organizer", organizer)
    if personal:
        attendee = vCalAddress(f"mailto:{entry.attendee_address}")
        if entry.attendee_name:
            attendee.params["cn"] = vText(entry.attendee_name)
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["partstat"] = vText("NEEDS-ACTION")
        attendee.params["rsvp"] = vText("FALSE")
        event.add("attendee", attendee)
    if shared:
        cancelled = entry.method == "CANCEL"
        event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")
    return event


def _calendar(entry: CalendarEntry, event: Event) -> bytes:
    from icalendar import Calendar

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", entry.method)
    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def build_ics(entry: CalendarEntry) -> bytes:
    """The text/calendar body (CRLF line endings, folded at 75 octets by icalendar)."""
    return _calendar(entry, _vevent_lines(entry, personal=True, shared=True))


_END = b"END:VEVENT\r\n"


class CalendarBuilder:
    """Builds calendars for many registrants of one event, fast.

    Everything but the UID and the ATTENDEE is the same for registrants who share a join
    link, so that part is serialised once and the two personal properties are serialised
    per registrant and put in front of ``END:VEVENT``. The result is the same calendar as
    :func:`build_ics` gives, with the properties in another order.
    """

    def __init__(self) -> None:
        self._shared: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
        # The shared part before the personal lines, cut to whole base64 lines, and its
        # base64: the start of the encoding of every calendar that starts with it.
        self._encoded_start: tuple[bytes, bytes] = (b"", b"")

    def build(self, entry: CalendarEntry) -> bytes:
        key = (entry.method, entry.sequence, entry.stamp, entry.start, entry.end, entry.title,
               entry.description, entry.location, entry.organizer_name,
               entry.organizer_address)
        parts = self._shared.get(key)
        if parts is None:
            whole = _calendar(entry, _vevent_lines(entry, personal=False, shared=True))
            cut = whole.rindex(_END)
            parts = self._shared[key] = (whole[:cut], whole[cut:])
            if len(self._shared) > 4096:  # personal links: keep the memory bounded
                self._shared.pop(next(iter(self._shared)))
        inner = _personal_lines(entry.uid, entry.attendee_name, entry.attendee_address)
        return parts[0] + inner + parts[1]

    def encoded(self, calendar: bytes) -> bytes:
        """:func:`base64_lines` of ``calendar`` (one this builder built), the whole lines
        of the part the calendars of a group share encoded once for the group."""
        start, encoded = self._encoded_start
        if not (start and calendar.startswith(start)):
            cut = calendar.rfind(b"\r\nUID:")  # where the personal lines start
            start = calendar[:max(cut, 0) // BASE64_LINE * BASE64_LINE]
            encoded = base64_lines(start)
            self._encoded_start = (start, encoded)
        return encoded + base64_lines(calendar[len(start):])


BASE64_LINE = 57  # bytes a line of base64 holds (76 characters)


def base64_lines(data: bytes) -> bytes:
    """``base64.encodebytes(data)`` with CRLF line endings, encoded at once rather than a
    line at a time: a line holds 57 bytes, a whole number of 3-byte groups, so the whole
    encoding cut every 76 characters is each line's 57 bytes encoded. For the same reason
    the encoding of ``a + b``, when ``a`` is whole lines, is the encoding of ``a``, then
    of ``b``."""
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join([encoded[i:i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


def _fold(line: str) -> bytes:
    """One content line, folded at 75 octets (RFC 5545 3.1) without splitting a character."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return data + b"\r\n"
    chunks, start, limit = [], 0, 75  # continuation lines: a space and 74 octets
    while len(data) - start > limit:
        cut = start + limit
        while data[cut] & 0xC0 == 0x80:  # inside a character: go back to its first octet
            cut -= 1
        chunks.append(data[start:cut])
        start, limit = cut, 74
    chunks.append(data[start:])
    return b"\r\n ".join(chunks) + b"\r\n"


def _text_value(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11)."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


# The control characters (Unicode's category Cc: U+0000-U+001F and U+007F-U+009F, a set
# Unicode never changes) but the line feed.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    """Without control characters (a calendar line cannot hold them), line breaks kept."""
    return _CONTROL.sub("", value) if _CONTROL.search(value) else value


def _param_value(value: str) -> str:
    """A quoted parameter value, with RFC 6868's ^-escapes for what a quote cannot hold."""
    return '"' + value.replace("^", "^^").replace("\n", "^n").replace('"', "^'") + '"'


def _personal_lines(uid: str, name: str, address: str) -> bytes:
    """The UID and ATTENDEE lines of one registrant, as icalendar would write them.

    Written here because they are all that differs between registrants, and serialising
    them through icalendar costs more than the rest of the message.
    """
    # Without backslashes too: RFC 5545 gives them no meaning in a parameter, but readers
    # (icalendar among them) take one for an escape and lose what follows.
    name = _printable(name).replace("\\", "")
    cn = f"CN={_param_value(name)};" if name else ""
    return (_fold(f"UID:{_text_value(uid)}")
            + _fold(f"ATTENDEE;{cn}PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;RSVP=FALSE:"
                    f"mailto:{address}"))


def _utc(moment: dt.datetime, pattern: str) -> str:
    return moment.astimezone(dt.UTC).strftime(pattern)


def calendar_links(*, title: str, start: dt.datetime, end: dt.datetime, details: str,
                   location: str) -> dict[str, str]:
    """Add-to-calendar links, each prefilled with the title, the time (UTC) and the link."""
    compact, iso = "%Y%m%dT%H%M%SZ", "%Y-%m-%dT%H:%M:%SZ"
    google = urlencode({"action": "TEMPLATE", "text": title,
                        "dates": f"{_utc(start, compact)}/{_utc(end, compact)}",
                        "details": details, "location": location})
    outlook = {"path": "/calendar/action/compose", "rru": "addevent", "subject": title,
               "startdt": _utc(start, iso), "enddt": _utc(end, iso), "body": details,
               "location": location}
    yahoo = urlencode({"v": "60", "title": title, "st": _utc(start, compact),
                       "et": _utc(end, compact), "desc": details, "in_loc": location})
    return {
        "google": f"https://calendar.google.com/calendar/render?{google}",
        "outlook": f"https://outlook.live.com/calendar/0/deeplink/compose?{urlencode(outlook)}",
        "office365": f"https://outlook.office.com/calendar/0/deeplink/compose?{urlencode(outlook)}",
        "yahoo": f"https://calendar.yahoo.com/?{yahoo}",
    }


@dataclass(frozen=True, slots=True)
class CalendarSummary:
    """What a calendar part says, read back from its bytes (for the preview gallery)."""

    method: str
    title: str
    start: dt.datetime | None  # aware (UTC as sent)
    end: dt.datetime | None
    location: str
    url: str
    description: str
    organizer: str
    attendees: tuple[str, ...]
    uid: str
    sequence: int | None
    status: str


def _person(value: object) -> str:
    """``"Name <address>"`` from an ORGANIZER or ATTENDEE property."""
    address = str(value).removeprefix("mailto:").removeprefix("MAILTO:")
    params = getattr(value, "params", {})
    name = str(params.get("CN", "")) if params else ""
    return f"{name} <{address}>" if name else address


def _moment(event: Component, name: str) -> dt.datetime | None:
    if name not in event:
        return None
    value = event.decoded(name)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):  # an all-day event (a custom calendar): midnight UTC
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return None


def describe_ics(data: bytes | str) -> CalendarSummary:
    """Read the first VEVENT of an iCalendar file. Raises ValueError when it has none or
    cannot be parsed."""
    from icalendar import Calendar

    calendar = Calendar.from_ical(data)
    events = calendar.walk("VEVENT")
    if not events:
        raise ValueError("the calendar holds no event")
    event = events[0]
    attendees = event.get("attendee", [])
    if not isinstance(attendees, list):
        attendees = [attendees]
    sequence = event.get("sequence")
    return CalendarSummary(
        method=str(calendar.get("method", "")),
        title=str(event.get("summary", "")),
        start=_moment(event, "dtstart"),
        end=_moment(event, "dtend"),
        location=str(event.get("location", "")),
        url=str(event.get("url", "")),
        description=str(event.get("description", "")),
        organizer=_person(event["organizer"]) if "organizer" in event else "",
        attendees=tuple(_person(a) for a in attendees),
        uid=str(event.get("uid", "")),
        sequence=int(sequence) if sequence is not None else None,
        status=str(event.get("status", "")),
    )
