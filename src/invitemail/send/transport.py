"""Delivery over SMTP: connection pool, rate limit, retries, and what each reply means.

The policy of a send run; the SMTP conversation itself is :mod:`invitemail.send.connection`, and
:mod:`invitemail.send.pipeline` when the relay offers PIPELINING (with
:mod:`invitemail.send.smtp_adapter`, the only modules that import aiosmtplib). :func:`deliver`
takes a lazy stream of :class:`Envelope` (one recipient each) and reports one
:class:`Outcome` per envelope through :class:`Hooks`, so the caller's journal can record
every step as it happens:

- ``sending.concurrency`` workers, each owning one SMTP connection that it reuses for many
  messages (RSET after a failed transaction, a new connection after a drop; pipelined, one
  round trip per message, when the relay offers it: a message's outcome may then come with
  the next message's transaction, and a worker sends the message waiting on its connection
  before it waits for anything), fed from one
  bounded queue that is filled from the caller's iterator as the workers need it.
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
  (:class:`QuotaReached`, :class:`SenderBlocked`).
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
import enum
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from invitemail.auth.credentials import TokenCredential
from invitemail.inputs.config import Sending, Smtp
from invitemail.send.connection import (
    NETWORK,
    AuthenticationError,
    ConnectError,
    Connection,
    Envelope,
    Kind,
    Result,
    TransportError,
    dot_stuff,
)
from invitemail.send.pace import RateLimiter
from invitemail.send.pipeline import Done, Line
from invitemail.send.redaction import clean_reply, redact
from invitemail.send.replies import ReplyClass, Step, Verdict, classify
from invitemail.send.retries import RetryQueue, backoff_delay, retry_delay

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "DeliveryReport",
    "Envelope",
    "Hooks",
    "InsecureAuthError",
    "Outcome",
    "QuotaReached",
    "RateLimiter",
    "RelayStop",
    "SenderBlocked",
    "State",
    "TooManyFailures",
    "TransportError",
    "backoff_delay",
    "check_login",
    "deliver",
    "dot_stuff",
    "format_reply",
    "make_tls_context",
    "redact",
]

QUEUE_PER_WORKER: int = 4  # envelopes waiting in the queue per worker
# Failed attempts in a row that random, scattered failures explain (at 20% failing, four
# in a row happen once in 600 attempts); more than this, or than there are workers, and
# each worker waits out its retry's delay: the relay refuses everything for now.
SCATTERED: int = 3


# -- the interface ---------------------------------------------------------------------------


class State(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final word on one envelope."""

    key: str
    state: State
    reply: str  # the relay's last reply, or a sentence for a network failure
    attempts: int


class Hooks(Protocol):
    """What the caller (the journal) hears, synchronously, from the workers."""

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        """Right before DATA, after MAIL FROM and RCPT TO were accepted (pipelined: after
        the 354, right before the write that carries the data).

        Make the journal row ``sending`` durable here: from now on a crash leaves it uncertain.
        """

    def finished(self, outcome: Outcome) -> None:
        """The final outcome of one envelope, before its worker starts another transaction."""

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        """Attempt number ``attempt`` failed for now (``reply`` says why); the envelope is
        tried again after ``delay`` seconds."""


class InsecureAuthError(TransportError):
    """AUTH over a plaintext connection without ``smtp.allow_insecure_auth = true``."""


