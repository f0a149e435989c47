"""Which event a journal belongs to, and what it says was sent: the part of the
:class:`~invitemail.journal.store.Journal` that safeguard.py checks against the ledger (the
record of sent messages kept outside the event folder) and restores from it, so that a
journal deleted, emptied or replaced is noticed instead of mailing everyone again.

A base class of the Journal (part.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from invitemail.journal.part import JournalPart
from invitemail.journal.states import CalendarRecord, Identity, State


class Provenance(JournalPart):
    """The journal's stamp (the ``meta`` table) and its rows as the ledger knows them."""

    def identity(self) -> Identity | None:
        """The event and journal id this journal was stamped with; None for a new (or an
        invitemail 0.1) journal."""
        with self._guard():
            values = dict(self.db.execute("SELECT name, value FROM meta"))
        if "event_uid" not in values or "journal_id" not in values:
            return None
        return Identity(values["event_uid"], values["journal_id"],
                        values.get("created_at", ""))

    def stamp(self, event_uid: str, journal_id: str) -> Identity:
        """Make this the journal of ``event_uid`` with the id ``journal_id``."""
        now = self._now()
        with self._guard():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                (("event_uid", event_uid), ("journal_id", journal_id), ("created_at", now)))
        return Identity(event_uid, journal_id, now)

    def is_empty(self) -> bool:
        with self._guard():
            return self.db.execute("SELECT 1 FROM deliveries LIMIT 1").fetchone() is None

    def keys_in(self, states: Iterable[State]) -> set[tuple[str, str]]:
        """(template, key) of every row in one of ``states``."""
        wanted = [s.value for s in states]
        with self._guard():
            return {(t, k) for t, k in self.db.execute(
                "SELECT template, key FROM deliveries WHERE state IN "
                f"({', '.join('?' * len(wanted))})", wanted)}

    def restore(self, template: str, key: str, state: State, message_id: str, at: str,
                calendar: CalendarRecord | None) -> None:
        """Put back one delivery the record of sent messages knows (``sent`` or
        ``uncertain``); a ``sent`` one also becomes the registrant's calendar."""
        c = calendar
        with self._guard():
            self.db.execute(
                "INSERT INTO deliveries (template, key, address, line, state, attempts, "
                "last_reply, message_id, created_at, updated_at, sent_at, calendar_sequence, "
                "calendar_start, calendar_duration, calendar_join_url, "
                "calendar_password_digest) VALUES (?, ?, ?, NULL, 'sending', 1, ?, ?, ?, ?, "
                "NULL, ?, ?, ?, ?, ?) ON CONFLICT (template, key) DO UPDATE SET "
                "state = 'sending', message_id = excluded.message_id, "
                "last_reply = excluded.last_reply, updated_at = excluded.updated_at, "
                "calendar_sequence = excluded.calendar_sequence, "
                "calendar_start = excluded.calendar_start, "
                "calendar_duration = excluded.calendar_duration, "
                "calendar_join_url = excluded.calendar_join_url, "
                "calendar_password_digest = excluded.calendar_password_digest "
                "WHERE deliveries.state != 'sent'",
                (template, key, key, "restored from the record of sent messages", message_id,
                 at, at, *((c.sequence, c.start, c.duration, c.join_url, c.password_digest)
                           if c else (None,) * 5)))
            # Through ``sending``, so that the trigger makes the calendar follow a sent one.
            self.db.execute(
                "UPDATE deliveries SET state = ?, sent_at = CASE WHEN ? = 'sent' THEN ? "
                "ELSE sent_at END WHERE template = ? AND key = ? AND state = 'sending'",
                (state.value, state.value, at, template, key))

    def recorded(self) -> Iterator[tuple[str, str, State, str, str, CalendarRecord | None]]:
        """(template, key, state, message id, when, calendar) of every ``sent`` and
        ``uncertain`` row: what the ledger keeps of a journal it did not see written."""
        with self._guard():
            for row in self.db.execute(
                    "SELECT template, key, state, coalesce(message_id, ''), "
                    "coalesce(sent_at, updated_at), calendar_sequence, calendar_start, "
                    "calendar_duration, calendar_join_url, calendar_password_digest "
                    "FROM deliveries WHERE state IN ('sent', 'uncertain')"):
                calendar = CalendarRecord(row[5], row[6], row[7], row[8], row[9], row[0]) \
                    if row[5] is not None and row[2] == "sent" else None
                yield row[0], row[1], State(row[2]), row[3], row[4], calendar
