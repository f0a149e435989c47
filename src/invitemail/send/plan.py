"""The send sequence, once: prepare a plan, let the front end ask, then run it.

:func:`prepare_send` does everything before the question: it refuses a send that a
cancellation stops (reschedule.py), takes the event folder's lock for a run that writes the
journal (folderlock.py), makes sure the journal can be trusted (safeguard.py; rebuilt or
started afresh first when the options say so), starts the worker processes, checks every
registrant and message, refuses rows with problems unless ``skip_invalid``, and counts what
the run would send as the journal stands. The front end shows that and asks; then
:meth:`SendPlan.run` sends (delivery.py) and :meth:`SendPlan.close` lets go of the lock and
the journal. A plan not run sends nothing and writes no journal row.

    with prepare_send(campaign, options) as plan:
        if confirmed(plan):  # plan.planned, plan.messages, plan.changed() for the question
            result = plan.run(password, progress=progress)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType

from invitemail.auth.credentials import TokenCredential
from invitemail.campaign import UPDATE_TEMPLATE, Campaign, CheckReport
from invitemail.errors import InvitemailError
from invitemail.inputs.config import EventConfig, Smtp
from invitemail.inputs.registrants import unique_registrants
from invitemail.journal.folderlock import FolderLock
from invitemail.journal.safeguard import Prepared, diagnose
from invitemail.journal.store import Journal, JournalError
from invitemail.send.delivery import (
    Progress,
    SendOptions,
    SendResult,
    count_planned,
    open_record,
    prepare_journal,
    run_delivery,
    utcnow,
)
from invitemail.send.reschedule import prepare_reschedule, record_reschedule, refuse_if_cancelled
from invitemail.send.transport import AuthenticationError, check_login


class SendPlan:
    """A send made ready, not yet run: what it would send, and what it holds (the folder's
    lock, a journal rebuilt before the check) until :meth:`close`."""

    def __init__(self, campaign: Campaign, options: SendOptions, *,
                 lock: FolderLock | None, owns_lock: bool,
                 wall_clock: Callable[[], dt.datetime]) -> None:
        self.campaign = campaign
        self.options = options
        self.lock = lock
        self.owns_lock = owns_lock
        self.wall_clock = wall_clock
        self.prepared: Prepared | None = None
        self.report: CheckReport | None = None
        self.planned = 0  # what the run would send now (the question's number)

    # -- what it would send, for the question --------------------------------------------

    @property
    def checked(self) -> CheckReport:
        """The check of every registrant and message (prepare_send did it)."""
        if self.report is None:
            raise AssertionError("the plan was not prepared")
        return self.report

    @property
    def messages(self) -> int:
        """How many messages the list makes (all of them, sent before or not)."""
        return self.checked.messages

    @property
    def variants(self) -> Counter[str]:
        """A follow-up's messages by the template each gets (thanks, missed)."""
        return self.checked.variants if self.campaign.followup is not None else Counter()

    def changed(self) -> list[str]:
        """For an update: the fields of the calendar entry that changed since the
        registrants' last message (the first registrant's, as the question says)."""
        campaign = self.campaign
        if campaign.template != UPDATE_TEMPLATE:
            return []
        first = next(iter(unique_registrants(campaign.source)), None)
        if first is None:
            return []
        previous = campaign.history.get(first.key) or campaign.latest
        return [str(change["field"]) for change in campaign.changes(first, previous)]

    # -- the run ---------------------------------------------------------------------------

    async def run_async(self, password: str | TokenCredential | None, *, progress: Progress,
                        stop: asyncio.Event | None = None,
                        clock: Callable[[], float] = time.monotonic,
                        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
                        ) -> SendResult:
        """Send through the transport, journaling every step. Raises an
        :class:`InvitemailError` when nothing can be sent (a journal that cannot be trusted
        or written); what stops the run half way (the relay, ``sending.daily_limit``, a full
        disk) is in ``SendResult.stopped``."""
        campaign, options, report = self.campaign, self.options, self.checked
        result = SendResult(dry_run=options.dry_run, test=options.test_to is not None,
                            report=report)
        try:
            if self.prepared is None:
                self.prepared = prepare_journal(campaign, options, clock=self.wall_clock)
                if options.test_to is None:  # in the journal as it stands now
                    refuse_if_cancelled(campaign, reschedule=options.reschedule)
            record = open_record(campaign, report, options, result, self.prepared)
            return await run_delivery(campaign, report, record, password=password,
                                      options=options, progress=progress, result=result,
                                      stop=stop, clock=clock, sleep=sleep,
                                      wall_clock=self.wall_clock)
        finally:  # the journal is let go of once the run is over; the lock at close()
            self._close_journal()

    def run(self, password: str | TokenCredential | None, *, progress: Progress,
            stop_on_signals: bool = True) -> SendResult:
        """:meth:`run_async` in a loop of its own. ``stop_on_signals``: Ctrl-C and SIGTERM
        stop the run (messages in flight finish or are marked uncertain)."""

        async def run() -> SendResult:
            stop = asyncio.Event()
            if stop_on_signals:
                loop = asyncio.get_running_loop()
                try:
                    loop.add_signal_handler(signal.SIGINT, stop.set)
                    loop.add_signal_handler(signal.SIGTERM, stop.set)
                except (NotImplementedError, RuntimeError):  # not the main thread, Windows
                    pass
            return await self.run_async(password, progress=progress, stop=stop)

        return asyncio.run(run())

    def record_reschedule(self, result: SendResult) -> bool:
        """After a reschedule run: mark the event rescheduled when updates went out;
        whether it did now."""
        options = self.options
        if not options.reschedule or options.dry_run or options.test_to is not None:
            return False
        return record_reschedule(self.campaign, result.sent, self.campaign.now)

    def close(self) -> None:
        """Let go of the journal and, when the plan took it, the folder's lock."""
        try:
            self._close_journal()
        finally:
            if self.lock is not None and self.owns_lock:
                self.lock.release()
                self.lock = None

    def _close_journal(self) -> None:
        if self.prepared is not None:
            prepared, self.prepared = self.prepared, None
            prepared.close()

    def __enter__(self) -> SendPlan:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def prepare_send(campaign: Campaign, options: SendOptions, *, lock: FolderLock | None = None,
                 wall_clock: Callable[[], dt.datetime] = utcnow) -> SendPlan:
    """Everything before the question (the module's docstring says what, in order).

    ``lock``: the folder's lock when the caller holds it already (`send --due`); else a run
    that writes the journal takes it here (FolderBusy when another run has it) and the
    plan releases it on :meth:`SendPlan.close`. ``options.only`` is set here for a
    reschedule. Raises an :class:`InvitemailError` when nothing can be sent: a cancelled
    event, bad input, a template that fails, a journal that cannot be trusted."""
    writes = not options.dry_run and options.test_to is None
    if options.test_to is None:  # before any work: nothing after a cancellation
        refuse_if_cancelled(campaign, reschedule=options.reschedule)
        if options.reschedule and options.only is None:
            options.only = prepare_reschedule(campaign)
    owns_lock = lock is None and writes
    if owns_lock:  # at once: a second run stops before any work
        lock = FolderLock.acquire(campaign.config.folder)
    plan = SendPlan(campaign, options, lock=lock, owns_lock=owns_lock, wall_clock=wall_clock)
    try:
        _prepare(plan)
    except BaseException:
        plan.close()
        raise
    return plan


