"""Delivery over SMTP: connection pool, rate limit, retries, and what each reply means.

The policy of a send run; the SMTP conversation itself is :mod:`invitemail.send.connection`, and
:mod:`invitemail.send.pipeline` when the relay offers PIPELINING; what each result means
for the run is :mod:`invitemail.send.run_state`. :func:`deliver` takes a lazy stream of
:class:`~invitemail.send.envelope.Envelope` (one recipient each) and reports one
:class:`~invitemail.send.outcomes.Outcome` per envelope through
:class:`~invitemail.send.outcomes.Hooks`, so the caller's journal can record every step as
it happens:

- ``sending.concurrency`` workers, each owning one SMTP connection that it reuses for many
  messages (RSET after a failed transaction, a new connection after a drop; pipelined, one
  round trip per message, when the relay offers it: a message's outcome may then come with
  the next message's transaction, and a worker sends the message waiting on its connection
  before it waits for anything), fed from one
  bounded buffer (:class:`~invitemail.send.feed.Feed`) that is filled from the caller's
  iterator as the workers need it.
- One shared pace (:class:`~invitemail.send.pace.RateLimiter`) keeps the run at or under
  ``sending.rate`` and finds the relay's own limit: a *sender-rate* refusal sets the pace
  just under the rate the relay was accepting, and the pace probes upward again while the
  relay accepts (:mod:`invitemail.send.pace` documents how).
- Every refusal is judged by :func:`invitemail.send.replies.classify` from its code, enhanced code,
  text and step, and handled by its class: *recipient-permanent* ``failed``;
  *recipient-temporary* and *transient* retried with exponential backoff and jitter, up to
  ``sending.max_attempts`` attempts; *sender-rate* slows the whole run down (the rate
  limiter's :meth:`RateLimiter.throttled`) and retries; *concurrency* closes that worker's
  connection (never the last one) and hands its message to another; *sender-quota* and
  *sender-blocked* stop the run with the rows not sent left pending
  (:class:`~invitemail.send.errors.QuotaReached`, :class:`~invitemail.send.errors.SenderBlocked`).
- A retry does not hold a worker. The refused message goes into the run's "later" queue
  (:class:`~invitemail.send.retries.RetryQueue`, a heap keyed by its not-before time on the
  injected ``clock``: now plus :func:`~invitemail.send.retries.retry_delay`, or the relay's "try
  again after" if that is later) and its worker goes on with the next message. Each worker
  takes, in this order: a message handed back by a worker that closed its connection, the
  earliest retry that is due, a new message. A worker with no new messages left does not
  end while retries wait or other workers may still add one: one such worker sleeps (the
  injected ``sleep``) until the earliest retry is due, or until a new one comes; the others
  wait for it or for any worker to finish a message. A worker pauses only when its
  connection is gone (the relay may be down or restarting: it waits until the message's
  retry is due before connecting again) or when more attempts failed in a row than there
  are workers and than :data:`SCATTERED` (the relay refuses everything for now: it waits
  :func:`~invitemail.send.retries.backoff_delay` of the excess, 1-2 s, then 2-4 s, ...), so the
  run as a whole backs off from a relay in trouble instead of racing through the messages
  and reaching ``sending.max_consecutive_failures`` in a moment, while scattered failures
  cost no worker any time.
  :meth:`Hooks.retrying` is still called once per retry with its delay; a halt (stop event,
  quota, too many failures) ends every wait, and the messages still waiting for a retry are
  reported in :attr:`DeliveryReport.deferred`, pending again.
- A connection that breaks *after* the data was handed over and before the final reply is
  ``uncertain``: the relay may have delivered it, so it is never retried here. Before the
  hand-over it is *transient*.
- An authentication failure, ``sending.max_consecutive_failures`` failed attempts in a row,
  a first connection that cannot be made at all, a quota or a blocked sender stop the run:
  workers finish the transaction they are in and send nothing more;
  :attr:`DeliveryReport.stopped` says why.

All timing decisions (retry times, rate, throttling pauses) use the injected ``clock`` and
``sleep``, and a reply's "try again after <time>" is read against ``wall_clock``, so tests
run on a fake clock; network timeouts are real (``smtp.timeout``). The password never
appears in any text this module produces, nor do OAuth2 access tokens: with
``smtp.auth = "xoauth2"``, ``password`` is a :class:`~invitemail.auth.credentials.TokenCredential`
that each connection asks for the current token (:mod:`invitemail.auth.xoauth2`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

from invitemail.auth.credentials import TokenCredential
from invitemail.clock import utcnow as _utcnow
from invitemail.inputs.config import Sending, Smtp
from invitemail.send.connection import Connection
from invitemail.send.envelope import Envelope
from invitemail.send.errors import (
    AuthenticationError,
    ConnectError,
    InsecureAuthError,
    QuotaReached,
    RelayStop,
    SenderBlocked,
    TooManyFailures,
    TransportError,
)
from invitemail.send.feed import Feed
from invitemail.send.login import check_credentials
from invitemail.send.outcomes import DeliveryReport, Hooks, NoHooks, Outcome, State
from invitemail.send.pipeline import Line
from invitemail.send.run_state import RunState
from invitemail.send.tls import make_tls_context

# deliver()'s interface, defined in the stage's modules (envelope, outcomes, errors) and
# named here too, so a caller of the transport needs no other import.
__all__ = [
    "QUEUE_PER_WORKER",
    "AuthenticationError",
    "ConnectError",
    "DeliveryReport",
    "Envelope",
    "Hooks",
    "InsecureAuthError",
    "NoHooks",
    "Outcome",
    "QuotaReached",
    "RelayStop",
    "SenderBlocked",
    "State",
    "TooManyFailures",
    "TransportError",
    "check_login",
    "deliver",
]

QUEUE_PER_WORKER: int = 4  # envelopes waiting in the queue per worker


async def deliver(
    envelopes: Iterable[Envelope],
    *,
    smtp: Smtp,
    sending: Sending,
    password: str | TokenCredential | None,
    hooks: Hooks,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    stop: asyncio.Event | None = None,
    local_hostname: str | None = None,
    wall_clock: Callable[[], dt.datetime] | None = None,
) -> DeliveryReport:
    """Send every envelope; report each outcome through ``hooks`` as it is known.

    Problems with the settings themselves are raised before any connection is made:
    :class:`~invitemail.send.errors.InsecureAuthError`,
    :class:`~invitemail.send.errors.AuthenticationError` when ``smtp.username`` is set but
    ``password`` is None, :class:`~invitemail.send.errors.ConnectError` for an unusable
    ``smtp.ca_file``. Problems met while running (login refused, too many failures, the relay
    unreachable) end the run early and are returned in
    :attr:`~invitemail.send.outcomes.DeliveryReport.stopped`. An exception raised by a hook or
    by the ``envelopes`` iterator stops the run too (in-flight transactions finish) and is
    re-raised. ``wall_clock`` (aware datetimes) reads a reply's "try again after <time>".
    """
    check_credentials(smtp, password)
    tls_context = make_tls_context(smtp) if smtp.security != "none" else None
    if local_hostname is None:
        # aiosmtplib would look the name up again for every connection.
        local_hostname = await asyncio.to_thread(socket.getfqdn)
    run = _Run(
        smtp=smtp,
        sending=sending,
        password=password,
        hooks=hooks,
        clock=clock,
        sleep=sleep,
        rng=rng if rng is not None else random.Random(),
        stop=stop,
        local_hostname=local_hostname,
        tls_context=tls_context,
        wall_clock=wall_clock or _utcnow,
    )
    return await run.execute(envelopes)


async def check_login(smtp: Smtp, password: str | TokenCredential | None, *,
                      local_hostname: str | None = None) -> None:
    """Connect to the relay, log in and quit, sending nothing: a password typed at a prompt
    is tried before a run starts, so a typing error can be corrected.

    Raises :class:`AuthenticationError` when the relay refuses the login (and what
    :func:`deliver` raises before connecting). Any other problem (the relay unreachable, a
    temporary refusal) is left for the run to meet and report.
    """
    check_credentials(smtp, password)
    if smtp.username is None:
        return
    if local_hostname is None:
        local_hostname = await asyncio.to_thread(socket.getfqdn)
    run = _Run(smtp=smtp, sending=Sending(concurrency=1), password=password,
               hooks=NoHooks(), clock=time.monotonic, sleep=asyncio.sleep,
               rng=random.Random(), stop=None, local_hostname=local_hostname,
               tls_context=make_tls_context(smtp) if smtp.security != "none" else None,
               wall_clock=_utcnow)
    result = await Connection(run).check_login()
    if result is not None and isinstance(result.error, AuthenticationError):
        raise result.error


async def _first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until one of ``awaitables`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()



class _Run(RunState):
    """One :func:`deliver` call: the workers, the queue that feeds them, and their waits."""

    # -- running -------------------------------------------------------------------------

    async def execute(self, envelopes: Iterable[Envelope]) -> DeliveryReport:
        workers = self.workers = max(1, self.sending.concurrency)
        queue: Feed[Envelope | None] = Feed(QUEUE_PER_WORKER * workers)
        producer = asyncio.create_task(self._produce(envelopes, queue, workers))
        helpers = [asyncio.create_task(self._on_halt(producer, queue, workers))]
        if self.stop is not None:
            helpers.append(asyncio.create_task(self._watch(self.stop)))
        tasks = [asyncio.create_task(self._work(queue)) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            everything = [producer, *helpers, *tasks]
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
        if self.stop is not None and self.stop.is_set():
            self.report.interrupted = True
        # Handed back or waiting for a retry, then the run stopped before anyone took them.
        self.report.deferred.extend(envelope.key for envelope, _ in self.requeued)
        self.report.deferred.extend(envelope.key for envelope, _ in self.later.drain())
        if self.error is not None:
            raise self.error
        return self.report

    async def _produce(self, envelopes: Iterable[Envelope],
                       queue: Feed[Envelope | None], workers: int) -> None:
        try:
            for envelope in envelopes:  # lazily: the queue is bounded
                if self.stopping:
                    return
                await queue.put(envelope)
        except Exception as error:
            self._fail(error)
            return
        for _ in range(workers):
            await queue.put(None)

    async def _on_halt(self, producer: asyncio.Task[None],
                       queue: Feed[Envelope | None], workers: int) -> None:
        await self.halted.wait()
        producer.cancel()
        while not queue.empty():  # taken from the iterator but never started: not reported
            queue.get_nowait()
        for _ in range(workers):
            queue.put_nowait(None)

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.report.interrupted = True
        self.halted.set()

    async def _work(self, queue: Feed[Envelope | None]) -> None:
        connection = Line(self)
        drained = False  # this worker took its end-of-queue marker
        try:
            while not self.stopping:
                job = self._take()
                if connection.in_flight and job is None and (drained or queue.empty()):
                    # About to wait: the message whose data waits for a next one goes now.
                    if not await self._settle(connection):
                        return
                    continue
                if job is None and not drained:
                    item = await queue.get()
                    if item is None:
                        drained = True
                        continue
                    job = item, 0
                if job is None:
                    if not await self._wait_for_work():
                        return  # nothing left to do, or the run halted
                    continue
                self.busy += 1
                try:
                    pause = await self._deliver_one(connection, *job)
                finally:
                    self.busy -= 1
                    self._wake()
                if pause is None:
                    return  # this worker gave up its connection
                if pause > 0 and not await self.unless_halted(self.sleep(pause)):
                    return
        except Exception as error:  # a hook failed (or a bug): stop, let the others finish
            self._fail(error)
        finally:
            try:  # the run stops: a message waiting for its data stays pending
                self._judge_all(connection, connection.abandon())
            except Exception as error:
                self._fail(error)
            finally:
                self.workers -= 1
                self._wake()
                await connection.close()

    def _take(self) -> tuple[Envelope, int] | None:
        """A handed-back envelope, else the earliest retry that is due, else None."""
        if self.requeued:
            return self.requeued.popleft()
        return self.later.pop_due(self.clock())

    async def _wait_for_work(self) -> bool:
        """For a worker with no new envelopes left: wait until a retry is due or another
        worker may have left work (True), or nothing can come any more or the run halted
        (False). One waiting worker sleeps until the earliest retry; the others wait for
        it (or anyone) to say that something changed."""
        earliest = self.later.earliest()
        if earliest is None and not self.busy:
            return False
        changed = self.changed
        self.waiting += 1
        try:
            if earliest is not None and not self.timer:
                self.timer = True
                try:
                    await self.unless_halted(
                        _first_of(self.sleep(max(0.0, earliest - self.clock())),
                                  changed.wait()))
                finally:
                    self.timer = False
                self._wake()  # the others may take a retry now too
            else:
                await self.unless_halted(changed.wait())
        finally:
            self.waiting -= 1
        return not self.stopping

    def _wake(self) -> None:
        """Tell the waiting workers that there may be something to do (or nothing more).
        With none waiting there is nobody to tell: a worker looks before it waits."""
        if self.waiting:
            self.changed.set()
            self.changed = asyncio.Event()

    # -- one envelope --------------------------------------------------------------------

    async def _deliver_one(self, connection: Line, envelope: Envelope,
                           tried: int = 0) -> float | None:
        """Try ``envelope`` once (``tried``: attempts already made); a retry goes into
        :attr:`later`. None when this worker gave up its connection and must end; else the
        seconds it should wait before its next transaction (0 mostly; see
        :meth:`_schedule`). On a pipelining connection the outcome of the message before
        may come with it, and this one's may come with the next (:mod:`invitemail.send.pipeline`).
        """
        if connection.in_flight and not self.stopping and not self.turn_now():
            # Not this one's turn yet: the waiting message goes on its own first (then
            # attempt waits for the turn).
            pause = self._judge_all(connection, await connection.settle())
            if pause != 0:  # this worker pauses or ends: another one may take it first
                self.requeued.append((envelope, tried))
                return pause
        pause = self._judge_all(connection, await connection.attempt(envelope, tried + 1))
        if connection.in_flight and (pause != 0 or self.stopping):
            # This worker pauses or ends: the message waiting for its data goes now, or,
            # when the run stops, not at all (it was not handed over: pending).
            more = connection.abandon() if self.stopping else await connection.settle()
            later = self._judge_all(connection, more)
            pause = None if pause is None or later is None else max(pause, later)
        return pause

    async def _settle(self, connection: Line) -> bool:
        """The message waiting on ``connection`` for a next one goes alone; False when this
        worker must end."""
        self.busy += 1
        try:
            pause = self._judge_all(connection, await connection.settle())
        finally:
            self.busy -= 1
            self._wake()
        if pause is None:
            return False
        return pause <= 0 or await self.unless_halted(self.sleep(pause))

