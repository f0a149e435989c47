"""A send run's delivery: checked messages -> transport -> journal, and what the run did.

The sequence before it (workers, check, journal, the question) is plan.py's; this module
is the run itself, which :meth:`plan.SendPlan.run` calls.

The journal is written from the transport's hooks (hooks.py), so each state change is on
record before the step that depends on it: ``sending`` (the row's claim) before the message
data goes out, a finished message's state with the next claim or before the event loop
waits again, and its ledger line with it. A run that writes the journal holds the event
folder's lock from before it reads the journal until it is done (folderlock.py), and trusts
the journal only once safeguard.py has compared it with the ledger.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from invitemail.auth.credentials import TokenCredential
from invitemail.campaign import Campaign, CheckReport
from invitemail.clock import utcnow
from invitemail.errors import InvitemailError
from invitemail.inputs.cells import registrant_key
from invitemail.inputs.registrants import Registrant, unique_registrants
from invitemail.journal.safeguard import Prepared, open_for_send
from invitemail.journal.store import Journal, State
from invitemail.mime.message import DateHeaders
from invitemail.send import limits, transport
from invitemail.send.hooks import JournalHooks, Progress, Record, SendResult, Skip

# The run's tally and hooks live in hooks.py; they are the run's, so importable here.
__all__ = ["Progress", "Record", "SendOptions", "SendResult", "Skip", "count_planned",
           "open_record", "prepare_journal", "run_delivery", "skip_for", "utcnow"]


@dataclass
class SendOptions:
    limit: int | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    skip_invalid: bool = False
    dry_run: bool = False
    test_to: str | None = None
    concurrency: int | None = None
    rate: float | None = None
    restore_journal: bool = False  # rebuild a lost journal from the ledger (safeguard.py)
    new_journal: bool = False  # move a lost or foreign journal aside and start afresh
    # The registrants (keys) this run may send to, when not all: the ones a stage of the
    # schedule is due for (due.py), the ones a reschedule restores (reschedule.py).
    only: frozenset[str] | None = None
    reschedule: bool = False  # an update that restores a cancelled event (reschedule.py)

    @property
    def claimable(self) -> tuple[State, ...]:
        """The states a row may be claimed for sending from in this run."""
        return (State.PENDING, *((State.FAILED,) if self.retry_failed else ()),
                *((State.UNCERTAIN,) if self.resend_uncertain else ()))


def _selected(campaign: Campaign, states: dict[str, State], options: SendOptions,
              result: SendResult) -> Iterator[Registrant]:
    """The registrants this run sends to: pending ones, and what the options add."""
    count = 0
    for registrant in campaign.kept.registrants():  # as unique_registrants(source) gives
        if options.only is not None and registrant.key not in options.only:
            continue
        skip = skip_for(states.get(registrant.key, State.PENDING), options)
        if skip is not None:
            result.skipped[skip] += 1
            continue
        if options.limit is not None and count >= options.limit:
            return
        count += 1
        yield registrant


def skip_for(state: State, options: SendOptions) -> Skip | None:
    """Why a registrant in ``state`` is not sent to in this run, or None."""
    if state is State.SENT:
        return Skip.SENT
    if state is State.FAILED and not options.retry_failed:
        return Skip.FAILED
    # A row still ``sending`` (seen by a dry run only: a run turns them uncertain first) is
    # in flight in a running send, or uncertain once the next run starts.
    if state in (State.UNCERTAIN, State.SENDING) and not options.resend_uncertain:
        return Skip.UNCERTAIN
    return None


class _Capped:
    """At most ``limit`` of ``items`` (None: all); :attr:`reached` when more were left."""

    def __init__(self, items: Iterable[Registrant], limit: int | None) -> None:
        self.items = items
        self.limit = limit
        self.reached = False

    def __iter__(self) -> Iterator[Registrant]:
        for number, item in enumerate(self.items):
            if self.limit is not None and number >= self.limit:
                self.reached = True
                return
            yield item


def prepare_journal(campaign: Campaign, options: SendOptions, *,
                    clock: Callable[[], dt.datetime] = utcnow) -> Prepared | None:
    """The journal of this run, checked against the ledger (safeguard.py), rebuilt or
    started afresh when the options say so; None for a test send, which journals nothing.
    Call it holding the folder's lock (except for a dry run), and before the messages are
    built: after a rebuild the campaign reads its calendars again."""
    if options.test_to is not None:
        return None
    config = campaign.config
    prepared = open_for_send(config.folder, config.event.uid, dry_run=options.dry_run,
                             restore=options.restore_journal, new=options.new_journal,
                             clock=clock)
    if prepared.restored or prepared.reconciled or prepared.set_aside is not None:
        campaign.load_history()
    return prepared


def open_record(campaign: Campaign, report: CheckReport, options: SendOptions,
                result: SendResult, prepared: Prepared | None) -> Record:
    """Make the journal ready: rows a dead run left in flight become uncertain, this
    list's registrants are added."""
    if prepared is None:
        return Record()
    result.restored, result.reconciled = prepared.restored, prepared.reconciled
    result.set_aside = prepared.set_aside
    journal = prepared.journal
    if journal is not None and not options.dry_run:
        result.recovered = journal.recover()  # under the folder's lock: nobody else sends
        rows = ((registrant_key(email), email, line) for email, line in report.scan.identities)
        journal.register(campaign.stage, (row for row in rows
                                          if options.only is None or row[0] in options.only))
    return Record(journal, prepared.ledger, prepared.journal_id, options.claimable)


