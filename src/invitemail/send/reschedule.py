"""Nothing after a cancellation, until the event is rescheduled.

Once a cancellation has gone out (the journal has one sent, or possibly sent) the event is
cancelled: `send` of the invitation, a reminder or an update, and `send --due`, refuse it
with the date. The coordinator brings it back by setting a new start (or raising
``[event] sequence``) and running ``send --reschedule``: an update (METHOD:REQUEST, a
SEQUENCE above the cancellation's) to every registrant whose calendar entry is the
cancelled one, journaled as a stage of its own (``update@rescheduled@START``) so that an
update sent before the cancellation does not count. Once one has gone out the journal marks
the event ``rescheduled``, which lifts the block; a rerun of the same command continues
with whoever is left.
"""

from __future__ import annotations

import datetime as dt

from invitemail.campaign import CANCEL_TEMPLATE, UPDATE_TEMPLATE, Campaign
from invitemail.errors import InvitemailError
from invitemail.inputs.config import EventConfig
from invitemail.journal.store import Journal, JournalError
from invitemail.journal.timeline import (
    Cancellation,
    cancellation,
    cancelled,
    marks,
    record_mark,
)

# What a cancellation stops (the cancellation itself, and templates of the event's own,
# such as a follow-up, are not stopped).
BLOCKED_TEMPLATES = frozenset({"invitation", "reminder", UPDATE_TEMPLATE})
RESCHEDULED = "rescheduled"


class EventCancelled(InvitemailError):
    """A send that a cancellation stops."""


def _local(moment: dt.datetime | str, zone: dt.tzinfo) -> str:
    when = dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def cancelled_error(config: EventConfig, found: Cancellation, refused: str) -> EventCancelled:
    """The error for a cancelled event; ``refused`` says what is not done, in a clause."""
    folder = config.folder
    return EventCancelled(
        f"{folder}: the event was cancelled on {_local(found.first_at, config.event.zone)} "
        f"(a cancellation went to {found.count} registrant{'s' if found.count != 1 else ''}); "
        f"{refused}",
        hint=f"to hold it after all, set a new [event] start in {config.path} and run "
        f"`invitemail send {folder} --reschedule` (an update that restores the calendar "
        "entry); nothing was sent")


def refuse_if_cancelled(campaign: Campaign, *, reschedule: bool = False) -> None:
    """Raise EventCancelled when the event is cancelled and the campaign's template is one a
    cancellation stops (an update with ``reschedule`` is the way back)."""
    if campaign.template not in BLOCKED_TEMPLATES:
        return
    if reschedule and campaign.template == UPDATE_TEMPLATE:
        return
    found = standing_cancellation(campaign)
    if found is not None:
        raise cancelled_error(campaign.config, found, f"the {campaign.template} is not sent for a "
                              "cancelled event")


def standing_cancellation(campaign: Campaign) -> Cancellation | None:
    """The cancellation that stands for the campaign's event, or None. A journal that cannot
    be read says nothing here; the send's own checks of it say what is wrong."""
    try:
        journal = Journal.open(campaign.config.folder, create=False,
                               event_uid=campaign.config.event.uid)
    except JournalError:
        return None
    if journal is None:
        return None
    with journal:
        return cancelled(journal)


def prepare_reschedule(campaign: Campaign) -> frozenset[str]:
    """Make ``campaign`` (the update) the reschedule and return the registrants (keys) it goes
    to: those whose calendar entry is the cancellation. Raises when the event was never
    cancelled, or when neither the start nor the sequence changed since it was."""
    config = campaign.config
    if campaign.template != UPDATE_TEMPLATE:
        raise InvitemailError(f"--reschedule sends the update, not {campaign.template!r}",
                              hint=f"run `invitemail send {config.folder} --reschedule`")
    journal = Journal.open(config.folder, create=False, event_uid=config.event.uid)
    if journal is None:
        found, stage_keys = None, set()
    else:
        with journal:
            found = cancellation(journal)
            stage_keys = set(journal.states(_stage(config.event.start)))
    if found is None:
        raise InvitemailError(
            f"{config.folder}: the event was not cancelled, so there is nothing to reschedule",
            hint="to tell registrants of a new time, run `invitemail send "
            f"{config.folder} --template update`")
    event = config.event
    same_start = found.start and dt.datetime.fromisoformat(found.start) == event.start
    if same_start and event.sequence <= found.sequence:
        raise InvitemailError(
            f"{config.path}: event.start is still {_local(event.start, event.zone)}, as it was "
            f"when the event was cancelled on {_local(found.first_at, event.zone)}",
            hint="set the new start in [event] start (or, for the same time, raise "
            f"[event] sequence above {found.sequence}), then run the same command again; "
            "nothing was sent")
    campaign.use_stage(_stage(event.start))
    # Whoever has the cancelled entry, and whoever this reschedule already went to (a rerun
    # continues, and says they have it).
    keys = frozenset(key for key, record in campaign.history.items()
                     if record.template == CANCEL_TEMPLATE) | stage_keys
    if not keys:
        raise InvitemailError(f"{config.folder}: no registrant's calendar has the cancellation "
                              "(the journal has none as sent)",
                              hint="run `invitemail status` to see what went out")
    return keys


def _stage(start: dt.datetime) -> str:
    """The journal's name for the update that reschedules the event to ``start``."""
    return f"{UPDATE_TEMPLATE}@{RESCHEDULED}@{start.astimezone(dt.UTC):%Y-%m-%dT%H:%MZ}"


def record_reschedule(campaign: Campaign, sent: int, at: dt.datetime) -> bool:
    """After a reschedule run that sent updates: mark the event rescheduled, for `status`
    (the update's delivery rows are what lift the block: timeline_journal.cancelled).
    Returns whether it marked it now."""
    if not sent:
        return False
    journal = Journal.open(campaign.config.folder, create=False,
                           event_uid=campaign.config.event.uid)
    if journal is None:
        return False
    with journal:
        found = cancellation(journal)
        if found is None or any(m.at >= found.last_at for m in marks(journal, RESCHEDULED)):
            return False  # marked by an earlier run of this reschedule
        event = campaign.config.event
        record_mark(journal, RESCHEDULED, at, start=event.start.isoformat(),
                    sequence=event.sequence)
    return True
