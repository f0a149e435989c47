"""What a send run records as it goes: its tally (:class:`SendResult`), where it writes
(:class:`Record`: the journal and the ledger), and :class:`JournalHooks`, which the
transport calls at each step of each message (delivery.py starts the run with them).

The journal is written from the hooks, so each state change is on record before the step
that depends on it: ``sending`` (the row's claim) before the message data goes out, in a
write of its own; a finished message's line (and its ledger line) with the others finished
in the same turn of the event loop, or with the next claim, whichever comes first.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from invitemail.campaign import Built, CheckReport
from invitemail.clock import utcnow
from invitemail.errors import InvitemailError
from invitemail.journal.ledger import Ledger
from invitemail.journal.store import Journal, State
from invitemail.send import transport


class Progress(Protocol):
    """What a front end learns while a run goes on (the CLI draws it)."""

    def started(self, total: int) -> None: ...
    def finished(self, key: str, state: str, reply: str) -> None: ...
    def retrying(self, key: str, reply: str, delay: float) -> None: ...


class Skip(enum.Enum):
    """Why a registrant is not sent to in this run; the value is the summary's words."""

    SENT = "already sent"
    FAILED = "failed before (--retry-failed sends them)"
    UNCERTAIN = "uncertain (--resend-uncertain sends them)"


@dataclass
class SendResult:
    """What a run did (the CLI's summary and exit code come from here)."""

    planned: int = 0
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped: Counter[Skip] = field(default_factory=Counter)
    recovered: int = 0
    retried: int = 0
    restored: int = 0  # journal rows rebuilt from the ledger
    reconciled: int = 0  # rows in flight or uncertain that the ledger knows were sent
    set_aside: Path | None = None  # where --new-journal or a rebuild put the old journal
    dry_run: bool = False
    test: bool = False
    stopped: InvitemailError | None = None
    interrupted: bool = False
    report: CheckReport | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    # After the run, the journal's registrants that still lack this template's message
    # (pending, failed or uncertain), this run's and earlier runs' alike.
    remaining: dict[str, int] = field(default_factory=dict)
    # The journal's registrants without the message that are no longer in the list, by
    # state: never sent to, and not ``remaining`` (they do not keep a run from finishing).
    removed: dict[str, int] = field(default_factory=dict)
    held_back_by: int | None = None  # a dry run: sending.daily_limit keeps some for later

    @property
    def complete(self) -> bool:
        """Every registrant has the message: nothing failed, nothing left for a rerun."""
        return not (self.failed or self.uncertain or self.stopped or self.interrupted
                    or any(self.remaining.values()))


@dataclass
class Record:
    """Where a run writes: the journal, and the ledger beside it (both None for a test)."""

    journal: Journal | None = None
    ledger: Ledger | None = None
    journal_id: str = ""
    claimable: tuple[State, ...] = (State.PENDING,)


# The transport's final states as the journal's (an enum's call by value costs a lookup in
# Python, for every message).
_JOURNAL_STATE = {state: State(state.value) for state in transport.State}


class JournalHooks:
    """Connects the transport's hooks to the journal, the ledger and the front end's
    progress."""

    def __init__(self, record: Record, template: str, progress: Progress,
                 result: SendResult) -> None:
        self.journal = record.journal
        self.record = record
        self.template = template
        self.progress = progress
        self.result = result
        self.in_flight: dict[str, Built] = {}
        # A finished message's lines (run log, ledger) go in one write with the others
        # finished in the same turn of the event loop, before it waits again.
        self.flush_due = False
        self.flush_failed: InvitemailError | None = None
        if self.journal is not None:  # fewer checkpoints: each one stops the run for 2 fsyncs
            self.journal.for_a_run()

    def _flush_soon(self) -> None:
        if self.flush_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a run's loop: now
            self._flush()
            return
        self.flush_due = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_due = False
        try:
            if self.journal is not None:
                self.journal.flush_log()
            if self.record.ledger is not None:
                self.record.ledger.flush()
        except InvitemailError as err:  # the next claim says it, and stops the run
            self.flush_failed = self.flush_failed or err

    def handing_over(self, envelope: transport.Envelope, attempt: int) -> None:
        if self.flush_failed is not None:
            raise self.flush_failed
        if self.journal is not None:  # the claim: ClaimError stops the run before the data
            built = self.in_flight[envelope.key]
            self.journal.mark_sending(self.template, envelope.key, built.message_id, attempt,
                                      calendar=built.calendar,
                                      claimable=self.record.claimable,
                                      variant=built.template if built.template != self.template
                                      else None)

    def finished(self, outcome: transport.Outcome) -> None:
        built = self.in_flight.pop(outcome.key, None)
        state = _JOURNAL_STATE[outcome.state]
        # Counted first: the message's fate is known whatever the journal can record.
        if state is State.SENT:
            self.result.sent += 1
        elif state is State.FAILED:
            self.result.failed += 1
            self.result.failures.append((built.recipient if built else outcome.key,
                                         outcome.reply))
        else:
            self.result.uncertain += 1
        try:
            if self.journal is not None:
                self.journal.mark_done(self.template, outcome.key, state, outcome.reply,
                                       outcome.attempts)
        finally:  # the ledger learns of it even when the journal's disk is full
            ledger = self.record.ledger
            if ledger is not None and built is not None and state is not State.FAILED:
                ledger.record(self.record.journal_id, self.template, outcome.key, state,
                              built.message_id,
                              self.journal.now_text() if self.journal is not None else
                              utcnow().isoformat(timespec="seconds"),
                              built.calendar if state is State.SENT else None, defer=True)
            self._flush_soon()
        self.progress.finished(outcome.key, state.value, outcome.reply)

    def retrying(self, envelope: transport.Envelope, reply: str, attempt: int,
                 delay: float) -> None:
        self.result.retried += 1
        if self.journal is not None:
            self.journal.mark_retrying(self.template, envelope.key, reply, attempt)
            self._flush_soon()
        self.progress.retrying(envelope.key, reply, delay)
