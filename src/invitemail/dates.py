"""Dates and times in the registrant's language: the only module that uses babel.

The code formats every date a template shows, so templates print ``when.full`` instead of
each carrying its own date format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, get_timezone_location

LOCALES: Mapping[str, str] = {"da": "da_DK", "en": "en_GB"}

# The words around the formatted pieces, per language.
_WORDS: Mapping[str, Mapping[str, str]] = {
    "da": {"at": "kl.", "in": "i", "today": "i dag", "tomorrow": "i morgen", "on": "på",
           "now": "nu", "started": "er begyndt", "hour": "om en time",
           "minutes": "om {n} minutter", "hours": "om {n} timer", "days": "om {n} dage"},
    "en": {"at": "at", "in": "in", "today": "today", "tomorrow": "tomorrow", "on": "on",
           "now": "now", "started": "has started", "hour": "in one hour",
           "minutes": "in {n} minutes", "hours": "in {n} hours", "days": "in {n} days"},
}


def _locale(language: str) -> str:
    return LOCALES.get(language, LOCALES["en"])


def long_date(moment: dt.datetime, language: str) -> str:
    """"torsdag den 10. december 2026" / "Thursday, 10 December 2026"."""
    return format_date(moment, "full", locale=_locale(language))


def clock_time(moment: dt.datetime, language: str) -> str:
    """"14.00" / "14:00"."""
    return format_time(moment, "short", locale=_locale(language))


def zone_name(zone: ZoneInfo, language: str) -> str:
    """"Danmark-tid" / "Denmark Time"."""
    return str(get_timezone_location(zone, locale=_locale(language)))


def city_name(zone: ZoneInfo, language: str) -> str:
    """"New York"."""
    return str(get_timezone_location(zone, locale=_locale(language), return_city=True))


def describe_when(start: dt.datetime, end: dt.datetime, language: str, *,
                  registrant_zone: str | None, now: dt.datetime) -> dict[str, str | None]:
    """Every way a template may want to say when the event is (see the README's table)."""
    words = _WORDS.get(language, _WORDS["en"])
    zone = start.tzinfo
    assert isinstance(zone, ZoneInfo), "event times carry their ZoneInfo"
    date, time, end_time = long_date(start, language), clock_time(start, language), \
        clock_time(end, language)
    local: str | None = None
    if registrant_zone and registrant_zone != zone.key:
        own = ZoneInfo(registrant_zone)
        if start.astimezone(own).utcoffset() != start.utcoffset():
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
        "relative": relative_start(start, now, language),
    }


def relative_start(start: dt.datetime, now: dt.datetime, language: str) -> str:
    """How soon the event starts, seen from ``now``: "i morgen kl. 14.00", "in one hour"."""
    words = _WORDS.get(language, _WORDS["en"])
    now = now.astimezone(start.tzinfo)
    minutes = round((start - now).total_seconds() / 60)
    at = f"{words['at']} {clock_time(start, language)}"
    if minutes < 0:
        return words["started"]
    if minutes < 1:
        return words["now"]
    if 50 <= minutes <= 70:
        return f"{words['hour']} ({at})"
    if minutes < 50:
        return f"{words['minutes'].format(n=minutes)} ({at})"
    days = (start.date() - now.date()).days
    if days == 0:
        if minutes < 6 * 60:
            return f"{words['hours'].format(n=round(minutes / 60))} ({at})"
        return f"{words['today']} {at}"
    if days == 1:
        return f"{words['tomorrow']} {at}"
    weekday = format_date(start, "EEEE", locale=_locale(language))
    if days < 7:
        return f"{words['on']} {weekday} {at}"
    return f"{words['days'].format(n=days)}, {long_date(start, language)} {at}"
