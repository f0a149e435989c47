"""What the journal holds, as values: a delivery's :class:`State`, a :class:`Row`, the
:class:`CalendarRecord` a registrant's calendar entry last got, and the :class:`Identity`
(which event, which journal) it is stamped with. store.py reads and writes them.

A delivery goes ``pending -> sending -> sent | failed``; a row still ``sending`` when a run
starts belongs to a run that died with the message in flight, and becomes ``uncertain``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    """Where one delivery stands (see above)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class Identity:
    """Which event a journal belongs to, and the journal's own id (new for each journal)."""

    event_uid: str
    journal_id: str
    created_at: str


def new_journal_id() -> str:
    """A new journal's own id, so that the ledger tells a replaced journal from the one it saw."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Row:
    """One delivery: a template for one registrant (``key``: the address in lower case)."""

    template: str
    key: str
    address: str
    line: int | None
    state: State
    attempts: int
    last_reply: str | None
    message_id: str | None
    updated_at: str
    sent_at: str | None


@dataclass(frozen=True, slots=True)
class CalendarRecord:
    """What a registrant's calendar entry last said, as sent (issue: updates follow)."""

    sequence: int
    start: str
    duration: int
    join_url: str
    password_digest: str
    template: str
