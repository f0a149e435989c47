"""What `status` and `send --due` say of the schedule: the timeline, and a due run's lines
and exit code (due.py plans and runs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from invitemail.errors import ExitCode, InvitemailError
from invitemail.inputs.config import EventConfig, load_config
from invitemail.journal.store import Journal
from invitemail.journal.timeline import sent_times
from invitemail.send.delivery import utcnow
from invitemail.send.due import INVITATION_TEMPLATE, DueResult, Timeline, plan

# -- what `status` shows -------------------------------------------------------------------


def status_lines(folder: Path, journal: Journal, addresses: list[str] | None,
                 now: dt.datetime | None = None) -> list[str]:
    """`status`'s timeline, when the event has a schedule, a cancellation or a reschedule;
    ``addresses``: the list as it is (None: it cannot be read; the invited ones are shown)."""
    try:
        config = load_config(folder)
    except InvitemailError:
        return []
    if addresses is None:
        addresses = list(sent_times(journal, INVITATION_TEMPLATE))
    timeline = plan(config, journal, addresses, now or utcnow())
    if not (config.schedule or timeline.events):
        return []
    return timeline_lines(config, timeline)


def timeline_lines(config: EventConfig, timeline: Timeline) -> list[str]:
    """The timeline for `status`: each stage with its due time in the event's zone and its
    counts, the cancellation and reschedules, and what is next."""
    zone = config.event.zone
    now = timeline.now

    def at(moment: dt.datetime) -> str:
        return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"

    lines = [f"timeline (times in {config.event.timezone}; event starts "
             f"{at(config.event.start)}):"]
    for p in timeline.stages:
        counts = [f"{p.sent} sent", f"{p.skipped} skipped", f"{p.pending} pending"]
        if p.failed:
            counts.append(f"{p.failed} failed or uncertain")
        if p.not_invited:
            counts.append(f"{p.not_invited} not invited")
        window = "open now" if p.due <= now < p.closes else (
            "closed" if now >= p.closes else "ahead")
        lines.append(f"  {p.stage.name}: due {at(p.due)}, until {at(p.closes)} ({window}): "
                     + ", ".join(counts))
    if timeline.followup is not None:
        f = timeline.followup
        state = {"sent": "sent", "waiting": "ahead",
                 "due": "due now: send --template followup --attendance REPORT",
                 "missed": "not sent, its window closed"}[f.state(now)]
        lines.append(f"  {f.stage.name}: due {at(f.due)}, until {at(f.closes)}: {state}")
    for when, what in timeline.events:
        lines.append(f"  {what} on {at(when)}")
    if timeline.cancellation is not None:
        lines.append("  cancelled: nothing more is sent until `send --reschedule`")
    else:
        upcoming = timeline.next_due()
        lines.append(f"  next: {upcoming[0]} at {at(upcoming[1])}" if upcoming
                     else "  next: nothing more is scheduled")
    return lines


# -- what `send --due` says ------------------------------------------------------------------


def due_summary(result: DueResult, event: Path) -> list[tuple[str, bool]]:
    """The lines `send --due` prints, each with whether it goes to stderr."""
    timeline = result.timeline
    zone = timeline.stages[0].due.tzinfo if timeline.stages else dt.UTC
    when = f"{timeline.now.astimezone(zone):%Y-%m-%d %H:%M}"
    lines: list[tuple[str, bool]] = []
    if result.runs or any(stage.newly_skipped for stage in timeline.stages):
        lines.append((f"send --due at {when}:", False))  # for the log a timer keeps
    for stage in timeline.stages:
        by_reason: dict[str, list[str]] = {}
        for _, address, why in stage.newly_skipped:
            by_reason.setdefault(why, []).append(address)
        for why, addresses in by_reason.items():
            shown = ", ".join(addresses[:10]) + (f" and {len(addresses) - 10} more"
                                                 if len(addresses) > 10 else "")
            lines.append((f"{stage.stage.name}: skipped for {len(addresses)} registrant"
                          f"{'s' if len(addresses) != 1 else ''} ({why}): {shown}", False))
    for stage, sent in result.runs:
        scan = sent.report.scan if sent.report is not None else None
        if scan is not None and scan.invalid:
            lines.append((f"{stage.stage.name}: {scan.invalid} row"
                          f"{'s' if scan.invalid != 1 else ''} of the list with problems left "
                          f"out; `invitemail check {event}` lists them", True))
        if sent.dry_run:
            lines.append((f"{stage.stage.name}: dry run: {sent.planned} message"
                          f"{'s' if sent.planned != 1 else ''} would be sent; nothing was "
                          "sent.", False))
            continue
        lines.append((f"{stage.stage.name}: sent {sent.sent}, {sent.failed} failed, "
                      f"{sent.uncertain} uncertain.", False))
        lines += [(f"  failed: {address}: {reply}", True) for address, reply in sent.failures]
        if sent.stopped is not None:
            lines.append((f"Error: the run stopped: {sent.stopped}", True))
            if sent.stopped.hint:
                lines.append((f"Hint: {sent.stopped.hint}", True))
        if sent.uncertain:
            lines.append((f"Uncertain ones may have arrived; see `invitemail status {event}`. "
                          "`send --due` does not send them again.", True))
    if result.followup_note is not None:
        lines.append((result.followup_note, False))
    waiting = max((stage.not_invited for stage in timeline.stages
                   if timeline.now < stage.closes), default=0)  # a reminder still ahead
    if waiting:
        lines.append((f"{waiting} registrant{'s' if waiting != 1 else ''} on the list "
                      f"{'are' if waiting != 1 else 'is'} not invited yet: `send --due` sends "
                      f"them no reminder until `invitemail send {event}` has invited them.",
                      False))
    if not result.runs:
        upcoming = timeline.next_due()
        lines.append((f"Nothing to send now ({when})." + (
            f" Next: {upcoming[0]} at {upcoming[1]:%Y-%m-%d %H:%M}." if upcoming else ""),
            False))
    return lines


def due_exit_code(result: DueResult) -> ExitCode:
    """0 when every run finished; 3 when one sent some, not all (the next `--due` goes on
    while the window is open); 1 when a run was stopped before it sent anything."""
    if result.complete:
        return ExitCode.OK
    if any(sent.sent or sent.uncertain for _, sent in result.runs):
        return ExitCode.PARTIAL
    return ExitCode.INPUT
