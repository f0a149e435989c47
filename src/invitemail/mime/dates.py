"""Dates and times in the registrant's language: the only module that uses babel.

The code formats every date a template shows, so templates print ``when.full`` instead of
each carrying its own date format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal
from zoneinfo import ZoneInfo

# babel.dates is imported in the functions that format (at the first message built), so a
# run gets to its checks and its login without waiting for it.

LOCALES: Mapping[str, str] = {"da": "da_DK", "en": "en_GB"}

# The words around the formatted pieces, per language. Counted amounts ("in 2 hours",
# "om 1 time") come from babel, which knows each language's plural rules and direction.
_WORDS: Mapping[str, Mapping[str, str]] = {
    "da": {"at": "kl.", "in": "i", "today": "i dag", "tomorrow": "i morgen", "on": "på",
           "now": "nu", "started": "er begyndt"},
    "en": {"at": "at", "in": "in", "today": "today", "tomorrow": "tomorrow", "on": "on",
           "now": "now", "started": "has started"},
}


def preload() -> None:
    """Import babel's dates now (see ics.preload)."""
    import babel.dates  # noqa: F401


def _locale(language: str) -> str:
    return LOCALES.get(language, LOCALES["en"])


def long_date(moment: dt.datetime, language: str) -> str:
    """"torsdag den 10. december 2026" / "Thursday, 10 December 2026"."""
    from babel.dates import format_date

    return format_date(moment, "full", locale=_locale(language))


def clock_time(moment: dt.datetime, language: str) -> str:
    """"14.00" / "14:00"."""
    from babel.dates import format_time

    return format_time(moment, "short", locale=_locale(language))


def zone_name(zone: ZoneInfo, language: str) -> str:
    """"Danmark-tid" / "Denmark Time"."""
    from babel.dates import get_timezone_location

    return str(get_timezone_location(zone, locale=_locale(language)))


def city_name(zone: ZoneInfo, language: str) -> str:
    """"New York"."""
    from babel.dates import get_timezone_location

    return str(get_timezone_location(zone, locale=_locale(language), return_city=True))


def own_zone(start: dt.datetime, registrant_zone: str | None) -> ZoneInfo | None:
    """The registrant's zone when its clock differs from the event's at ``start``, else None
    (then the event's own times are the registrant's)."""
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo), "event times carry their ZoneInfo"
    if not registrant_zone or registrant_zone == zone.key:
        return None
    own = ZoneInfo(registrant_zone)
    return own if start.astimezone(own).utcoffset() != start.utcoffset() else None


def describe_when(start: dt.datetime, end: dt.datetime, language: str, *,
                  registrant_zone: str | None, now: dt.datetime
                  ) -> dict[str, str | bool | None]:
    """Every way a template may want to say when the event is (see the README's table)."""
    words = _WORDS.get(language, _WORDS["en"])
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo), "event times carry their ZoneInfo"
    date, time, end_time = long_date(start, language), clock_time(start, language), \
        clock_time(end, language)
    local: str | None = None
    own = own_zone(start, registrant_zone)
    if own is not None:
        theirs, theirs_end = start.astimezone(own), end.astimezone(own)
        day = "" if theirs.date() == start.date() else f"{long_date(theirs, language)} "
        local = (f"{day}{clock_time(theirs, language)}-{clock_time(theirs_end, language)} "
                 f"{words['in']} {city_name(own, language)}")
    return {
        "date": date,
        "time": time,
        "end_time": end_time,
        "zone": zone_name(zone, language),
        "full": f"{date} {words['at']} {time}-{end_time} ({zone_name(zone, language)})",
        "local": local,
        "relative": relative_start(start, now, language, own_zone=own),
        "started": has_started(start, now),
    }


def has_started(start: dt.datetime, now: dt.datetime) -> bool:
    """True once the start is more than half a minute past (then ``relative_start`` says
    "has started")."""
    return round((start - now).total_seconds() / 60) < 0


def _in(amount: int, unit: Literal["minute", "hour", "day"], language: str) -> str:
    """"in 1 hour", "in 2 hours", "om 1 time", "om 2 timer": babel's plural and direction."""
    from babel.dates import format_timedelta

    seconds = {"minute": 60, "hour": 3600, "day": 86400}[unit]
    return format_timedelta(dt.timedelta(seconds=amount * seconds), granularity=unit,
                            threshold=1e9, add_direction=True, locale=_locale(language))


def relative_start(start: dt.datetime, now: dt.datetime, language: str, *,
                   own_zone: ZoneInfo | None = None) -> str:
    """How soon the event starts, seen from ``now``: "i morgen kl. 14.00", "in 1 hour (at
    14:00)". With ``own_zone`` (the registrant's, when it differs from the event's) days and
    clock times are the registrant's and the place is named: "(at 08:00 in New York)".

    Rounding: under 50 minutes the exact minutes; 50-70 minutes "in 1 hour"; 71-109
    minutes in minutes rounded to 5 ("in 75 minutes", never "in 1 hour" for 89 minutes);
    from 110 minutes to 6 hours on the same day whole hours, half up (at most 30 minutes
    off); the start's clock time always follows a counted amount in brackets.
    """
    words = _WORDS.get(language, _WORDS["en"])
    zone = own_zone or start.tzinfo
    start, now = start.astimezone(zone), now.astimezone(zone)
    minutes = round((start - now).total_seconds() / 60)
    at = f"{words['at']} {clock_time(start, language)}"
    if own_zone is not None:
        at = f"{at} {words['in']} {city_name(own_zone, language)}"
    if minutes < 0:
        return words["started"]
    if minutes < 1:
        return words["now"]
    if minutes < 50:
        return f"{_in(minutes, 'minute', language)} ({at})"
    if minutes <= 70:
        return f"{_in(1, 'hour', language)} ({at})"
    if minutes < 110:
        return f"{_in(5 * round(minutes / 5), 'minute', language)} ({at})"
    days = (start.date() - now.date()).days
    if days == 0:
        if minutes < 6 * 60:
            return f"{_in((minutes + 30) // 60, 'hour', language)} ({at})"
        return f"{words['today']} {at}"
    if days == 1:
        return f"{words['tomorrow']} {at}"
    if days < 7:
        from babel.dates import format_date

        weekday = format_date(start, "EEEE", locale=_locale(language))
        return f"{words['on']} {weekday} {at}"
    return f"{_in(days, 'day', language)}, {long_date(start, language)} {at}"
