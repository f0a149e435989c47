"""Delivery over SMTP: connection pool, rate limit, retries, reply classification.

The only module that imports aiosmtplib. :func:`deliver` takes a lazy stream of
:class:`Envelope` (one recipient each) and reports one :class:`Outcome` per envelope through
:class:`Hooks`, so the caller's journal can record every step as it happens:

- ``sending.concurrency`` workers, each owning one SMTP connection that it reuses for many
  messages (RSET after a failed transaction, a new connection after a drop), fed from one
  bounded queue that is filled from the caller's iterator as the workers need it.
- One shared pace (:class:`~invitemail.pace.RateLimiter`) keeps the run at or under
  ``sending.rate`` and finds the relay's own limit: a throttling reply (421, 451, 454) sets
  the pace just under the rate the relay was accepting, and the pace probes upward again
  while the relay accepts (:mod:`invitemail.pace` documents how).
- A 5xx reply is permanent for that recipient (``failed``). A 4xx reply, a dropped
  connection or a timeout *before* the message data was handed over is retried with
  exponential backoff and jitter, up to ``sending.max_attempts`` attempts. A connection that
  breaks *after* the data was handed over and before the final reply is ``uncertain``: the
  relay may have delivered it, so it is never retried here.
- An authentication failure, ``sending.max_consecutive_failures`` failed attempts in a row,
  or a first connection that cannot be made at all stop the run: workers finish the
  transaction they are in and send nothing more; :attr:`DeliveryReport.stopped` says why.

All timing decisions (backoff, rate, throttling pauses) use the injected ``clock`` and
``sleep``, so tests run on a fake clock; network timeouts are real (``smtp.timeout``).
The password never appears in any text this module produces.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from invitemail.config import Sending, Smtp
from invitemail.errors import ExitCode, InvitemailError
from invitemail.pace import RateLimiter

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "DeliveryReport",
    "Envelope",
    "Hooks",
    "InsecureAuthError",
    "Outcome",
    "RateLimiter",
    "State",
    "TooManyFailures",
    "TransportError",
    "backoff_delay",
    "deliver",
    "dot_stuff",
    "format_reply",
    "is_permanent",
    "is_temporary",
    "is_throttling",
    "make_tls_context",
    "redact",
]

# Replies with which relays say "slow down" rather than "no": Postfix and Exchange use 421 and
# 451, Amazon SES answers "454 Throttling failure: Maximum sending rate exceeded".
THROTTLING_CODES: frozenset[int] = frozenset({421, 451, 454})
BACKOFF_BASE: float = 2.0  # seconds before the first retry (before jitter)
BACKOFF_CAP: float = 120.0  # no single wait longer than this
QUEUE_PER_WORKER: int = 4  # envelopes waiting in the queue per worker
QUIT_TIMEOUT: float = 5.0  # seconds to wait for a polite QUIT at the end


# -- the interface ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient."""

    key: str  # the journal's key for this recipient (opaque to the transport)
    sender: str  # MAIL FROM address
    recipient: str  # the ONE RCPT TO address
    data: bytes  # the whole message, CRLF line endings
    # True when every line of ``data`` is known to end in CRLF, with no other CR or LF in it
    # (invitemail's own messages are written so): the transport skips checking that.
    crlf: bool = False


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
        """Right before DATA, after MAIL FROM and RCPT TO were accepted.

        Make the journal row ``sending`` durable here: from now on a crash leaves it uncertain.
        """

    def finished(self, outcome: Outcome) -> None:
        """The final outcome of one envelope, before its worker starts another transaction."""

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        """Attempt number ``attempt`` failed for now (``reply`` says why); the envelope is
        tried again after ``delay`` seconds."""


class TransportError(InvitemailError):
    """The relay cannot be used as configured; the text names ``host:port``."""

    exit_code = ExitCode.INPUT


class ConnectError(TransportError):
    """The relay cannot be reached, or TLS cannot be set up with it."""


class AuthenticationError(TransportError):
    """The relay refused the login (names the user, never the password)."""


class InsecureAuthError(TransportError):
    """AUTH over a plaintext connection without ``smtp.allow_insecure_auth = true``."""


