"""`preview`: a message as a person reads it, and for `--out DIR` one .eml file per
registrant, written as messages are built (gallery.py adds the HTML pages beside them).

The files are written through files.py: 0600 (they hold the meeting password), never through
a link, and the folder is refused when it is a link itself."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from invitemail.campaign import Built
from invitemail.errors import InvitemailError
from invitemail.journal.store import Journal
from invitemail.outputs.files import OutputFolder


def eml_name(number: int, address: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", address)[:80]
    return f"{number:05d}-{safe}.eml"


class EmlWriter:
    """Writes each built message to ``folder`` as it comes (memory stays flat). It holds the
    folder open (``out``, which gallery.py writes its pages into too): :meth:`close` it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.out = OutputFolder.create(folder)
        stale = [name for name in self.out.names() if name.endswith(".eml")]
        if stale:
            self.out.close()
            raise InvitemailError(f"{folder}: already holds .eml files ({stale[0]} ...)",
                                  hint="give an empty or new folder to --out")

    def __call__(self, built: Built) -> None:
        self.count += 1
        # No fsync per file: a preview is written again by running it again, and 100,000
        # syncs would cost minutes; the rename still keeps a half-written file out of sight.
        self.out.write(eml_name(self.count, built.recipient), built.data, durable=False)

    def close(self) -> None:
        self.out.close()


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
