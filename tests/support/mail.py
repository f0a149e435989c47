"""Reading a built message back: the parsed message and its calendar parts."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import icalendar


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def calendar_parts(message: EmailMessage) -> list[tuple[str | None, icalendar.Calendar]]:
    """Every calendar in the message (the alternative's part and invite.ics), with the
    part's method= parameter."""
    found: list[tuple[str | None, icalendar.Calendar]] = []
    for part in message.walk():
        if part.get_content_type() in ("text/calendar", "application/ics"):
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            method = part.get_param("method")
            assert method is None or isinstance(method, str)
            found.append((method, icalendar.Calendar.from_ical(payload)))
    return found


def vevent_of(data: bytes) -> tuple[str, icalendar.Event]:
    """The one VEVENT of a message, after checking every calendar part agrees."""
    parts = calendar_parts(parsed(data))
    assert len(parts) == 2
    methods = set()
    for method, calendar in parts:
        assert str(calendar["METHOD"]) == method
        assert len(calendar.walk("VEVENT")) == 1
        methods.add(method)
    assert len(methods) == 1
    method = methods.pop()
    assert method is not None
    event = parts[0][1].walk("VEVENT")[0]
    assert isinstance(event, icalendar.Event)
    return method, event
