"""What a registrant's calendar entry says, and what changed since the one they were sent.

The calendar's lifecycle: an invitation sends the entry, an update sends it again with a
higher SEQUENCE when the time, the link or the password changed (and says what changed),
and a cancellation withdraws it. What was sent comes from the journal
(:class:`~invitemail.journal.store.CalendarRecord`); what is sent now from event.toml. These
functions read the campaign as a :class:`CampaignView`, and never import it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from typing import Protocol

from invitemail.inputs.config import EventConfig
from invitemail.inputs.registrants import Registrant
from invitemail.journal.store import CalendarRecord
from invitemail.mime.dates import describe_when

__all__ = ["CANCEL_TEMPLATE", "UPDATE_TEMPLATE", "CampaignView", "calendar_description",
           "changes", "current_record", "entry_changed", "password_digest", "sequence_for"]

CANCEL_TEMPLATE = "cancellation"
UPDATE_TEMPLATE = "update"

_CALENDAR_WORDS = {
    "da": {"id": "Møde-ID", "password": "Adgangskode", "join": "Deltag",
           "cancelled": "Arrangementet er aflyst."},
    "en": {"id": "Meeting ID", "password": "Password", "join": "Join",
           "cancelled": "The event is cancelled."},
}


class CampaignView(Protocol):
    """What the wording reads of a campaign: the event, the clock, the template sent."""

    @property
    def config(self) -> EventConfig: ...

    @property
    def now(self) -> dt.datetime: ...

    @property
    def template(self) -> str: ...


def calendar_description(view: CampaignView, registrant: Registrant, join_url: str) -> str:
    """The calendar entry's description (and the add-to-calendar links' details)."""
    words = _CALENDAR_WORDS.get(registrant.language, _CALENDAR_WORDS["en"])
    title = view.config.event.title_in(registrant.language)
    if view.template == CANCEL_TEMPLATE:
        return f"{title}\n\n{words['cancelled']}"
    m = view.config.meeting
    return (f"{title}\n\n{words['join']}: {join_url}\n"
            f"{words['id']}: {m.id}\n{words['password']}: {m.password}")


def current_record(view: CampaignView, registrant: Registrant) -> CalendarRecord:
    """What this registrant's calendar entry says once this template's message arrives."""
    c = view.config
    return CalendarRecord(
        sequence=c.event.sequence, start=c.event.start.isoformat(),
        duration=c.event.duration, join_url=registrant.join_url or c.meeting.join_url,
        password_digest=password_digest(c.event.uid, c.meeting.password),
        template=view.template)


# What sent_record keeps: (join link, sequence) -> (config, template, the record).
KeptRecords = dict[tuple[str, int], tuple[object, str, CalendarRecord]]


def sent_record(view: CampaignView, registrant: Registrant, sequence: int,
                kept: KeptRecords) -> CalendarRecord:
    """:func:`current_record` with ``sequence``: what a message built for ``registrant``
    records. The same for every registrant of the same join link (the record holds nothing
    else of the registrant's), so it is kept in ``kept``, for as long as the campaign's
    config and template are the ones it was made with."""
    key = (registrant.join_url, sequence)
    found = kept.get(key)
    if found is not None and found[0] is view.config and found[1] == view.template:
        return found[2]
    record = dataclasses.replace(current_record(view, registrant), sequence=sequence)
    if len(kept) >= 4096:  # personal links: keep the memory bounded
        kept.clear()
    kept[key] = (view.config, view.template, record)
    return record


def changes(view: CampaignView, registrant: Registrant,
            previous: CalendarRecord | None) -> list[dict[str, str]]:
    """What changed since ``previous`` was sent: time, link, password (in that order)."""
    if previous is None:
        return []
    now = current_record(view, registrant)
    event = view.config.event
    found: list[dict[str, str]] = []
    language = registrant.language
    if (previous.start, previous.duration) != (now.start, now.duration):
        start = dt.datetime.fromisoformat(previous.start).astimezone(event.zone)
        end = start + dt.timedelta(minutes=previous.duration)

        def full(a: dt.datetime, b: dt.datetime) -> str:
            return str(describe_when(a, b, language, registrant_zone=None,
                                     now=view.now)["full"])

        found.append({"field": "time", "old": full(start, end),
                      "new": full(event.start, event.end)})
    if previous.join_url != now.join_url:
        found.append({"field": "link", "old": previous.join_url, "new": now.join_url})
    if previous.password_digest != now.password_digest:
        # The old password is not kept (the journal holds no password).
        found.append({"field": "password", "old": "", "new": view.config.meeting.password})
    return found


def entry_changed(view: CampaignView, registrant: Registrant,
                  previous: CalendarRecord | None) -> bool:
    """The calendar entry an update would send differs from ``previous``: a time, link
    or password changed, or ``previous`` was a cancellation (the update restores it)."""
    return previous is not None and (previous.template == CANCEL_TEMPLATE
                                     or bool(changes(view, registrant, previous)))


def sequence_for(view: CampaignView, registrant: Registrant,
                 previous: CalendarRecord | None) -> int:
    """The calendar SEQUENCE: event.sequence, raised past what was sent when the entry
    changes (an update or a cancellation) and the user forgot to raise it."""
    sequence = view.config.event.sequence
    if previous is None:
        return sequence
    if view.template == CANCEL_TEMPLATE or (view.template == UPDATE_TEMPLATE
                                            and entry_changed(view, registrant, previous)):
        return max(sequence, previous.sequence + 1)
    return max(sequence, previous.sequence)


@functools.lru_cache(maxsize=16)  # the same event and password for every message of a run
def password_digest(event_uid: str, password: str) -> str:
    """Enough to notice a changed meeting password without storing it."""
    return hashlib.sha256(f"invitemail\0{event_uid}\0{password}".encode()).hexdigest()[:16]
