"""`send --due`: what the schedule says is due now, for each registrant, and the run.

The rules (docs/timeline.md has them for coordinators):

- ``--due`` sends the reminders ``[schedule]`` names and nothing else: never an invitation
  (a registrant gets reminders only once the coordinator's own ``send`` has invited them),
  never the follow-up (it needs the attendance report: ``--due`` says when it is due).
- A reminder goes to a registrant only inside its window, from its due time until ``slack``
  later, and never once the event has started. A window missed by more than its slack is
  skipped and recorded (timeline_journal.py), never sent late.
- A registrant whose invitation went out after a reminder was due does not get that
  reminder (the invitation was the news; no "tomorrow" two hours before, and no reminder
  minutes after the invitation); a later reminder still reaches them.
- Each reminder is a stage of its own in the journal (schedule.Stage.key), so each goes
  once; a run twice in the same minute sends nothing twice.
- Nothing after a cancellation (reschedule.py).

Pure planning (:func:`plan`) apart from the run (:func:`run_due`, each stage a send plan:
plan.py); the clock is passed in. What `status` and `send --due` say is due_report.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from invitemail.auth.credentials import TokenCredential
from invitemail.campaign import Campaign
from invitemail.errors import InvitemailError
from invitemail.inputs.cells import registrant_key
from invitemail.inputs.config import EventConfig, find_event_file, load_config
from invitemail.inputs.registrants import Scan, open_registrants, unique_registrants
from invitemail.inputs.schedule import Stage
from invitemail.inputs.sources import default_registrants
from invitemail.journal.folderlock import FolderLock
from invitemail.journal.safeguard import diagnose
from invitemail.journal.store import Journal, State
from invitemail.journal.timeline import (
    Cancellation,
    any_sent,
    cancellation,
    cancelled,
    marks,
    record_mark,
    record_skips,
    sent_times,
    skips,
)
from invitemail.send.delivery import Progress, SendOptions, SendResult, utcnow
from invitemail.send.plan import prepare_send
from invitemail.send.reschedule import cancelled_error

REMINDER_TEMPLATE = "reminder"
INVITATION_TEMPLATE = "invitation"
# The journal's names for a follow-up sent (send --template followup --attendance FILE).
FOLLOWUP_TEMPLATES = ("followup", "thanks", "missed")
FOLLOWUP_MISSED = "followup-missed"


@dataclass
class StagePlan:
    """One stage of the schedule for the event's current start, registrant by registrant."""

    stage: Stage
    key: str  # the journal's name for it
    due: dt.datetime
    closes: dt.datetime
    sent: int = 0
    failed: int = 0  # failed or uncertain: `send --due` does not retry them
    skipped: int = 0
    pending: int = 0  # will get it: its window is ahead, or open and it has not gone yet
    not_invited: int = 0
    to_send: dict[str, str] = field(default_factory=dict)  # key -> address, now
    newly_skipped: list[tuple[str, str, str]] = field(default_factory=list)  # key, addr, why

    def count(self, what: str, key: str, address: str, why: str) -> None:
        """Count one registrant's :func:`verdict`."""
        if what == "send":
            self.to_send[key] = address
            self.pending += 1
        elif what == "skip":
            self.newly_skipped.append((key, address, why))
            self.skipped += 1
        elif what == "not invited":
            self.not_invited += 1
        elif what == "sent":
            self.sent += 1
        elif what == "failed":
            self.failed += 1
        elif what == "skipped":
            self.skipped += 1
        elif what == "pending":
            self.pending += 1
        else:
            raise ValueError(f"no such verdict: {what!r}")


@dataclass
class FollowupPlan:
    stage: Stage
    due: dt.datetime
    closes: dt.datetime
    sent: bool
    missed_recorded: bool

    def state(self, now: dt.datetime) -> str:
        """"sent", "waiting", "due" or "missed"."""
        if self.sent:
            return "sent"
        if now < self.due:
            return "waiting"
        return "due" if now < self.closes else "missed"


