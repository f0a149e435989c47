"""A send run: checked messages -> transport -> journal, and what the run did.

The journal is written from the transport's hooks, so each state change is on disk before
the step that depends on it: ``sending`` before the message data goes out, ``sent`` before
that connection starts its next transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from invitemail import limits, transport
from invitemail.campaign import Built, Campaign, CheckReport
from invitemail.errors import InvitemailError
from invitemail.journal import Journal, State
from invitemail.registrants import Registrant, unique_registrants


class Progress(Protocol):
    """What a front end learns while a run goes on (the CLI draws it)."""

    def started(self, total: int) -> None: ...
    def finished(self, key: str, state: str, reply: str) -> None: ...
    def retrying(self, key: str, reply: str, delay: float) -> None: ...


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


@dataclass
class SendResult:
    """What a run did (the CLI's summary and exit code come from here)."""

    planned: int = 0
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped_sent: int = 0
    skipped_failed: int = 0
    skipped_uncertain: int = 0
    recovered: int = 0
    retried: int = 0
    dry_run: bool = False
    test: bool = False
    stopped: InvitemailError | None = None
    interrupted: bool = False
    report: CheckReport | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    # After the run, the journal's registrants that still lack this template's message
    # (pending, failed or uncertain), this run's and earlier runs' alike.
    remaining: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every registrant has the message: nothing failed, nothing left for a rerun."""
        return not (self.failed or self.uncertain or self.stopped or self.interrupted
                    or any(self.remaining.values()))


class _JournalHooks:
    """Connects the transport's hooks to the journal and the front end's progress."""

    def __init__(self, journal: Journal | None, template: str, progress: Progress,
                 result: SendResult) -> None:
        self.journal = journal
        self.template = template
        self.progress = progress
        self.result = result
        self.in_flight: dict[str, Built] = {}

    def handing_over(self, envelope: transport.Envelope, attempt: int) -> None:
        if self.journal is not None:
            built = self.in_flight[envelope.key]
            self.journal.mark_sending(self.template, envelope.key, built.message_id, attempt,
                                      calendar=built.calendar)

    def finished(self, outcome: transport.Outcome) -> None:
        built = self.in_flight.pop(outcome.key, None)
        state = State(outcome.state.value)
        if self.journal is not None:
            self.journal.mark_done(self.template, outcome.key, state, outcome.reply,
                                   outcome.attempts)
        if state is State.SENT:
            self.result.sent += 1
        elif state is State.FAILED:
            self.result.failed += 1
            self.result.failures.append((built.recipient if built else outcome.key,
                                         outcome.reply))
        else:
            self.result.uncertain += 1
        self.progress.finished(outcome.key, state.value, outcome.reply)

    def retrying(self, envelope: transport.Envelope, reply: str, attempt: int,
                 delay: float) -> None:
        self.result.retried += 1
        if self.journal is not None:
            self.journal.mark_retrying(self.template, envelope.key, reply, attempt)
        self.progress.retrying(envelope.key, reply, delay)


def _selected(campaign: Campaign, states: dict[str, State], options: SendOptions,
              result: SendResult) -> Iterator[Registrant]:
    """The registrants this run sends to: pending ones, and what the options add."""
    count = 0
    for registrant in unique_registrants(campaign.source):
        skip = _skip(states.get(registrant.key, State.PENDING), options)
        if skip is not None:
            setattr(result, skip, getattr(result, skip) + 1)
            continue
        if options.limit is not None and count >= options.limit:
            return
        count += 1
        yield registrant


def _skip(state: State, options: SendOptions) -> str | None:
    """Why a registrant in ``state`` is not sent to (the SendResult counter), or None."""
    if state is State.SENT:
        return "skipped_sent"
    if state is State.FAILED and not options.retry_failed:
        return "skipped_failed"
    if state is State.UNCERTAIN and not options.resend_uncertain:
        return "skipped_uncertain"
    return None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


async def send(campaign: Campaign, *, password: str | None, options: SendOptions,
               progress: Progress, stop: asyncio.Event | None = None,
               report: CheckReport | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
               wall_clock: Callable[[], dt.datetime] = _utcnow) -> SendResult:
    """Validate everything, then send through the transport, journaling every step.

    Raises an :class:`InvitemailError` when nothing can be sent (bad input, a template that
    fails). A relay that stops the run half way, or ``sending.daily_limit``, is reported in
    ``SendResult.stopped``. ``wall_clock`` is the time the journal records and the daily
    limit counts by.
    """
    result = SendResult(dry_run=options.dry_run, test=options.test_to is not None)
    if report is None:
        if not options.dry_run and options.test_to is None:
            campaign.start_workers()
        report = campaign.check()
    result.report = report
    campaign.require_valid(report, skip_invalid=options.skip_invalid)
    config = campaign.config
    sending = config.sending
    if options.concurrency is not None or options.rate is not None:
        sending = dataclasses.replace(
            sending, concurrency=options.concurrency or sending.concurrency,
            rate=options.rate if options.rate is not None else sending.rate)

    journal: Journal | None = None
    if options.test_to is not None:
        registrants: Iterable[Registrant] = itertools.islice(
            unique_registrants(campaign.source), options.limit or 1)
        states: dict[str, State] = {}
    else:
        journal = Journal.open(config.folder, create=not options.dry_run, clock=wall_clock)
        states = {}
        if journal is not None:
            if not options.dry_run:
                result.recovered = journal.recover()
                journal.register(campaign.template, ((email.lower(), email, line)
                                                     for email, line in report.scan.identities))
            states = journal.states(campaign.template, pending=False)  # absent = pending
        registrants = _selected(campaign, states, options, result)
    window = None
    if sending.daily_limit is not None and options.test_to is None:
        window = limits.daily_window(journal, sending.daily_limit, wall_clock())
    capped = _Capped(registrants, window.left if window is not None else None)

    try:
        if options.dry_run:
            result.planned = sum(1 for _ in campaign.messages(registrants,
                                                              test_to=options.test_to))
            return result
        hooks = _JournalHooks(journal, campaign.template, progress, result)
        to_send: Iterable[Registrant]
        if options.test_to:
            listed = list(registrants)
            to_send, result.planned = listed, len(listed)
        else:
            to_send = capped
            result.planned = _count_planned(report.scan.addresses, states, options)
            report.scan.forget_identities()  # counted and registered: free it for the run
            if window is not None and result.planned > window.left:
                result.planned = window.left
                if not window.left:  # nothing may go now: say so without connecting
                    result.stopped = limits.limit_reached(window, config.event.zone)
                    _record_stop(journal, campaign.template, result.stopped)
                    return result
        progress.started(result.planned)

        def envelopes() -> Iterator[transport.Envelope]:
            for built in campaign.messages(to_send, test_to=options.test_to,
                                           expected=result.planned):
                hooks.in_flight[built.registrant.key] = built
                yield transport.Envelope(key=built.registrant.key,
                                         sender=config.sender.address,
                                         recipient=built.recipient, data=built.data,
                                         crlf=True)  # message.build_message writes CRLF only

        delivery = await transport.deliver(envelopes(), smtp=config.smtp, sending=sending,
                                           password=password, hooks=hooks, stop=stop,
                                           clock=clock, sleep=sleep, wall_clock=wall_clock)
        result.stopped = delivery.stopped
        result.interrupted = delivery.interrupted
        if journal is not None:
            for key in delivery.deferred:  # tried, not delivered, no final outcome yet
                journal.mark_pending(campaign.template, key)
            if capped.reached and window is not None and result.stopped is None \
                    and not result.interrupted:
                after = limits.daily_window(journal, window.limit, wall_clock())
                result.stopped = limits.limit_reached(after, config.event.zone)
            if not options.test_to:
                _record_stop(journal, campaign.template, result.stopped)
        return result
    finally:
        if journal is not None:
            if not options.dry_run:
                counts = journal.counts(campaign.template)
                result.remaining = {state.value: counts[state] for state in
                                    (State.PENDING, State.SENDING, State.FAILED, State.UNCERTAIN)
                                    if counts[state]}
            journal.close()


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


def _count_planned(addresses: list[str], states: dict[str, State],
                   options: SendOptions) -> int:
    """How many messages this run will send (for the progress bar), without reading rows."""
    wanted = sum(1 for email in addresses
                 if _skip(states.get(email.lower(), State.PENDING), options) is None)
    return wanted if options.limit is None else min(wanted, options.limit)