class TooManyFailures(TransportError):
    """``sending.max_consecutive_failures`` attempts failed in a row."""

    def __init__(self, message: str, *, reply: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reply = reply


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
    throttled: int = 0  # throttling replies (421/451/454) that slowed the whole run down
    # Envelopes that were tried but had no final outcome when the run stopped early: each
    # attempt ended in a temporary refusal or failed before the data was handed over, so none
    # was delivered. No ``finished`` call was made for them; put them back to pending.
    deferred: list[str] = field(default_factory=list)


# -- pure helpers ----------------------------------------------------------------------------


def is_temporary(code: int) -> bool:
    return 400 <= code < 500


def is_permanent(code: int) -> bool:
    return 500 <= code < 600


def is_throttling(code: int) -> bool:
    return code in THROTTLING_CODES


def format_reply(code: int, message: str) -> str:
    """``550``, ``"5.1.1 <x@y>:\\nuser unknown"`` -> ``"550 5.1.1 <x@y>: user unknown"``.

    aiosmtplib gives code -1 for a reply that is not SMTP at all (garbled, or a line too long):
    then the text alone, made printable, says what came.
    """
    text = " ".join(message.split())
    if not 100 <= code <= 599:
        return _printable(text) or "an empty reply"
    return f"{code} {text}" if text else str(code)


def _printable(text: str, limit: int = 120) -> str:
    """``text`` safe to show: control characters as ``?``, at most ``limit`` characters."""
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit + 1])
    return shown[:limit] + "..." if len(shown) > limit else shown


def backoff_delay(attempt: int, rng: random.Random, *, base: float = BACKOFF_BASE,
                  cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...).

    Exponential with "equal jitter": between half and all of ``base * 2**(attempt-1)``, so
    workers that failed together do not all come back at the same moment.
    """
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")


def dot_stuff(data: bytes, *, crlf: bool = False) -> bytes:
    """The message as it goes on the wire after DATA (RFC 5321 4.5.2), with the final dot.

    Stray CRs and LFs become CRLF, unless ``crlf`` says there are none."""
    if not crlf:
        ends = data.count(b"\r\n")
        if data.count(b"\n") != ends or data.count(b"\r") != ends:  # a stray CR or LF:
            data = _LINE_ENDINGS.sub(b"\r\n", data)  # make every line end in CRLF
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    # Counting and searching rather than a regex: this runs over every message, in the
    # process that also speaks SMTP; most messages have no line that starts with a dot.
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." if data.startswith(b".") else b"") + data + b".\r\n"


_NOT_ON_A_COMMAND_LINE = frozenset("\r\n\0<> ")


def _quoted(address: str, encoding: str) -> bytes:
    """``<address>`` for MAIL FROM or RCPT TO. The addresses were validated when the list
    was read; this only refuses what would break the command line."""
    if not address or not _NOT_ON_A_COMMAND_LINE.isdisjoint(address):
        raise ValueError(f"{address!r} cannot go on an SMTP command line")
    return b"<" + address.encode(encoding) + b">"


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret``, also where a server echoes it base64-encoded."""
    if not secret:
        return text
    text = text.replace(secret, "[redacted]")
    needle = secret.encode("utf-8")
    words = []
    for word in text.split(" "):
        try:
            decoded = base64.b64decode(word, validate=True) if len(word) >= 4 else b""
        except (binascii.Error, ValueError):
            decoded = b""
        words.append("[redacted]" if needle in decoded else word)
    return " ".join(words)


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
    password: str | None,
    hooks: Hooks,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    stop: asyncio.Event | None = None,
    local_hostname: str | None = None,
) -> DeliveryReport:
    """Send every envelope; report each outcome through ``hooks`` as it is known.

    Problems with the settings themselves are raised before any connection is made:
    :class:`InsecureAuthError`, :class:`AuthenticationError` when ``smtp.username`` is set
    but ``password`` is None, :class:`ConnectError` for an unusable ``smtp.ca_file``. Problems
    met while running (login refused, too many failures, the relay unreachable) end the run
    early and are returned in :attr:`DeliveryReport.stopped`. An exception raised by a hook or
    by the ``envelopes`` iterator stops the run too (in-flight transactions finish) and is
    re-raised.
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
    )
    return await run.execute(envelopes)


def _check_credentials(smtp: Smtp, password: str | None) -> None:
    if smtp.username is None:
        return
    if smtp.security == "none" and not smtp.allow_insecure_auth:
        raise InsecureAuthError(
            f"{smtp.where}: refusing to send the password of {smtp.username!r} over an "
            "unencrypted connection (smtp.security is \"none\")",
            hint='use smtp.security = "starttls" or "tls"; only on a network you trust, '
            "set smtp.allow_insecure_auth = true",
        )
    if password is None:
        raise AuthenticationError(
            f"{smtp.where}: no password was given for user {smtp.username!r}",
            hint="set INVITEMAIL_SMTP_PASSWORD, or run in a terminal to be asked for it",
        )


class _Kind(enum.Enum):
    SENT = "sent"
    TEMPORARY = "temporary"  # try again later
    PERMANENT = "permanent"  # a 5xx for this recipient
    UNCERTAIN = "uncertain"  # handed over, no final reply
    FATAL = "fatal"  # the run cannot go on
    NOT_STARTED = "not started"  # the run stopped before this attempt began


@dataclass(frozen=True, slots=True)
class _Result:
    kind: _Kind
    reply: str
    throttling: bool = False
    error: TransportError | None = None


class _Failure(Exception):
    """Carries a non-SENT :class:`_Result` out of connection set-up."""

    def __init__(self, result: _Result) -> None:
        super().__init__(result.reply)
        self.result = result


def _reply_result(code: int, reply: str) -> _Result:
    if is_permanent(code):
        return _Result(_Kind.PERMANENT, reply)
    return _Result(_Kind.TEMPORARY, reply, throttling=is_throttling(code))


def _in_chain(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``error`` or the first of its causes that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _os_reason(error: BaseException) -> str:
    """"Connection refused" rather than aiosmtplib's "Error connecting to ... [Errno 111]"."""
    reason = error.__cause__ if error.__cause__ is not None else error
    if isinstance(reason, socket.gaierror):
        return reason.strerror or str(reason)
    if isinstance(reason, OSError) and reason.errno:
        return os.strerror(reason.errno)
    return str(reason)


