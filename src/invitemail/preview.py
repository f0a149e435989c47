"""`preview`: a message as a person reads it, and for `--out DIR` one .eml file per
registrant, written as messages are built (gallery.py adds the HTML pages beside them)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from invitemail.campaign import Built
from invitemail.errors import InvitemailError
from invitemail.journal import Journal


def eml_name(number: int, address: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", address)[:80]
    return f"{number:05d}-{safe}.eml"


class EmlWriter:
    """Writes each built message to ``folder`` as it comes (memory stays flat)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InvitemailError(f"{folder}: cannot create the folder: {err.strerror}") from None
        stale = sorted(folder.glob("*.eml"))
        if stale:
            raise InvitemailError(f"{folder}: already holds .eml files ({stale[0].name} ...)",
                                  hint="give an empty or new folder to --out")

    def __call__(self, built: Built) -> None:
        self.count += 1
        (self.folder / eml_name(self.count, built.recipient)).write_bytes(built.data)


def journal_states(folder: Path, template: str) -> dict[str, str] | None:
    """Each registrant's state in the event's send journal for ``template`` (by the
    registrant's key); None when nothing was ever sent (no journal)."""
    journal = Journal.open(folder, create=False)
    if journal is None:
        return None
    with journal:
        return {key: str(state) for key, state in journal.states(template).items()}


def readable(built: Built) -> str:
    """A message as a person reads it: the main headers and the plain-text part."""
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    lines = [f"{name}: {parsed[name]}" for name in ("From", "To", "Reply-To", "Subject", "Date",
                                                    "Message-ID") if parsed[name]]
    body = parsed.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    parts = [part.get_content_type() for part in parsed.walk() if not part.is_multipart()]
    lines.append(f"Parts: {', '.join(parts)}")
    return "\n".join(lines) + "\n\n" + text.rstrip() + "\n"
