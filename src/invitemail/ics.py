"""The calendar invitation: the only module that uses icalendar.

One VEVENT per message, in UTC (every client converts UTC correctly; a VTIMEZONE block is
where clients disagree). The UID is derived from the event's uid and the registrant's
address, so the same registrant gets the same calendar entry from the invitation, every
update and the cancellation, and a rerun never adds a second entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from urllib.parse import urlencode

from icalendar import Calendar, Component, Event, vCalAddress, vText

PRODID = "-//invitemail//invitemail//EN"


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


def build_ics(entry: CalendarEntry) -> bytes:
    """The text/calendar body (CRLF line endings, folded at 75 octets by icalendar)."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", entry.method)
    event = Event()
    event.add("uid", entry.uid)
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
    attendee = vCalAddress(f"mailto:{entry.attendee_address}")
    if entry.attendee_name:
        attendee.params["cn"] = vText(entry.attendee_name)
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    attendee.params["partstat"] = vText("NEEDS-ACTION")
    attendee.params["rsvp"] = vText("FALSE")
    event.add("attendee", attendee)
    cancelled = entry.method == "CANCEL"
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")
    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


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
