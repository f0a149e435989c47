"""The shared state of one delivery run, and what each attempt's result means for it.

:class:`RunState` holds what the workers of :mod:`invitemail.send.transport` share (the
report, the pace, the retry queue, the halt) and judges every attempt's
:class:`~invitemail.send.outcomes.Result`: a final :class:`~invitemail.send.outcomes.Outcome`
through the caller's hooks, a retry put in the "later" queue, a message handed to another
worker (*concurrency*), or a halt (*sender-quota*, *sender-blocked*, too many failures in a
row, the settings). The password and the access tokens never appear in a text it makes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable

from invitemail.auth.credentials import TokenCredential
from invitemail.inputs.config import Sending, Smtp
from invitemail.send.envelope import Envelope
from invitemail.send.errors import TransportError, relay_stop, too_many_failures
from invitemail.send.outcomes import NETWORK, DeliveryReport, Hooks, Kind, Outcome, Result, State
from invitemail.send.pace import RateLimiter
from invitemail.send.pipeline import Done, Line
from invitemail.send.redaction import clean_reply, format_reply
from invitemail.send.replies import ReplyClass, Step, Verdict, classify
from invitemail.send.retries import RetryQueue, backoff_delay, retry_delay

__all__ = ["SCATTERED", "RunState"]

# Failed attempts in a row that random, scattered failures explain (at 20% failing, four
# in a row happen once in 600 attempts); more than this, or than there are workers, and
# each worker waits out its retry's delay: the relay refuses everything for now.
SCATTERED: int = 3


class RunState:
    """The shared state of one delivery run, and what each attempt's result means for it.

    The workers that feed the connections are :class:`invitemail.send.transport._Run`, which
    extends this; the connections see it as a :class:`~invitemail.send.session.Session`."""

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
        self.waiting = 0  # workers waiting on ``changed``

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

    # -- what each result means ----------------------------------------------------------

    def _judge_all(self, connection: Line, done: list[Done]) -> float | None:
        """Each result in turn (no await between them); the longest pause, or None."""
        pauses = [self._judge(connection, d.envelope, d.attempt, d.result) for d in done]
        if None in pauses:
            return None
        return max((pause for pause in pauses if pause is not None), default=0.0)

    def _judge(self, connection: Line, envelope: Envelope, attempt: int,
               result: Result) -> float | None:
        """What one attempt's result means for the run: 0 (go on), a pause in seconds
        (see :meth:`_schedule`), or None (this worker gives up its connection)."""
        match result.kind:
            case Kind.NOT_STARTED | Kind.FATAL:
                if result.error is not None:
                    self.abort(result.error)
                if attempt > 1:
                    self.report.deferred.append(envelope.key)
            case Kind.SENT:
                self.consecutive_failures = 0
                self.limiter.succeeded()
                self._finish(envelope, State.SENT, result.reply, attempt)
            case Kind.UNCERTAIN:
                self._count_failure(result.reply)
                self._finish(envelope, State.UNCERTAIN, result.reply, attempt)
            case Kind.REFUSED:
                return self._refused(connection, envelope, attempt, result)
        return 0.0

    def _refused(self, connection: Line, envelope: Envelope, attempt: int,
                 result: Result) -> float | None:
        """A refusal (or a network failure before the hand-over), handled by its class."""
        verdict = result.verdict or NETWORK
        if verdict.reply_class.stops_the_run:
            self.abort(relay_stop(self.smtp.where, verdict, result.reply))
            self.report.deferred.append(envelope.key)  # not delivered: pending again
            return 0.0
        self._count_failure(result.reply)
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
            self._hand_off(connection, envelope, attempt, result.reply)
            return None
        return self._schedule(connection, envelope, attempt, verdict, result.reply)

    def _hand_off(self, connection: Line, envelope: Envelope, attempt: int,
                  reply: str) -> None:
        """One connection fewer from now on; another worker sends this message. No await
        from here to the worker's end (``workers -= 1``): two workers cannot both leave."""
        self.report.connections_dropped += 1
        for waiting in connection.abandon():  # not handed over: as if not tried
            self.requeued.append((waiting.envelope, waiting.attempt - 1))
        connection.drop()
        self.report.retried += 1
        self.hooks.retrying(envelope, reply, attempt, 0.0)
        self.requeued.append((envelope, attempt))

    def _schedule(self, connection: Line, envelope: Envelope, attempt: int,
                  verdict: Verdict, reply: str) -> float:
        """Put ``envelope`` in :attr:`later`; how long its worker pauses before its next
        transaction (:mod:`invitemail.send.transport` says when and why)."""
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

    def refused(self, step: Step, code: int, message: str) -> Result:
        """A refusal judged by its class."""
        reply = self.reply_text(code, message)
        verdict = classify(step, code, clean_reply(message, self.password),
                           now=self.wall_clock())
        return Result(Kind.REFUSED, reply, verdict)

    def _count_failure(self, reply: str) -> None:
        self.consecutive_failures += 1
        if (self.consecutive_failures >= self.sending.max_consecutive_failures
                and self.report.stopped is None):
            self.abort(too_many_failures(self.smtp.where, self.consecutive_failures, reply))

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