class TooManyFailures(TransportError):
    """``sending.max_consecutive_failures`` attempts failed in a row."""

    def __init__(self, message: str, *, reply: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reply = reply


class RelayStop(TransportError):
    """The relay refuses every message for now: the run stops, the rows not sent stay
    pending. ``reason`` names what (``"Gmail daily sending limit (550 5.4.5 ...)"``) and
    ``until`` is when the relay said to try again, if it did."""

    def __init__(self, message: str, *, reason: str, until: dt.datetime | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.until = until


class QuotaReached(RelayStop):
    """A sender-wide quota (daily limit, credits) is used up."""


class SenderBlocked(RelayStop):
    """The relay will not take mail from this sender until someone acts."""


@dataclass
class DeliveryReport:
    """What one :func:`deliver` run did."""

    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    retried: int = 0  # retry events (one per :meth:`Hooks.retrying` call)
    connections: int = 0  # connections opened (the relay answered the greeting)
    stopped: TransportError | None = None  # why the run stopped early, or None
    interrupted: bool = False  # the stop event was set
    throttled: int = 0  # sender-rate replies that slowed the whole run down
    connections_dropped: int = 0  # connections given up on a "too many connections" reply
    # Envelopes that were tried but had no final outcome when the run stopped early: each
    # attempt ended in a temporary refusal or failed before the data was handed over, so none
    # was delivered. No ``finished`` call was made for them; put them back to pending.
    deferred: list[str] = field(default_factory=list)


# -- pure helpers ----------------------------------------------------------------------------


def format_reply(code: int, message: str, secret: str | None = None) -> str:
    """``550``, ``"5.1.1 <x@y>:\\nuser unknown"`` -> ``"550 5.1.1 <x@y>: user unknown"``.

    The text is cleaned as :func:`~invitemail.send.redaction.clean_reply` says: ``secret`` (the
    password) and its base64 forms redacted before anything else, terminal escape sequences
    and control characters taken out. aiosmtplib gives code -1 for a reply that is not SMTP
    at all (garbled, or a line too long): then the text alone, shortened, says what came.
    """
    if not 100 <= code <= 599:
        return clean_reply(message, secret, limit=120) or "an empty reply"
    text = clean_reply(message, secret)
    return f"{code} {text}" if text else str(code)


def make_tls_context(smtp: Smtp) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only ``smtp.ca_file`` when set."""
    if smtp.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(smtp.ca_file))
    except (OSError, ValueError) as err:
        raise ConnectError(
            f"{smtp.where}: smtp.ca_file {smtp.ca_file} cannot be used: {err}",
            hint="point smtp.ca_file to a PEM file holding the CA certificate",
        ) from None


# -- delivery --------------------------------------------------------------------------------


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
    :class:`InsecureAuthError`, :class:`AuthenticationError` when ``smtp.username`` is set
    but ``password`` is None, :class:`ConnectError` for an unusable ``smtp.ca_file``. Problems
    met while running (login refused, too many failures, the relay unreachable) end the run
    early and are returned in :attr:`DeliveryReport.stopped`. An exception raised by a hook or
    by the ``envelopes`` iterator stops the run too (in-flight transactions finish) and is
    re-raised. ``wall_clock`` (aware datetimes) reads a reply's "try again after <time>".
    """
    _check_credentials(smtp, password)
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


class NoHooks:
    """Hooks that record nothing: a run that sends nothing (:func:`check_login`), or a
    caller that only wants the report (the benchmark)."""

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        pass

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        pass


async def check_login(smtp: Smtp, password: str | TokenCredential | None, *,
                      local_hostname: str | None = None) -> None:
    """Connect to the relay, log in and quit, sending nothing: a password typed at a prompt
    is tried before a run starts, so a typing error can be corrected.

    Raises :class:`AuthenticationError` when the relay refuses the login (and what
    :func:`deliver` raises before connecting). Any other problem (the relay unreachable, a
    temporary refusal) is left for the run to meet and report.
    """
    _check_credentials(smtp, password)
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


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_credentials(smtp: Smtp, password: str | TokenCredential | None) -> None:
    if smtp.username is None:
        return
    what = "access token" if smtp.auth.xoauth2 else "password"
    if smtp.security == "none" and not smtp.allow_insecure_auth:
        raise InsecureAuthError(
            f"{smtp.where}: refusing to send the {what} of {smtp.username!r} over an "
            "unencrypted connection (smtp.security is \"none\")",
            hint='use smtp.security = "starttls" or "tls"; only on a network you trust, '
            "set smtp.allow_insecure_auth = true",
        )
    if smtp.auth.xoauth2 != isinstance(password, TokenCredential):
        given = "an access token" if isinstance(password, TokenCredential) else "no access token"
        raise AuthenticationError(
            f"{smtp.where}: smtp.auth is {smtp.auth.method!r}, and {given} was given for user "
            f"{smtp.username!r}", hint="this is a bug in the caller: report it")
    if isinstance(password, TokenCredential):
        return
    if password is None:
        raise AuthenticationError(
            f"{smtp.where}: no password was given for user {smtp.username!r}",
            hint="set INVITEMAIL_SMTP_PASSWORD, or run in a terminal to be asked for it",
        )
    try:
        password.encode("utf-8")  # what AUTH sends
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by os.environ as surrogates
        raise AuthenticationError(
            f"{smtp.where}: the password for user {smtp.username!r} is not valid UTF-8 text "
            "(INVITEMAIL_SMTP_PASSWORD holds bytes in another encoding)",
            hint="set INVITEMAIL_SMTP_PASSWORD to the password encoded as UTF-8 (check the "
            "encoding of the script or file that sets it), or unset it to be asked for it",
        ) from None


class _Run:
    """The shared state of one :func:`deliver` call."""

    def __init__(
        self,
        *,
        smtp: Smtp,
        sending: Sending,
        password: str | TokenCredential | None,
        hooks: Hooks,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        stop: asyncio.Event | None,
        local_hostname: str,
        tls_context: ssl.SSLContext | None,
        wall_clock: Callable[[], dt.datetime],
    ) -> None:
        self.smtp = smtp
        self.sending = sending
        self.credential = password if isinstance(password, TokenCredential) else None
        self.password = password if isinstance(password, str) else None
        self.hooks = hooks
        self.sleep = sleep
        self.rng = rng
        self.stop = stop
        self.local_hostname = local_hostname
        self.tls_context = tls_context
        self.wall_clock = wall_clock
        self.clock = clock
        self.limiter = RateLimiter(sending.rate, clock=clock, sleep=sleep)
        self.report = DeliveryReport()
        self.halted = asyncio.Event()
        self.consecutive_failures = 0
        self.connected_once = False
        self.error: Exception | None = None  # from a hook or the iterator; re-raised
        # Envelopes whose worker gave up its connection ("too many connections"), with the
        # attempts made: the other workers take them before anything new.
        self.requeued: deque[tuple[Envelope, int]] = deque()
        # Envelopes waiting for their retry, with the attempts made, by not-before time.
        self.later: RetryQueue[tuple[Envelope, int]] = RetryQueue()
        self.workers = 0  # workers still running
        self.busy = 0  # workers trying an envelope right now
        self.timer = False  # a drained worker is sleeping until the earliest retry is due
        self.changed = asyncio.Event()  # set (and replaced) when there may be work again

    # -- running -------------------------------------------------------------------------

    async def execute(self, envelopes: Iterable[Envelope]) -> DeliveryReport:
        workers = self.workers = max(1, self.sending.concurrency)
        queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=QUEUE_PER_WORKER * workers)
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
                       queue: asyncio.Queue[Envelope | None], workers: int) -> None:
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
                       queue: asyncio.Queue[Envelope | None], workers: int) -> None:
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

    async def _work(self, queue: asyncio.Queue[Envelope | None]) -> None:
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
        if earliest is not None and not self.timer:
            self.timer = True
            try:
                await self.unless_halted(
                    _first_of(self.sleep(max(0.0, earliest - self.clock())), changed.wait()))
            finally:
                self.timer = False
            self._wake()  # the others may take a retry now too
        else:
            await self.unless_halted(changed.wait())
        return not self.stopping

    def _wake(self) -> None:
        """Tell the waiting workers that there may be something to do (or nothing more)."""
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """No new transaction may start: the run halted, or the stop event is set (the
        watcher that turns the event into a halt may not have run yet)."""
        return self.halted.is_set() or (self.stop is not None and self.stop.is_set())

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.halted.set()

    def abort(self, error: TransportError) -> None:
        if self.report.stopped is None:
            self.report.stopped = error
        self.halted.set()

    async def unless_halted(self, awaitable: Awaitable[object]) -> bool:
        """Await ``awaitable`` unless the run halts first; True when it completed."""
        task = asyncio.ensure_future(awaitable)
        halt = asyncio.ensure_future(self.halted.wait())
        try:
            await asyncio.wait((task, halt), return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            return False
        task.result()  # its exception, if any
        return not self.stopping

    def turn_now(self) -> bool:
        """The rate limiter's permission to start a transaction, if it is given at once."""
        return self.limiter.try_acquire()

    async def wait_for_turn(self) -> bool:
        """The rate limiter's permission to start a transaction; False if the run halted."""
        if self.stopping:
            return False
        if self.limiter.try_acquire():
            return True
        return await self.unless_halted(self.limiter.acquire())

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

    def _judge_all(self, connection: Line, done: list[Done]) -> float | None:
        """Each result in turn (no await between them); the longest pause, or None."""
        pauses = [self._judge(connection, d.envelope, d.attempt, d.result) for d in done]
        if None in pauses:
            return None
        return max((pause for pause in pauses if pause is not None), default=0.0)

    def _judge(self, connection: Line, envelope: Envelope, attempt: int,
               result: Result) -> float | None:
        """What one attempt's result means for the run (see :meth:`_deliver_one`)."""
        if result.kind is Kind.NOT_STARTED or result.kind is Kind.FATAL:
            if result.error is not None:
                self.abort(result.error)
            if attempt > 1:
                self.report.deferred.append(envelope.key)
            return 0.0
        if result.kind is Kind.SENT:
            self.consecutive_failures = 0
            self.limiter.succeeded()
            self._finish(envelope, State.SENT, result.reply, attempt)
            return 0.0
        verdict = result.verdict or NETWORK
        if result.kind is Kind.REFUSED and verdict.reply_class.stops_the_run:
            self.abort(self._relay_stop(verdict, result.reply))
            self.report.deferred.append(envelope.key)  # not delivered: pending again
            return 0.0
        self._count_failure(result.reply)
        if result.kind is Kind.UNCERTAIN:
            self._finish(envelope, State.UNCERTAIN, result.reply, attempt)
            return 0.0
        if verdict.reply_class is ReplyClass.RECIPIENT_PERMANENT:
            self._finish(envelope, State.FAILED, result.reply, attempt)
            return 0.0
        if verdict.reply_class is ReplyClass.SENDER_RATE:
            self.report.throttled += 1
            self.limiter.throttled()
        if attempt >= self.sending.max_attempts:
            self._finish(envelope, State.FAILED, result.reply, attempt)
            return 0.0
        if self.stopping:
            self.report.deferred.append(envelope.key)
            return 0.0
        if verdict.reply_class is ReplyClass.CONCURRENCY and self.workers > 1:
            # One connection fewer from now on; another worker sends this message. No
            # await from here to _work's `workers -= 1`: two workers cannot both leave.
            self.report.connections_dropped += 1
            for waiting in connection.abandon():  # not handed over: as if not tried
                self.requeued.append((waiting.envelope, waiting.attempt - 1))
            connection.drop()
            self.report.retried += 1
            self.hooks.retrying(envelope, result.reply, attempt, 0.0)
            self.requeued.append((envelope, attempt))
            return None
        return self._schedule(connection, envelope, attempt, verdict, result.reply)

    def _schedule(self, connection: Line, envelope: Envelope, attempt: int,
                  verdict: Verdict, reply: str) -> float:
        """Put ``envelope`` in :attr:`later`; how long its worker pauses before its next
        transaction (the module docstring says when and why)."""
        delay = retry_delay(attempt, verdict.reply_class, self.rng)
        if verdict.until is not None:  # the relay said when: not before then
            delay = max(delay, (verdict.until - self.wall_clock()).total_seconds())
        self.report.retried += 1
        self.hooks.retrying(envelope, reply, attempt, delay)
        self.later.push(self.clock() + delay, (envelope, attempt))
        streak = self.consecutive_failures - max(SCATTERED, self.sending.concurrency)
        if streak > 0:  # the relay refuses everything now: the run backs off as a whole
            return max(delay, backoff_delay(streak, self.rng))
        if connection.client is None:  # the relay may be down or restarting
            return delay
        return 0.0

    def _relay_stop(self, verdict: Verdict, reply: str) -> RelayStop:
        where = self.smtp.where
        until = verdict.until
        frees = f" (it frees at {until:%Y-%m-%d %H:%M} UTC)" if until else ""
        reason = f"{verdict.name} ({reply})"
        if verdict.reply_class is ReplyClass.SENDER_QUOTA:
            return QuotaReached(
                f"{where}: {verdict.name} is reached: {reply}{frees}", reason=reason,
                until=until,
                hint="the registrants not sent to stay pending (not failed); run the same "
                "command again " + ("after that time" if until else "when the quota frees "
                                    "(the README's Relays section lists the relays' limits)"))
        return SenderBlocked(
            f"{where} takes no mail from this sender now: {verdict.name}: {reply}{frees}",
            reason=reason, until=until,
            hint="the registrants not sent to stay pending (not failed); do what the relay's "
            "reply says (or ask its administrator), then run the same command again")

    def refused(self, step: Step, code: int, message: str) -> Result:
        """A refusal judged by its class."""
        reply = self.reply_text(code, message)
        verdict = classify(step, code, clean_reply(message, self.password),
                           now=self.wall_clock())
        return Result(Kind.REFUSED, reply, verdict)

    def _count_failure(self, reply: str) -> None:
        self.consecutive_failures += 1
        limit = self.sending.max_consecutive_failures
        if self.consecutive_failures >= limit and self.report.stopped is None:
            self.abort(TooManyFailures(
                f"{self.smtp.where}: stopped after {self.consecutive_failures} failed attempts "
                f"in a row; the relay's last reply: {reply}",
                reply=reply,
                hint="find out why the relay refuses (its reply says), then run the same "
                "command again to continue",
            ))

    def _finish(self, envelope: Envelope, state: State, reply: str, attempts: int) -> None:
        if state is State.SENT:
            self.report.sent += 1
        elif state is State.FAILED:
            self.report.failed += 1
        else:
            self.report.uncertain += 1
        self.hooks.finished(Outcome(envelope.key, state, reply, attempts))

    def text(self, text: str) -> str:
        """A sentence that may quote the relay, as it may be shown and stored."""
        return self._clean(clean_reply(text, self.password))

    def reply_text(self, code: int, message: str) -> str:
        """A relay's reply as it may be shown and stored (never the password)."""
        return self._clean(format_reply(code, message, self.password))

    def _clean(self, text: str) -> str:
        """Without the access tokens either (a relay has no reason to quote one)."""
        return text if self.credential is None else self.credential.clean(text)

    def opened(self) -> None:
        self.report.connections += 1

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        self.hooks.handing_over(envelope, attempt)
