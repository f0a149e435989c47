"""What `invitemail init` writes for the coordinator to replace, in one place.

scaffold.py writes these values and config.py reports any of them still in event.toml at
`check` and `send`, so an untouched folder from `init` is never sent. The uid init makes
names the event's date; until the first message is sent it follows a changed date.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Placeholder:
    section: str
    key: str
    value: str
    todo: str  # what to write instead
    secret: bool = False  # never repeat the value in a message


PLACEHOLDERS: tuple[Placeholder, ...] = (
    Placeholder("event", "title", "Mit webinar", "write your event's title"),
    Placeholder("event", "description", "Et webinar om ...",
                "describe your event, or delete the line"),
    Placeholder("meeting", "id", "123 4567 8901", "write your meeting's ID"),
    Placeholder("meeting", "password", "skift-mig", "write your meeting's password",
                secret=True),
    Placeholder("meeting", "join_url", "https://zoom.us/j/12345678901",
                "paste your meeting's join link"),
    Placeholder("meeting", "web_join_url", "https://zoom.us/wc/join/12345678901",
                "paste your meeting's link for joining in a browser, or delete the line"),
    Placeholder("sender", "from", "Arrangementer <arrangementer@example.org>",
                "write your own sender name and address"),
)

# init's start: two weeks from the day it ran, at this local time.
START_TIME = dt.time(14, 0)
START_AFTER = dt.timedelta(days=14)
_UID = re.compile(r"webinar-(\d{4}-\d{2}-\d{2})-([0-9a-f]{8})@example\.org")


def value(section: str, key: str) -> str:
    """The placeholder init writes for ``section.key``."""
    return next(p.value for p in PLACEHOLDERS if (p.section, p.key) == (section, key))


def init_start(now: dt.datetime) -> dt.datetime:
    return dt.datetime.combine((now + START_AFTER).date(), START_TIME)


def init_uid(day: dt.date, token: str) -> str:
    """The uid init writes: the event's date and a random ``token`` (8 hex digits)."""
    return f"webinar-{day:%Y-%m-%d}-{token}@example.org"


def parse_init_uid(uid: str) -> tuple[dt.date, str] | None:
    """The date and token of a uid still in init's form; None for any other uid."""
    found = _UID.fullmatch(uid)
    if found is None:
        return None
    try:
        return dt.date.fromisoformat(found.group(1)), found.group(2)
    except ValueError:
        return None
