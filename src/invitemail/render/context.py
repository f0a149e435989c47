"""What a template can use: the context of one registrant's message, and its documentation.

Most of a context is the same for every registrant of one language, join link, time zone and
template (a *group*): that part is built once per group and shared, and only
``registrant`` is each one's own. The functions read the campaign as a :class:`ContextView`,
and never import it.
"""

from __future__ import annotations

from typing import Any, Protocol

from invitemail.inputs.registrants import Registrant
from invitemail.mime import ics
from invitemail.mime.dates import describe_when
from invitemail.mime.wording import CampaignView, calendar_description

__all__ = ["SHARED_CONTEXTS", "TEMPLATE_VARIABLES", "ContextView", "context_for", "group_of",
           "variables_table"]

SHARED_CONTEXTS = 4096  # groups kept at most (personal links make a group per registrant)


class ContextView(CampaignView, Protocol):
    """What the context reads of a campaign besides the event, the clock and the template."""

    def template_for(self, registrant: Registrant) -> str: ...


def group_of(view: ContextView, registrant: Registrant, test: bool,
             changes: list[dict[str, str]] | None) -> str:
    """What the context depends on besides the registrant's own values: registrants with
    the same group share everything but ``registrant``."""
    join_url = registrant.join_url or view.config.meeting.join_url
    return repr((registrant.language, join_url, registrant.timezone, test, changes or [],
                 view.template_for(registrant)))


def context_for(view: ContextView, registrant: Registrant, group: str, test: bool,
                changes: list[dict[str, str]] | None,
                shared_contexts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything a template can use (:data:`TEMPLATE_VARIABLES`); the group's shared part
    from ``shared_contexts``, built there when it is not yet."""
    join_url = registrant.join_url or view.config.meeting.join_url
    shared = shared_contexts.get(group)
    if shared is None:
        shared = shared_context(view, registrant, join_url, test, changes or [])
        if len(shared_contexts) > SHARED_CONTEXTS:  # personal links: keep memory bounded
            shared_contexts.clear()
        shared_contexts[group] = shared
    return {**shared, "registrant": registrant.as_context()}


def shared_context(view: ContextView, registrant: Registrant, join_url: str, test: bool,
                   changes: list[dict[str, str]]) -> dict[str, Any]:
    """The part of the context that depends on the language, the join link, the time
    zone and the template only, built once per such group."""
    c, language = view.config, registrant.language
    event = c.event
    details = calendar_description(view, registrant, join_url)
    return {
        "lang": language,
        "template": view.template_for(registrant),
        "test": test,
        "event": {"title": event.title_in(language),
                  "description": event.description_in(language),
                  "duration": event.duration, "timezone": event.timezone,
                  "uid": event.uid, "sequence": event.sequence,
                  "recording_url": event.recording_url, "slides_url": event.slides_url,
                  "next_url": event.next_url},
        "meeting": {"platform": c.meeting.platform, "id": c.meeting.id,
                    "password": c.meeting.password, "join_url": join_url,
                    "web_join_url": c.meeting.web_join_url,
                    "waiting_room": c.meeting.waiting_room,
                    "recorded": c.meeting.recorded},
        "sender": {"name": c.sender.name, "address": c.sender.address,
                   "reply_to": c.sender.reply_to.address if c.sender.reply_to else None},
        "support": {"phone": c.support.phone, "hours": c.support.hours_in(language),
                    "email": c.support.email},
        "privacy": {"policy_url": c.privacy.policy_url_in(language)},
        "when": describe_when(event.start, event.end, language,
                              registrant_zone=registrant.timezone or None, now=view.now),
        "links": ics.calendar_links(title=event.title_in(language), start=event.start,
                                    end=event.end,
                                    details=details, location=join_url),
        "changes": changes,
    }


# Every variable a template can use; the README's table is generated from this and a test
# keeps both in step with what `Campaign.context` (that is, :func:`context_for`) really
# provides.
TEMPLATE_VARIABLES: dict[str, str] = {
    "lang": '"da" or "en": the language of this message',
    "template": "the template's name: invitation, reminder, update, cancellation, ...; in "
                "the follow-up, thanks or missed",
    "test": "true in a `send --test-to` message",
    "event.title": "event.toml's [event] title, in the registrant's language",
    "event.description": "[event] description in the registrant's language, or none",
    "event.duration": "minutes",
    "event.timezone": 'the IANA name, e.g. "Europe/Copenhagen"',
    "event.uid": "the event's calendar identity",
    "event.sequence": "[event] sequence",
    "event.recording_url": "[event] recording_url (for the follow-up), or none",
    "event.slides_url": "[event] slides_url (for the follow-up), or none",
    "event.next_url": "[event] next_url: the next event (for the follow-up), or none",
    "meeting.platform": '"Zoom" unless event.toml says otherwise',
    "meeting.id": "the meeting ID",
    "meeting.password": "the meeting password",
    "meeting.join_url": "the registrant's personal link when the CSV has one, else the "
                        "meeting's",
    "meeting.web_join_url": "the join-in-a-browser link, or none",
    "meeting.waiting_room": "true or false",
    "meeting.recorded": "true or false",
    "sender.name": "the From display name",
    "sender.address": "the From address",
    "sender.reply_to": "the Reply-To address, or none",
    "support.phone": "[support] phone",
    "support.hours": "[support] hours, in the registrant's language",
    "support.email": "[support] email",
    "privacy.policy_url": "[privacy] policy_url, in the registrant's language",
    "registrant.email": "the address the message goes to",
    "registrant.name": "the full name (the name column, or first and last name), may be empty",
    "registrant.first_name": "may be empty",
    "registrant.last_name": "may be empty",
    "registrant.language": '"da" or "en"',
    "registrant.join_url": "the personal join link, may be empty",
    "registrant.timezone": "the registrant's IANA time zone, may be empty",
    "registrant.<column>": 'any other CSV column, by its header in lower case with "_" for '
                           'spaces (e.g. "Organisation" -> registrant.organisation)',
    "when.date": '"torsdag den 10. december 2026" / "Thursday, 10 December 2026"',
    "when.time": '"14.00" / "14:00"',
    "when.end_time": '"15.00" / "15:00"',
    "when.zone": 'the event\'s time zone by name: "Danmark-tid" / "Denmark Time"',
    "when.full": 'date, time, end and zone: "torsdag den 10. december 2026 kl. 14.00-15.00 '
                 '(Danmark-tid)"',
    "when.local": 'the time in the registrant\'s own time zone when it differs: "08.00-09.00 i '
                  'New York", else none',
    "when.relative": 'how soon it starts, from the time of sending: "i morgen kl. 14.00", '
                     '"in 1 hour (at 14:00)"; "er begyndt" / "has started" once it has '
                     'started (see when.started)',
    "when.started": 'true once the event has started at the time of sending (then write '
                    '"er begyndt" / "has started", not "begynder" / "starts" before '
                    'when.relative), else false',
    "links.google": "add-to-calendar link for Google Calendar",
    "links.outlook": "add-to-calendar link for Outlook.com",
    "links.office365": "add-to-calendar link for Microsoft 365",
    "links.yahoo": "add-to-calendar link for Yahoo Calendar",
    "changes": 'in `update`: a list of {field: "time" | "link" | "password", old, new} (old is '
               'empty for the password, which is never stored); empty otherwise',
}


def variables_table() -> str:
    """The README's table of template variables (Markdown)."""
    rows = ["| variable | what it holds |", "| --- | --- |"]
    rows += [f"| `{name}` | {text} |" for name, text in TEMPLATE_VARIABLES.items()]
    return "\n".join(rows) + "\n"
