"""A built message read back as a mail client would: its headers, its text and HTML parts,
its calendar event and what looks wrong. The gallery (gallery.py) shows only what is read
here, so it shows what would be sent, not what the templates meant to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from invitemail.campaign import Built
from invitemail.mime import ics
from invitemail.outputs.lint import decoded_header, lint_message, parse_fast


@dataclass(frozen=True, slots=True)
class MessageView:
    """What the gallery shows of one message, read from its bytes."""

    headers: list[tuple[str, str]]
    text: str
    html: str
    calendar: ics.CalendarSummary | None
    warnings: list[str]


def read_message(data: bytes, *, with_calendar: bool = True) -> MessageView:
    """Parse a message as a mail client would: its parts, headers and calendar event
    (``with_calendar``: it should have one; a follow-up has none)."""
    parsed = parse_fast(data)
    warnings = lint_message(data, parsed)
    headers = [(name, decoded_header(value)) for name, value in parsed.items()]
    text, html_part = _body(parsed, "plain", warnings), _body(parsed, "html", warnings)
    calendar = None
    for part in parsed.walk():
        if part.get_content_type() == "text/calendar":
            try:
                payload = part.get_payload(decode=True)
                calendar = ics.describe_ics(payload if isinstance(payload, bytes) else b"")
            except (ValueError, KeyError, TypeError) as err:
                warnings.append(f"the calendar part cannot be read: {err}")
            break
    else:
        if with_calendar:
            warnings.append("the message has no calendar part")
    return MessageView(headers, text, html_part, calendar, warnings)


def view_of(built: Built) -> MessageView:
    """:func:`read_message` of a built message (``Campaign.check``'s ``inspect``)."""
    return read_message(built.data, with_calendar=built.calendar is not None)


def _body(parsed: Message, subtype: str, warnings: list[str]) -> str:
    part = next((p for p in parsed.walk() if p.get_content_type() == f"text/{subtype}"
                 and p.get("Content-Disposition") is None), None)
    if part is None:
        warnings.append(f"the message has no text/{subtype} part")
        return ""
    try:
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        content = raw.decode(part.get_content_charset() or "us-ascii")
    except (LookupError, UnicodeError) as err:
        warnings.append(f"the text/{subtype} part cannot be decoded: {err}")
        return ""
    return content.replace("\r\n", "\n")  # the wire's CRLF; a page wants plain lines