def _prepare(plan: SendPlan) -> None:
    campaign, options = plan.campaign, plan.options
    config = campaign.config
    # Before the long check and the question: a journal that cannot be trusted stops here,
    # and one to rebuild is rebuilt (the messages are built with its calendars).
    if options.restore_journal or options.new_journal:
        plan.prepared = prepare_journal(campaign, options, clock=plan.wall_clock)
        if options.test_to is None:  # the rebuilt journal may know of a cancellation
            refuse_if_cancelled(campaign, reschedule=options.reschedule)
    elif plan.lock is not None and options.test_to is None and not options.dry_run:
        problem = diagnose(config.folder, config.event.uid)
        if problem is not None:
            raise problem
    if not options.dry_run and options.test_to is None:
        campaign.start_workers()
    report = campaign.check()
    campaign.require_valid(report, skip_invalid=options.skip_invalid)  # every problem
    plan.report = report
    if options.test_to is not None:
        plan.planned = min(options.limit or 1, report.messages)
    else:
        plan.planned = _planned_now(campaign, options, report)


def _planned_now(campaign: Campaign, options: SendOptions, report: CheckReport) -> int:
    """How many messages the run would send as the journal stands (read only): the rows
    that already have the message, or wait for a rerun option, aside."""
    try:
        journal = Journal.open(campaign.config.folder, create=False)
    except JournalError:
        return report.messages  # the run itself says what is wrong with it
    if journal is None:
        return min(report.messages, options.limit or report.messages)
    with journal:
        states = journal.states(campaign.stage, pending=False)
    return count_planned(report.scan.addresses, states, options)


async def send(campaign: Campaign, *, password: str | TokenCredential | None,
               options: SendOptions, progress: Progress, stop: asyncio.Event | None = None,
               lock: FolderLock | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
               wall_clock: Callable[[], dt.datetime] = utcnow) -> SendResult:
    """Prepare and run without a question: the sequence in one call, for a caller that
    asks nobody (a test, a script)."""
    with prepare_send(campaign, options, lock=lock, wall_clock=wall_clock) as plan:
        return await plan.run_async(password, progress=progress, stop=stop, clock=clock,
                                    sleep=sleep)


# -- the password or the token, before anything is sent -------------------------------------


def credential(config: EventConfig) -> TokenCredential:
    """The access token's source for smtp.auth = "xoauth2", tried once (nothing is sent
    with a login that does not work): raises when no token can be had (no login, an
    expired or revoked one, a failing token_command)."""
    from invitemail.auth.oauth import credential_for

    found = credential_for(config.smtp, config.path,
                           login_command=f"invitemail login {config.folder}")
    found.fetch_now()
    return found


def login_refused(smtp: Smtp, password: str) -> InvitemailError | None:
    """Log in with ``password`` and quit, sending nothing: the relay's refusal, or None when
    it took the password. Anything else wrong with the relay is left for the run to meet."""
    try:
        asyncio.run(check_login(smtp, password))
    except AuthenticationError as err:
        return err
    return None



def test_recipient(config: EventConfig, address: str) -> str:
    """--test-to's address, normalized; ``.test`` and the like only through a local test
    server. Raises ValueError (AddressError) saying why it cannot be used."""
    from invitemail.inputs.addresses import is_loopback_host, normalize_address

    return normalize_address(address, local_test=is_loopback_host(config.smtp.host))
