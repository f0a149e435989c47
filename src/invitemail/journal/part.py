"""What every part of the :class:`~invitemail.journal.store.Journal` works through: its
connection, its guard and its clock. The parts (provenance.py, stops.py, batches.py) are
base classes of the Journal; store.py opens the connection and gives the guard (every
sqlite3 error becomes a JournalError) and the clock. sqlite3 is imported here for its type
only."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3


class JournalPart:
    """The connection, the guard and the clock a part of the Journal uses."""

    db: sqlite3.Connection

    def _guard(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # the Journal's: sqlite3's errors become JournalErrors

    def _now(self) -> str:
        raise NotImplementedError  # the Journal's: its clock's time, in UTC