@dataclass
class Timeline:
    now: dt.datetime
    stages: list[StagePlan]
    followup: FollowupPlan | None
    cancellation: Cancellation | None  # the one that stands (None once rescheduled)
    events: list[tuple[dt.datetime, str]]  # (when, what): cancellations and reschedules

    def next_due(self) -> tuple[str, dt.datetime] | None:
        """The next stage that will send something (or, for the follow-up, be due), and
        when."""
        ahead = [(p.due, p.stage.name) for p in self.stages if p.due > self.now and p.pending]
        if self.followup is not None and self.followup.state(self.now) == "waiting":
            ahead.append((self.followup.due, self.followup.stage.name))
        if not ahead:
            return None
        when, name = min(ahead)
        return name, when


def verdict(due: dt.datetime, closes: dt.datetime, invited_at: dt.datetime | None,
            state: State | None, skipped: str | None, now: dt.datetime) -> tuple[str, str]:
    """What a reminder stage means for one registrant now: ("sent" | "failed" | "skipped" |
    "not invited" | "pending" | "send" | "skip", why). "skip" is a skip to record now."""
    if state is State.SENT:
        return "sent", ""
    if state in (State.FAILED, State.UNCERTAIN, State.SENDING):
        return "failed", state.value
    if skipped is not None:
        return "skipped", skipped
    if invited_at is None:
        return "not invited", ""
    if invited_at >= due:
        return "skip", "the invitation went out after this reminder was due"
    if now < due:
        return "pending", ""
    if now < closes:
        return "send", ""
    return "skip", f"its window closed at {closes:%Y-%m-%d %H:%M %Z} before a run sent it"


def plan(config: EventConfig, journal: Journal | None, addresses: Iterable[str],
         now: dt.datetime) -> Timeline:
    """The timeline of the event as ``now`` sees it, for the registrants at ``addresses``
    (the list as it is). Reads the journal; writes nothing."""
    event = config.event
    zone = event.zone
    listed = {registrant_key(a): a for a in addresses}
    invited = sent_times(journal, INVITATION_TEMPLATE) if journal is not None else {}
    stages = []
    for stage in config.schedule.reminders:
        key = stage.key(event.start)
        due = stage.due(event.start, event.end).astimezone(zone)
        closes = stage.closes(event.start, event.end).astimezone(zone)
        states = journal.states(key, pending=False) if journal is not None else {}
        recorded = skips(journal, key) if journal is not None else {}
        one = StagePlan(stage, key, due, closes)
        for lower, address in listed.items():
            what, why = verdict(due, closes, invited.get(lower), states.get(lower),
                                recorded.get(lower), now)
            one.count(what, lower, address, why)
        stages.append(one)
    stages.sort(key=lambda p: p.due)
    followup = None
    if config.schedule.followup is not None:
        stage = config.schedule.followup
        followup = FollowupPlan(
            stage, stage.due(event.start, event.end).astimezone(zone),
            stage.closes(event.start, event.end).astimezone(zone),
            sent=journal is not None and any_sent(journal, FOLLOWUP_TEMPLATES),
            missed_recorded=journal is not None and bool(marks(journal, FOLLOWUP_MISSED)))
    standing = cancelled(journal) if journal is not None else None
    return Timeline(now, stages, followup, standing, _history(journal, zone))


def _history(journal: Journal | None, zone: dt.tzinfo) -> list[tuple[dt.datetime, str]]:
    """The cancellation and the reschedules, oldest first."""
    if journal is None:
        return []
    found = cancellation(journal)
    events = [(found.first_at, f"cancelled (to {found.count} registrant"
                               f"{'s' if found.count != 1 else ''})")] if found else []
    for mark in marks(journal, "rescheduled"):
        start = dt.datetime.fromisoformat(mark.start).astimezone(zone) if mark.start else None
        events.append((mark.at, f"rescheduled to {start:%Y-%m-%d %H:%M}" if start
                       else "rescheduled"))
    return sorted(events)