def _network_failure(error: BaseException, *, handed_over: bool) -> str:
    what = "timed out" if isinstance(error, TimeoutError) else "connection lost"
    when = "after" if handed_over else "before"
    detail = str(error) or type(error).__name__
    return f"{what} {when} the message was handed over: {detail}"


class _Run:
    """The shared state of one :func:`deliver` call."""

    def __init__(
        self,
        *,
        smtp: Smtp,
        sending: Sending,
        password: str | None,
        hooks: Hooks,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        stop: asyncio.Event | None,
        local_hostname: str,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.smtp = smtp
        self.sending = sending
        self.password = password
        self.hooks = hooks
        self.sleep = sleep
        self.rng = rng
        self.stop = stop
        self.local_hostname = local_hostname
        self.tls_context = tls_context
        self.limiter = RateLimiter(sending.rate, clock=clock, sleep=sleep)
        self.report = DeliveryReport()
        self.halted = asyncio.Event()
        self.consecutive_failures = 0
        self.connected_once = False
        self.error: Exception | None = None  # from a hook or the iterator; re-raised

    # -- running -------------------------------------------------------------------------

    async def execute(self, envelopes: Iterable[Envelope]) -> DeliveryReport:
        workers = max(1, self.sending.concurrency)
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
        connection = _Connection(self)
        try:
            while True:
                envelope = await queue.get()
                if envelope is None or self.stopping:
                    return
                await self._deliver_one(connection, envelope)
        except Exception as error:  # a hook failed (or a bug): stop, let the others finish
            self._fail(error)
        finally:
            await connection.close()

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

    async def unless_halted(self, awaitable: Awaitable[None]) -> bool:
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

    async def wait_for_turn(self) -> bool:
        """The rate limiter's permission to start a transaction; False if the run halted."""
        if self.stopping:
            return False
        if self.limiter.try_acquire():
            return True
        return await self.unless_halted(self.limiter.acquire())

    # -- one envelope --------------------------------------------------------------------

    async def _deliver_one(self, connection: _Connection, envelope: Envelope) -> None:
        attempt = 0
        while True:
            attempt += 1
            result = await connection.attempt(envelope, attempt)
            if result.kind is _Kind.NOT_STARTED or result.kind is _Kind.FATAL:
                if result.error is not None:
                    self.abort(result.error)
                if attempt > 1:
                    self.report.deferred.append(envelope.key)
                return
            if result.kind is _Kind.SENT:
                self.consecutive_failures = 0
                self.limiter.succeeded()
                self._finish(envelope, State.SENT, result.reply, attempt)
                return
            self._count_failure(result.reply)
            if result.kind is _Kind.UNCERTAIN:
                self._finish(envelope, State.UNCERTAIN, result.reply, attempt)
                return
            if result.kind is _Kind.PERMANENT:
                self._finish(envelope, State.FAILED, result.reply, attempt)
                return
            if result.throttling:
                self.report.throttled += 1
                self.limiter.throttled()
            if attempt >= self.sending.max_attempts:
                self._finish(envelope, State.FAILED, result.reply, attempt)
                return
            if self.stopping:
                self.report.deferred.append(envelope.key)
                return
            delay = backoff_delay(attempt, self.rng)
            self.report.retried += 1
            self.hooks.retrying(envelope, result.reply, attempt, delay)
            if not await self.unless_halted(self.sleep(delay)):
                self.report.deferred.append(envelope.key)
                return

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

    def text(self, reply: str) -> str:
        return redact(reply, self.password)


class _Connection:
    """One worker's SMTP connection, opened when needed and reused."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.client: SMTP | None = None

    async def attempt(self, envelope: Envelope, attempt: int) -> _Result:
        run = self.run
        if run.stopping:
            return _Result(_Kind.NOT_STARTED, "")
        if self.client is None or not self.client.is_connected:
            self.drop()
            try:
                self.client = await self._open()
            except _Failure as failure:
                return failure.result
        if not await run.wait_for_turn():
            return _Result(_Kind.NOT_STARTED, "")
        return await self._transaction(self.client, envelope, attempt)

    async def _transaction(self, client: SMTP, envelope: Envelope, attempt: int) -> _Result:
        run = self.run
        try:
            options, encoding = self._mail_options(client, envelope)
            # MAIL and RCPT as aiosmtplib's mail() and rcpt() send them, without their
            # address parsing (email.utils, in this process, for every message).
            response = await client.execute_command(
                b"MAIL", b"FROM:" + _quoted(envelope.sender, encoding), *options)
            if response.code != 250:
                raise SMTPSenderRefused(response.code, response.message, envelope.sender)
            response = await client.execute_command(
                b"RCPT", b"TO:" + _quoted(envelope.recipient, encoding))
            if response.code not in (250, 251):
                raise SMTPRecipientRefused(response.code, response.message, envelope.recipient)
        except (SMTPException, OSError, ValueError) as error:
            return await self._failed(error, handed_over=False)
        except BaseException:
            self.drop()
            raise
        # Outside the try: an error of the caller's journal is not the relay's.
        run.hooks.handing_over(envelope, attempt)
        handed_over = False
        try:
            start = await client.execute_command(b"DATA")
            if start.code != 354:
                raise SMTPDataError(start.code, start.message)
            # aiosmtplib's data() sends the DATA command and the message in one call, so a
            # failure could not tell "refused before" from "lost after" the hand-over. The
            # protocol's write/read_response are the same steps it takes, split in two.
            protocol = client.protocol
            if protocol is None:
                raise SMTPServerDisconnected("Connection lost")
            protocol.write(dot_stuff(envelope.data, crlf=envelope.crlf))
            handed_over = True
            final = await protocol.read_response(timeout=run.smtp.timeout)
        except (SMTPException, OSError) as error:
            return await self._failed(error, handed_over=handed_over)
        except BaseException:
            self.drop()  # the connection is in an unknown state
            raise
        reply = run.text(format_reply(final.code, final.message))
        if final.code == 250:
            return _Result(_Kind.SENT, reply)
        if final.code == 421:  # "closing the transmission channel"
            self.drop()
        if is_temporary(final.code) or is_permanent(final.code):
            return _reply_result(final.code, reply)
        self.drop()
        return _Result(_Kind.UNCERTAIN, reply)

    async def _failed(self, error: Exception, *, handed_over: bool) -> _Result:
        """Classify a transaction that raised."""
        run = self.run
        if isinstance(error, SMTPResponseException):
            reply = run.text(format_reply(error.code, error.message))
            if handed_over:  # a garbled final reply: nobody knows what the relay did
                self.drop()
                return _Result(_Kind.UNCERTAIN, reply)
            if is_temporary(error.code) or is_permanent(error.code):
                await self.reset()
                return _reply_result(error.code, reply)
            self.drop()  # a garbled reply: the connection is out of step
            return _Result(_Kind.TEMPORARY, reply)
        if isinstance(error, SMTPException | OSError):  # disconnects and timeouts
            self.drop()
            reply = run.text(_network_failure(error, handed_over=handed_over))
            return _Result(_Kind.UNCERTAIN if handed_over else _Kind.TEMPORARY, reply)
        await self.reset()  # ValueError: an address aiosmtplib will not put on the wire
        return _Result(_Kind.PERMANENT, f"not sent: {error}")

    @staticmethod
    def _mail_options(client: SMTP, envelope: Envelope) -> tuple[list[bytes], str]:
        options: list[bytes] = []
        encoding = "ascii"
        if not (envelope.sender.isascii() and envelope.recipient.isascii()):
            if not client.supports_extension("smtputf8"):
                raise ValueError(
                    f"the relay does not offer SMTPUTF8, which the address "
                    f"{envelope.recipient!r} needs")
            options.append(b"SMTPUTF8")
            encoding = "utf-8"
        if not envelope.data.isascii() and client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        return options, encoding

    async def reset(self) -> None:
        """RSET after a failed transaction, so the connection can be reused."""
        client = self.client
        if client is None or not client.is_connected:
            self.drop()
            return
        try:
            await client.rset()
        except (SMTPException, OSError):
            self.drop()

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit(timeout=min(QUIT_TIMEOUT, self.run.smtp.timeout))
        except (SMTPException, OSError):
            pass
        finally:
            client.close()

    # -- connection set-up -----------------------------------------------------------------

    async def _open(self) -> SMTP:
        run, smtp = self.run, self.run.smtp
        client = SMTP(
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.security == "tls",
            start_tls=False,  # done below, so that a relay without it is an error
            tls_context=run.tls_context,
            timeout=smtp.timeout,
            local_hostname=run.local_hostname,
        )
        try:
            await client.connect()
        except (SMTPException, OSError) as error:
            client.close()
            raise _Failure(self._connect_failure(error)) from None
        run.report.connections += 1
        try:
            await self._hello(client)
            if smtp.security == "starttls":
                await self._starttls(client)
            if smtp.username is not None:
                await self._login(client, smtp.username)
        except _Failure:
            client.close()
            raise
        except (SMTPException, OSError) as error:
            client.close()
            raise _Failure(self._connect_failure(error)) from None
        run.connected_once = True
        return client

    async def _hello(self, client: SMTP) -> None:
        try:
            await client.ehlo()
        except SMTPHeloError as error:
            if not (is_permanent(error.code) and client.is_connected):
                raise
            await client.helo()  # an old relay without ESMTP

    async def _starttls(self, client: SMTP) -> None:
        where = self.run.smtp.where
        if not client.supports_extension("starttls"):
            raise _Failure(self._fatal(ConnectError(
                f"{where} does not offer STARTTLS, and smtp.security is \"starttls\"",
                hint='check smtp.port and smtp.security: a port that expects TLS from the '
                'start (usually 465) needs security = "tls"',
            )))
        await client.starttls()
        await self._hello(client)

    async def _login(self, client: SMTP, username: str) -> None:
        run = self.run
        where = run.smtp.where
        try:
            await client.login(username, run.password or "")
        except SMTPAuthenticationError as error:
            reply = run.text(format_reply(error.code, error.message))
            if is_temporary(error.code):
                raise _Failure(_Result(_Kind.TEMPORARY, reply,
                                       throttling=is_throttling(error.code))) from None
            raise _Failure(self._fatal(AuthenticationError(
                f"{where} refused the login of user {username!r}: {reply}",
                hint="check smtp.username and the password (INVITEMAIL_SMTP_PASSWORD)",
            ))) from None
        except (SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError):
            raise
        except SMTPException as error:  # no AUTH, or no method both sides know
            offered = ", ".join(client.server_auth_methods) or "none"
            raise _Failure(self._fatal(AuthenticationError(
                f"{where} offers no login method invitemail can use for user {username!r} "
                f"(offered: {offered}): {run.text(str(error))}",
                hint="check smtp.security (many relays offer AUTH only over TLS) and "
                "smtp.username; remove smtp.username if the relay needs no login",
            ))) from None

    def _fatal(self, error: TransportError) -> _Result:
        return _Result(_Kind.FATAL, str(error), error=error)

    def _connect_failure(self, error: BaseException) -> _Result:
        """Classify a failure to set up a connection."""
        run, smtp = self.run, self.run.smtp
        where = smtp.where
        verify = _in_chain(error, ssl.SSLCertVerificationError)
        if isinstance(verify, ssl.SSLCertVerificationError):
            detail = verify.verify_message or str(verify)
            if smtp.ca_file is None:
                hint = ("if the relay uses a private CA, set smtp.ca_file to the CA that "
                        "signed it")
            else:
                hint = (f"smtp.ca_file ({smtp.ca_file}) does not hold the CA that signed it; "
                        "set smtp.ca_file to the CA that signed it")
            return self._fatal(ConnectError(
                f"{where}: the relay's certificate could not be verified: {detail}", hint=hint))
        first = not run.connected_once  # a problem on the first connection is the settings'
        if isinstance(error, SMTPResponseException):  # e.g. "421 too many connections"
            reply = run.text(format_reply(error.code, error.message))
            garbled = not 100 <= error.code <= 599
            if garbled and first:  # not an SMTP server on that port, or a broken one
                return self._fatal(ConnectError(
                    f"{where} does not answer like an SMTP relay ({reply})",
                    hint="check smtp.host and smtp.port: is that the relay's SMTP port? (port "
                    '465 wants security = "tls", port 587 "starttls")'))
            if is_permanent(error.code) and first:
                return self._fatal(ConnectError(
                    f"{where} refused the connection: {reply}",
                    hint="check smtp.host and smtp.port; if they are right, the relay does not "
                    "take mail from this machine: ask its administrator"))
            return _Result(_Kind.TEMPORARY, reply, throttling=is_throttling(error.code))
        tls = _in_chain(error, ssl.SSLError)
        if tls is not None:
            if first:
                # Without OpenSSL's source position ("(_ssl.c:1006)"), which changes with
                # every Python build and means nothing to a user.
                detail = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(tls))
                return self._fatal(ConnectError(
                    f"{where}: the TLS handshake failed: {detail}",
                    hint='check smtp.security and smtp.port: port 465 usually wants "tls", '
                    'port 587 "starttls"',
                ))
            return _Result(_Kind.TEMPORARY, f"TLS handshake failed: {tls}")
        if isinstance(error, SMTPConnectTimeoutError):
            if first:
                return self._fatal(ConnectError(
                    f"{where}: no answer within {smtp.timeout:g} s",
                    hint="check smtp.host, smtp.port and the firewall, or raise smtp.timeout",
                ))
            return _Result(_Kind.TEMPORARY, f"timed out connecting: {error}")
        if isinstance(error, TimeoutError):
            if first:  # it greeted, then went silent: the settings, not a passing hiccup
                return self._fatal(ConnectError(
                    f"{where} greeted, then did not answer within {smtp.timeout:g} s",
                    hint='check smtp.port and smtp.security (port 465 wants "tls", port 587 '
                    '"starttls"), or raise smtp.timeout'))
            return _Result(_Kind.TEMPORARY, f"timed out setting up the connection: {error}")
        if isinstance(error, OSError | SMTPConnectError):
            if first and isinstance(error.__cause__, SMTPServerDisconnected):
                return self._fatal(ConnectError(
                    f"{where} closed the connection before greeting",
                    hint="check smtp.host and smtp.port; if they are right, the relay does not "
                    "take connections from this machine: ask its administrator"))
            detail = _os_reason(error)
            if first and not isinstance(error, SMTPServerDisconnected):
                return self._fatal(ConnectError(
                    f"cannot connect to {where}: {detail}",
                    hint="check smtp.host and smtp.port, and that this machine can reach the "
                    "relay",
                ))
            return _Result(_Kind.TEMPORARY, f"cannot connect: {detail}")
        return _Result(_Kind.TEMPORARY, f"connection failed: {run.text(str(error))}")