async def run_delivery(campaign: Campaign, report: CheckReport, record: Record, *,
                       password: str | TokenCredential | None, options: SendOptions,
                       progress: Progress, result: SendResult, stop: asyncio.Event | None,
                       clock: Callable[[], float],
                       sleep: Callable[[float], Awaitable[None]],
                       wall_clock: Callable[[], dt.datetime]) -> SendResult:
    """Send the run's messages through the transport, journaling every step; what stops
    the run half way is in ``result.stopped``."""
    config = campaign.config
    sending = config.sending
    if options.concurrency is not None or options.rate is not None:
        sending = dataclasses.replace(
            sending, concurrency=options.concurrency or sending.concurrency,
            rate=options.rate if options.rate is not None else sending.rate)
    journal = record.journal
    states: dict[str, State] = {}
    if options.test_to is not None:
        registrants: Iterable[Registrant] = itertools.islice(
            unique_registrants(campaign.source), options.limit or 1)
    else:
        if journal is not None:
            states = journal.states(campaign.stage, pending=False)  # absent = pending
            removed = removed_from_list(journal, campaign.stage,
                                        (*report.scan.addresses, *report.scan.left_out))
            result.removed = dict(collections.Counter(s.value for s in removed.values()))
        registrants = _selected(campaign, states, options, result)
    window = None
    if sending.daily_limit is not None and options.test_to is None:
        window = limits.daily_window(journal, sending.daily_limit, wall_clock())
    capped = _Capped(registrants, window.left if window is not None else None)

    if options.dry_run:  # what the real run would send: the same rows, the same daily window
        result.planned = sum(1 for _ in campaign.messages(capped, test_to=options.test_to))
        if capped.reached and window is not None:
            result.held_back_by = window.limit
        return result
    try:
        hooks = JournalHooks(record, campaign.stage, progress, result)
        to_send: Iterable[Registrant]
        if options.test_to:
            listed = list(registrants)
            to_send, result.planned = listed, len(listed)
        else:
            to_send = capped
            result.planned = count_planned(report.scan.addresses, states, options)
            report.scan.forget_identities()  # counted and registered: free it for the run
            if window is not None and result.planned > window.left:
                result.planned = window.left
                if not window.left:  # nothing may go now: say so without connecting
                    result.stopped = limits.limit_reached(window, config.event.zone)
                    _record_stop(journal, campaign.stage, result.stopped)
                    return result
        progress.started(result.planned)

        dates = DateHeaders(config.event.zone)

        def envelopes() -> Iterator[transport.Envelope]:
            # Built for sending: the worker that built a message made its wire form too.
            for built in campaign.messages(to_send, test_to=options.test_to,
                                           expected=result.planned, wire=True):
                # Dated when it is handed over, not when it was built (before the question):
                # one copy, for the transport; the journal's hooks keep the rest.
                key = built.registrant.key
                hooks.in_flight[key] = built
                yield transport.Envelope(key=key, sender=config.sender.address,
                                         recipient=built.recipient,
                                         data=built.wire_dated(dates.at(wall_clock())),
                                         stuffed=True, ascii=built.ascii)

        delivery = await transport.deliver(envelopes(), smtp=config.smtp, sending=sending,
                                           password=password, hooks=hooks, stop=stop,
                                           clock=clock, sleep=sleep, wall_clock=wall_clock)
        result.stopped = delivery.stopped
        result.interrupted = delivery.interrupted
        if journal is not None:
            for key in delivery.deferred:  # tried, not delivered, no final outcome yet
                journal.mark_pending(campaign.stage, key)
            if capped.reached and window is not None and result.stopped is None \
                    and not result.interrupted:
                after = limits.daily_window(journal, window.limit, wall_clock())
                result.stopped = limits.limit_reached(after, config.event.zone)
            if not options.test_to:
                _record_stop(journal, campaign.stage, result.stopped)
        return result
    except InvitemailError as err:
        if not (result.sent or result.uncertain or result.failed):
            raise
        result.stopped = result.stopped or err
        return result
    finally:
        if journal is not None and options.test_to is None:
            with contextlib.suppress(InvitemailError):  # the error above says what is wrong
                counts = journal.counts(campaign.stage)
                left = {state.value: counts[state] - result.removed.get(state.value, 0)
                        for state in (State.PENDING, State.SENDING, State.FAILED,
                                      State.UNCERTAIN)}
                result.remaining = {state: number for state, number in left.items() if number}


def _record_stop(journal: Journal | None, template: str,
                 stopped: InvitemailError | None) -> None:
    """Keep why the run stopped for `status` when it was a quota, a blocked sender or the
    daily limit; forget an earlier one otherwise."""
    if journal is None:
        return
    if isinstance(stopped, transport.RelayStop | limits.DailyLimitReached):
        journal.record_stop(template, stopped.reason, stopped.until)
    else:
        journal.record_stop(template, None)


def removed_from_list(journal: Journal, template: str,
                      addresses: Iterable[str]) -> dict[str, State]:
    """The journal's registrants of ``template`` that lack the message and are not among
    ``addresses`` (the list as it is now): key -> state. They are never sent to."""
    listed = {registrant_key(address) for address in addresses}
    return {key: state for key, state in journal.states(template).items()
            if state is not State.SENT and key not in listed}


def count_planned(addresses: list[str], states: dict[str, State],
                   options: SendOptions) -> int:
    """How many messages this run will send (for the progress bar), without reading rows."""
    keys = (registrant_key(email) for email in addresses)
    wanted = sum(1 for key in keys
                 if (options.only is None or key in options.only)
                 and skip_for(states.get(key, State.PENDING), options) is None)
    return wanted if options.limit is None else min(wanted, options.limit)
