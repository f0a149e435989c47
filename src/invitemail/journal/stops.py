"""Why a send run stopped early, and the sends that count against a daily limit: the part
of the :class:`~invitemail.journal.store.Journal` that `status` and limits.py read.

A relay's quota or a blocked sender stops a run with rows pending; `status` says which, and
when it frees. Kept in a table of its own, created when first needed. A base class of the
Journal (part.py).
"""

from __future__ import annotations

import datetime as dt

from invitemail.journal.part import JournalPart


class Stops(JournalPart):
    """The ``run_stops`` table, and the ``sent_at`` of every message."""

    def _stops_table(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS run_stops (template TEXT PRIMARY KEY, reason TEXT NOT "
            "NULL, until TEXT, stopped_at TEXT NOT NULL) WITHOUT ROWID")

    def record_stop(self, template: str, reason: str | None,
                    until: dt.datetime | None = None) -> None:
        """Why the last run of ``template`` stopped early (``until``: when it may go on);
        ``reason`` None: it did not, forget an earlier stop."""
        with self._guard():
            self._stops_table()
            if reason is None:
                self.db.execute("DELETE FROM run_stops WHERE template = ?", (template,))
                return
            self.db.execute(
                "INSERT OR REPLACE INTO run_stops (template, reason, until, stopped_at) "
                "VALUES (?, ?, ?, ?)",
                (template, reason, until.astimezone(dt.UTC).isoformat(timespec="seconds")
                 if until else None, self._now()))

    def last_stop(self, template: str) -> tuple[str, dt.datetime | None, dt.datetime] | None:
        """(reason, until, when) of the last early stop of ``template``, or None."""
        with self._guard():
            if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'run_stops'"
                               ).fetchone() is None:
                return None
            row = self.db.execute("SELECT reason, until, stopped_at FROM run_stops "
                                  "WHERE template = ?", (template,)).fetchone()
        if row is None:
            return None
        until = dt.datetime.fromisoformat(row[1]) if row[1] else None
        return row[0], until, dt.datetime.fromisoformat(row[2])

    def sent_since(self, since: dt.datetime) -> list[dt.datetime]:
        """When each message of this event (every template) was sent after ``since``, oldest
        first."""
        cutoff = since.astimezone(dt.UTC).isoformat(timespec="seconds")
        with self._guard():
            return [dt.datetime.fromisoformat(at) for (at,) in self.db.execute(
                "SELECT sent_at FROM deliveries WHERE state = 'sent' AND sent_at > ? "
                "ORDER BY sent_at", (cutoff,))]
