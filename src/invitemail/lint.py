"""`check --lint`: what a careful mail administrator would check in every message."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF


def lint_message(data: bytes) -> list[str]:
    """Problems with one message's bytes; empty when it is fine."""
    problems: list[str] = []
    lines = data.split(b"\r\n")
    if b"\n" in data.replace(b"\r\n", b"") or b"\r" in data.replace(b"\r\n", b""):
        problems.append("a line does not end in CRLF")
    longest = max((len(line) for line in lines), default=0)
    if longest > MAX_LINE:
        problems.append(f"a line is {longest} octets long (the limit is {MAX_LINE})")
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        values = parsed.get_all(header) or []
        if len(values) != 1:
            problems.append(f"{len(values)} {header} headers (exactly one expected)")
    to = parsed.get("To")
    if to is not None and len(getattr(to, "addresses", ())) != 1:
        problems.append("To: must hold exactly one address")
    sender = parsed.get("From")
    message_id = str(parsed.get("Message-ID", ""))
    if sender is not None and getattr(sender, "addresses", ()):
        domain = sender.addresses[0].domain
        if not message_id.endswith(f"@{domain}>"):
            problems.append(f"Message-ID {message_id} is not on the sender's domain {domain}")
    if parsed.get_content_type() != "multipart/mixed":
        problems.append(f"top level is {parsed.get_content_type()}, not multipart/mixed")
    else:
        first = next(iter(parsed.iter_parts()), None)
        if first is None or first.get_content_type() != "multipart/alternative":
            problems.append("the first part is not multipart/alternative")
        else:
            kinds = [p.get_content_type() for p in first.iter_parts()]
            if kinds != ["text/plain", "text/html", "text/calendar"]:
                problems.append(f"the alternative holds {kinds}, not text, HTML and calendar in "
                                "that order")
    for part in parsed.walk():
        if part.get_content_maintype() == "text" and part.get_param("charset") is None:
            problems.append(f"{part.get_content_type()} declares no charset")
    return problems