def read_addresses(config: EventConfig, registrants: Path | None, encoding: str | None,
                   delimiter: str | None, sheet: str | None = None) -> Scan:
    """The registrant list, read and checked row by row (nothing built)."""
    from invitemail.inputs.addresses import is_loopback_host

    source = open_registrants(registrants or default_registrants(config.folder),
                              encoding=encoding, delimiter=delimiter, sheet=sheet,
                              default_language=config.event.language,
                              local_test=is_loopback_host(config.smtp.host))
    scan = Scan()
    for _ in unique_registrants(source, scan):
        pass
    return scan


# -- the run -------------------------------------------------------------------------------


@dataclass
class DueResult:
    timeline: Timeline
    runs: list[tuple[StagePlan, SendResult]] = field(default_factory=list)
    followup_note: str | None = None
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return all(result.complete or result.dry_run for _, result in self.runs)

    @property
    def sent(self) -> int:
        return sum(result.sent for _, result in self.runs)


ProgressFor = Callable[[str], contextlib.AbstractContextManager[Progress]]


async def run_due(event: Path, *, password: Callable[[Campaign], str | TokenCredential | None],
                  progress: ProgressFor, lock: FolderLock | None = None,
                  registrants: Path | None = None, encoding: str | None = None,
                  delimiter: str | None = None, sheet: str | None = None,
                  attendance: Path | None = None,
                  base: SendOptions | None = None, stop: asyncio.Event | None = None,
                  wall_clock: Callable[[], dt.datetime] = utcnow,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], Awaitable[None]] | None = None) -> DueResult:
    """Send every reminder due now to whoever it is due for; record what was skipped;
    send the follow-up in its window when ``attendance`` (the platform's report) is given,
    else say that it is due. ``password(campaign)`` is asked only when something
    goes; ``base`` carries the run's options (--dry-run, --concurrency, --rate). Raises
    EventCancelled (reschedule.py) for a cancelled event, InvitemailError for
    an event without a schedule."""
    config = load_config(event)
    if not config.schedule:
        raise InvitemailError(f"{config.path}: there is no [schedule], so nothing is ever due",
                              hint='add [schedule] with reminders = ["1 day", "1 hour"] (and '
                              'followup = "2 hours"), or send by hand with --template')
    # A row with a problem was never invited (the invitation refused or left it out), so
    # it is not among the registrants a reminder is due for: an unattended run leaves such
    # rows out, says so, and sends the rest, rather than stopping every reminder for one.
    base = dataclasses.replace(base or SendOptions(), skip_invalid=True)
    dry_run = base.dry_run
    now = wall_clock()
    # A journal lost or replaced would read as "nobody invited": it must be trusted first
    # (the run itself rebuilds nothing: `send --restore-journal` does).
    problem = diagnose(config.folder, config.event.uid)
    if problem is not None:
        raise problem
    scan = read_addresses(config, registrants, encoding, delimiter, sheet)
    journal = Journal.open(config.folder, create=False, event_uid=config.event.uid)
    with journal if journal is not None else contextlib.nullcontext():
        timeline = plan(config, journal, scan.addresses, now)
        if timeline.cancellation is not None:
            raise cancelled_error(config, timeline.cancellation,
                                  "`send --due` sends nothing for a cancelled event")
        result = DueResult(timeline, dry_run=dry_run)
        if journal is not None and not dry_run:
            for stage in timeline.stages:
                if stage.newly_skipped:
                    record_skips(journal, stage.key, stage.newly_skipped, now)
        followup_now = attendance is not None and _followup_open(timeline, journal)
        if not followup_now:
            result.followup_note = _followup_note(config, timeline, journal, dry_run)
    secret: list[str | TokenCredential | None] = []  # asked once, for the first stage that sends

    async def run(campaign: Campaign, name: str, options: SendOptions) -> SendResult:
        with prepare_send(campaign, options, lock=lock, wall_clock=wall_clock) as planned:
            if not secret:
                secret.append(password(campaign))
            with progress(name) as shown:
                return await planned.run_async(secret[0], progress=shown, stop=stop,
                                               clock=clock, sleep=sleep or asyncio.sleep)

    for stage in timeline.stages:
        if not stage.to_send:
            continue
        campaign = Campaign.open(event, template=REMINDER_TEMPLATE, registrants=registrants,
                                 encoding=encoding, delimiter=delimiter, sheet=sheet, now=now,
                                 stage=stage.key)
        sent = await run(campaign, stage.stage.name,
                         dataclasses.replace(base, only=frozenset(stage.to_send)))
        result.runs.append((stage, sent))
        if sent.stopped is not None or sent.interrupted:
            return result  # the relay or the user stopped it: the next run goes on
    if followup_now and timeline.followup is not None:
        followup = timeline.followup
        campaign = Campaign.open(event, template=FOLLOWUP_TEMPLATES[0], registrants=registrants,
                                 encoding=encoding, delimiter=delimiter, sheet=sheet, now=now,
                                 attendance=attendance, attendance_required=True)
        sent = await run(campaign, followup.stage.name, base)
        result.runs.append((StagePlan(followup.stage, FOLLOWUP_TEMPLATES[0], followup.due,
                                      followup.closes), sent))
    return result


