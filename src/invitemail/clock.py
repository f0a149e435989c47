"""The wall clock: one function, the default of every ``clock`` and ``wall_clock`` a caller
may replace (tests give theirs). The journal knows this one: it reads the time for its
stamps through :func:`time.time`, once per second, when it is given this clock."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)
