"""``[sending] daily_limit``: messages in any 24 hours, counted from the journal.

Relays count a daily quota over a rolling 24 hours (Gmail, Microsoft 365) or a day of their
own; counting what the journal says was sent in the last 24 hours, for every template of the
event, keeps a run under it, and a rerun continues when the window frees. Time comes in as
``now`` (aware), so tests run on any clock.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from invitemail.errors import ExitCode, InvitemailError
from invitemail.inputs.config import EventConfig, load_config
from invitemail.journal.store import Journal, State

WINDOW: dt.timedelta = dt.timedelta(hours=24)

__all__ = ["WINDOW", "DailyLimitReached", "DailyWindow", "daily_window", "describe_time",
           "limit_reached", "sending_time_check", "sending_time_warning", "stop_lines"]


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """The last 24 hours as the journal saw them."""

    limit: int
    sent: tuple[dt.datetime, ...]  # when each message in the window was sent, oldest first
    now: dt.datetime

    @property
    def left(self) -> int:
        """How many more may go now."""
        return max(0, self.limit - len(self.sent))

    @property
    def frees_at(self) -> dt.datetime | None:
        """When the next message may go, if none may now: the send that leaves the window
        then makes room."""
        if self.left:
            return None
        return self.sent[len(self.sent) - self.limit] + WINDOW


def daily_window(journal: Journal | None, limit: int, now: dt.datetime) -> DailyWindow:
    sent = tuple(journal.sent_since(now - WINDOW)) if journal is not None else ()
    return DailyWindow(limit, sent, now)


class DailyLimitReached(InvitemailError):
    """``sending.daily_limit`` messages went out in the last 24 hours: the run stops with the
    rows not sent left pending. ``reason`` and ``until`` as the journal records them."""

    exit_code = ExitCode.INPUT

    def __init__(self, message: str, *, reason: str, until: dt.datetime | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.until = until


def describe_time(at: dt.datetime, now: dt.datetime, zone: ZoneInfo) -> str:
    """``"14:05 today"``, ``"14:05 tomorrow"`` or ``"14:05 on 2026-12-03"``, in ``zone``."""
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    day = {today: "today", today + dt.timedelta(days=1): "tomorrow"}.get(
        local.date(), f"on {local:%Y-%m-%d}")
    return f"{local:%H:%M} {day} ({zone.key} time)"


def limit_reached(window: DailyWindow, zone: ZoneInfo) -> DailyLimitReached:
    frees = window.frees_at
    when = describe_time(frees, window.now, zone) if frees else "soon"
    return DailyLimitReached(
        f"the daily limit of {window.limit} is reached ({len(window.sent)} sent in the last "
        f"24 hours); the window frees at {when}; run send again then",
        reason=f"the daily limit of {window.limit} (sending.daily_limit)", until=frees,
        hint="the registrants not sent to stay pending; sending.daily_limit in event.toml "
        "sets the limit (keep it at or under the relay's own: see the README's Relays section)")


def sending_time_warning(*, pending: int, now: dt.datetime, start: dt.datetime,
                         rate: float | None, rate_text: str | None,
                         window: DailyWindow | None) -> str | None:
    """A sentence when ``pending`` messages cannot all go before ``start`` at ``rate``
    (messages per second) and within the daily limit; None when they can, or when there is
    no cap, or the event has started."""
    available = (start - now).total_seconds()
    if pending <= 0 or available <= 0 or (rate is None and window is None):
        return None
    capacity = math.inf
    caps = []
    if rate is not None:
        capacity = rate * available
        caps.append(f"sending.rate {rate_text or f'{rate:g}/s'}")
    if window is not None:
        # What may go now, what frees as the window's sends age out before the start, and
        # a whole limit for every further 24 hours.
        freed = sum(1 for at in window.sent if at + WINDOW <= start)
        days = int((start - now) / WINDOW)
        capacity = min(capacity, window.left + freed + window.limit * days)
        caps.append(f"sending.daily_limit {window.limit}/day")
    if pending <= capacity:
        return None
    return (f"{pending} message(s) are still to send, and at {' and '.join(caps)} only about "
            f"{int(capacity)} can go before the event starts ({start:%Y-%m-%d %H:%M}); start "
            "sending now, or raise the limits if the relay allows more")


def sending_time_check(config: EventConfig, template: str, messages: int,
                       now: dt.datetime) -> str | None:
    """`check`'s warning when the ``messages`` of ``template`` not yet sent (the journal
    says which were) cannot go before the event at sending.rate and sending.daily_limit."""
    sending = config.sending
    if sending.rate is None and sending.daily_limit is None:
        return None
    done, window = 0, None
    journal = Journal.open(config.folder, create=False)
    try:
        if journal is not None:
            done = journal.counts(template)[State.SENT]
        if sending.daily_limit is not None:
            window = daily_window(journal, sending.daily_limit, now)
    finally:
        if journal is not None:
            journal.close()
    return sending_time_warning(pending=messages - done, now=now, start=config.event.start,
                                rate=sending.rate, rate_text=sending.rate_text, window=window)


def stop_lines(journal: Journal, folder: Path, template: str, *, waiting: bool,
               now: dt.datetime | None = None) -> list[str]:
    """What `status` says of limits: why the last run stopped early (a quota, a blocked
    sender, the daily limit) and when it frees, while rows wait; the daily window now."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        config: EventConfig | None = load_config(folder)
    except InvitemailError:  # status reads the journal even when event.toml is broken
        config = None
    zone = config.event.zone if config is not None else ZoneInfo("UTC")
    lines = []
    stop = journal.last_stop(template) if waiting else None
    if stop is not None:
        reason, until, at = stop
        line = f"The last run stopped at {describe_time(at, now, zone)}: {reason}"
        if until is not None:
            line += f"; it frees at {describe_time(until, now, zone)}"
            line += " (that time has passed: run send again)" if until <= now else ""
        lines.append(line + ".")
    limit = config.sending.daily_limit if config is not None else None
    if limit is not None:
        window = daily_window(journal, limit, now)
        frees = window.frees_at
        lines.append(f"Daily limit {limit}: {len(window.sent)} sent in the last 24 hours, "
                     + (f"{window.left} more can go now." if frees is None else
                        f"the next can go at {describe_time(frees, now, zone)}."))
    return lines