def _followup_open(timeline: Timeline, journal: Journal | None) -> bool:
    """The follow-up's window is open and it has not gone to everyone yet: due and not
    started, or started by an earlier run that left some pending (a rerun of a run the relay
    stopped). Sending it again sends only the rows not sent: the journal sees to that."""
    followup = timeline.followup
    if followup is None:
        return False
    state = followup.state(timeline.now)
    if state == "due":
        return True
    if state != "sent" or not followup.due <= timeline.now < followup.closes:
        return False
    return journal is not None and journal.counts(FOLLOWUP_TEMPLATES[0]).get(State.PENDING, 0) > 0


def _followup_note(config: EventConfig, timeline: Timeline, journal: Journal | None,
                   dry_run: bool) -> str | None:
    followup = timeline.followup
    if followup is None:
        return None
    state = followup.state(timeline.now)
    folder = config.folder
    zone = config.event.zone
    if state == "due":
        return (f"follow-up due (until {followup.closes.astimezone(zone):%Y-%m-%d %H:%M}): run "
                f"invitemail send {folder} --template followup --attendance REPORT")
    if state == "missed" and not followup.missed_recorded:
        if journal is not None and not dry_run:
            record_mark(journal, FOLLOWUP_MISSED, timeline.now)
        return (f"follow-up not sent: its window closed at "
                f"{followup.closes.astimezone(zone):%Y-%m-%d %H:%M}; `send --due` will not "
                "mention it again")
    return None


def send_due(event: Path, *, password: Callable[[Campaign], str | TokenCredential | None],
             progress: ProgressFor, registrants: Path | None = None,
             encoding: str | None = None, delimiter: str | None = None,
             sheet: str | None = None, attendance: Path | None = None,
             base: SendOptions | None = None) -> DueResult:
    """`send --due` in a loop of its own: :func:`run_due` holding the event folder's lock
    from the start (a dry run takes none), so that a second run stops at once."""
    dry_run = base is not None and base.dry_run
    lock = None if dry_run else FolderLock.acquire(find_event_file(event).parent)
    try:
        return asyncio.run(run_due(event, password=password, progress=progress, lock=lock,
                                   registrants=registrants, encoding=encoding,
                                   delimiter=delimiter, sheet=sheet, attendance=attendance,
                                   base=base))
    finally:
        if lock is not None:
            lock.release()
