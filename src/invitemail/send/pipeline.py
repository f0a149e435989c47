"""Pipelined SMTP (RFC 2920): one round trip per message on a relay that offers PIPELINING.

A :class:`Line` is one worker's connection (:class:`~invitemail.send.connection.Connection`). On
a relay whose EHLO names PIPELINING (and unless ``smtp.pipelining = false``) it sends each
transaction as groups instead of one command at a time::

    write  MAIL FROM, RCPT TO, DATA                       (the first message)
    read   250, 250, 354
    write  message 1 and its final dot, MAIL FROM, RCPT TO, DATA   (the next message)
    read   250 (message 1), 250, 250, 354
    ...

so in steady state each message costs one round trip, where the plain dialogue costs four.
Replies are read in the order the commands went. The transactions stay apart: a refused MAIL
or RCPT is answered by the relay's 503/554 to the DATA of the same group (RFC 2920 3.1), and
an RSET goes at the head of the next group; a refusal never touches the message before it
or after it. Each reply is judged as before (:meth:`Session.refused`, the same steps), and
the rate limiter gives its turn per transaction.

Exactly once: after the 354 the message waits (:attr:`Line.in_flight`) until the next
message's commands can go with it; :meth:`Session.handing_over` is called right before the
write that carries its data, so the journal says ``sending`` only for a message whose data
went out. If the connection breaks after that write and before the message's final reply,
the message is uncertain, and the next message, whose MAIL, RCPT and DATA went in the same
write, was not handed over: it is retried. :meth:`Line.settle` sends a waiting message on
its own; the transport calls it before it waits for anything, so no message waits on a
worker that is idle.

A relay without PIPELINING gets :meth:`Connection.attempt`, one command at a time. The
aiosmtplib internals this needs are in :mod:`invitemail.send.smtp_adapter` (:class:`Pipe`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiosmtplib import SMTP, SMTPException, SMTPResponseException, SMTPServerDisconnected

from invitemail.send.connection import Connection
from invitemail.send.connection import network_failure as _network_failure
from invitemail.send.envelope import Envelope
from invitemail.send.envelope import quoted as _quoted
from invitemail.send.outcomes import NETWORK, UNSENDABLE, Kind, Result
from invitemail.send.replies import Step
from invitemail.send.session import Session
from invitemail.send.smtp_adapter import Pipe

__all__ = ["Done", "Line"]


@dataclass(frozen=True, slots=True)
class Done:
    """The result of one attempt at one envelope."""

    envelope: Envelope
    attempt: int
    result: Result


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A message the relay said 354 to, its data not written yet."""

    envelope: Envelope
    attempt: int
    payload: bytes  # dot-stuffed, with the final dot


class Line:
    """One worker's connection: pipelined when the relay offers it, else one command at a
    time. :meth:`attempt` returns the results it came to know, in order: the message before
    (its final reply came in this round trip) and this one (unless it is :attr:`in_flight`)."""

    def __init__(self, run: Session) -> None:
        self.run = run
        self.connection = Connection(run)
        self._pipe: Pipe | None = None
        self._piped: SMTP | None = None  # the client the pipe belongs to
        self._waiting: _Waiting | None = None
        self._reset = False  # an RSET goes first in the next group

    @property
    def client(self) -> SMTP | None:
        return self.connection.client

    @property
    def in_flight(self) -> bool:
        """A message's data waits for the next write: call :meth:`settle` before waiting."""
        return self._waiting is not None

    async def attempt(self, envelope: Envelope, attempt: int) -> list[Done]:
        """Start ``envelope``'s transaction: its MAIL, RCPT and DATA go with the waiting
        message's data, if any. The results known now, in order."""
        run = self.run
        if self._waiting is not None and run.stopping:
            return [*self.abandon(), Done(envelope, attempt, Result(Kind.NOT_STARTED, ""))]
        # With a message waiting, the caller gave this transaction its turn already (it
        # settles the waiting message first when the rate limiter says "not yet").
        if self._waiting is None:
            if run.stopping:
                return [Done(envelope, attempt, Result(Kind.NOT_STARTED, ""))]
            failure = await self.connection.ensure_open()
            if failure is not None:
                return [Done(envelope, attempt, failure)]
            if not self._pipelining():
                return [Done(envelope, attempt,
                             await self.connection.attempt(envelope, attempt))]
            if not await run.wait_for_turn():
                return [Done(envelope, attempt, Result(Kind.NOT_STARTED, ""))]
        try:
            return await self._group(envelope, attempt)
        except BaseException:
            self.drop()  # a hook failed, or cancelled: the connection is in an unknown state
            raise

    async def settle(self) -> list[Done]:
        """Send the message that waits for its data to go, and read its final reply."""
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return []
        try:
            return await self._send(waiting, b"", None, 0)
        except BaseException:
            self.drop()
            raise

    def abandon(self) -> list[Done]:
        """The run stops: the message waiting for its data is not sent (NOT_STARTED), and
        the connection is dropped (after a 354 only the data would end the transaction)."""
        waiting = self._waiting
        if waiting is None:
            return []
        self.drop()
        return [Done(waiting.envelope, waiting.attempt, Result(Kind.NOT_STARTED, ""))]

    def drop(self) -> None:
        self._waiting = None
        self._pipe = self._piped = None
        self._reset = False
        self.connection.drop()

    async def close(self) -> None:
        """QUIT; a message still waiting for its data is not sent (it stays pending)."""
        if self._pipe is not None:
            self._pipe.release()
        self._waiting = None
        self._pipe = self._piped = None
        await self.connection.close()

    # -- the groups ------------------------------------------------------------------------

    def _pipelining(self) -> bool:
        client = self.connection.client
        return (client is not None and self.run.smtp.pipelining
                and client.supports_extension("pipelining"))

    async def _group(self, envelope: Envelope, attempt: int) -> list[Done]:
        client = self.connection.client
        assert client is not None
        waiting, self._waiting = self._waiting, None
        try:
            options, encoding = Connection.mail_options(client, envelope)
            commands = (b"MAIL FROM:" + b" ".join([_quoted(envelope.sender, encoding),
                                                   *options])
                        + b"\r\nRCPT TO:" + _quoted(envelope.recipient, encoding)
                        + b"\r\nDATA\r\n")
        except ValueError as error:  # an address that cannot go on the wire
            self._waiting = waiting
            unsendable = Result(Kind.REFUSED, f"not sent: {error}", UNSENDABLE)
            return [*await self.settle(), Done(envelope, attempt, unsendable)]
        if self._reset:
            commands = b"RSET\r\n" + commands
        return await self._send(waiting, commands, envelope, attempt)

    async def _send(self, waiting: _Waiting | None, commands: bytes,
                    envelope: Envelope | None, attempt: int) -> list[Done]:
        """One write (``waiting``'s data, then ``commands``: the next envelope's MAIL, RCPT
        and DATA) and the replies to it, in order."""
        run, done = self.run, list[Done]()
        reset = self._reset and bool(commands)  # the RSET is at the head of ``commands``
        if reset:
            self._reset = False
        pipe = self._pipe_of()
        payload = b""
        if waiting is not None and pipe is not None:
            # Right before the write that carries its data; outside the try below: an
            # error of the caller's journal is not the relay's (attempt() drops and raises).
            run.handing_over(waiting.envelope, waiting.attempt)
            payload = waiting.payload
        try:
            if pipe is None:  # known to be gone: nobody is ``sending``, nothing is written
                raise SMTPServerDisconnected("Connection lost")
            pipe.write(payload + commands)
        except (SMTPException, OSError) as error:  # nothing went: nobody was handed over
            self.drop()
            failure = self._lost(error, handed_over=False)
            if waiting is not None:
                done.append(Done(waiting.envelope, waiting.attempt, failure))
            if envelope is not None:
                done.append(Done(envelope, attempt, failure))
            return done
        assert pipe is not None
        timeout = run.smtp.timeout
        if waiting is not None:
            try:
                final = await pipe.read_reply(timeout=timeout)
            except (SMTPException, OSError) as error:
                self.drop()
                done.append(Done(waiting.envelope, waiting.attempt,
                                 self._lost(error, handed_over=True)))
                if envelope is not None:
                    done.append(Done(envelope, attempt, self._lost(error, handed_over=False)))
                return done
            done.append(Done(waiting.envelope, waiting.attempt, self._final(final.code,
                                                                            final.message)))
            if self.connection.client is None and envelope is not None:  # it closed (421)
                done.append(Done(envelope, attempt, Result(
                    Kind.REFUSED, run.text("not sent: the relay closed the connection"),
                    NETWORK)))
                return done
        if envelope is None:
            return done
        try:
            if reset:
                await pipe.read_reply(timeout=timeout)  # whatever it says, MAIL will tell
            mail = await pipe.read_reply(timeout=timeout)
            rcpt = await pipe.read_reply(timeout=timeout)
            start = await pipe.read_reply(timeout=timeout)
        except (SMTPException, OSError) as error:
            self.drop()
            done.append(Done(envelope, attempt, self._lost(error, handed_over=False)))
            return done
        if start.code == 354 and mail.code == 250 and rcpt.code in (250, 251):
            self._waiting = _Waiting(envelope, attempt, envelope.wire())
            return done
        if start.code == 354:
            # DATA accepted after a refused MAIL or RCPT: end it with the dot alone
            # (RFC 2920 3.1); the relay refuses the empty message, there being nobody to
            # send it to.
            try:
                pipe.write(b".\r\n")
                await pipe.read_reply(timeout=timeout)
            except (SMTPException, OSError):
                self.drop()
        self._reset = self.connection.client is not None
        for step, reply in ((Step.MAIL, mail), (Step.RCPT, rcpt), (Step.DATA, start)):
            if reply.code not in (250, 251, 354):
                done.append(Done(envelope, attempt, self._refused(step, reply.code,
                                                                  reply.message)))
                return done
        self.drop()  # 354 to DATA, then a refusal after all: out of step
        done.append(Done(envelope, attempt, Result(Kind.REFUSED, run.reply_text(
            start.code, start.message), NETWORK)))
        return done

    def _pipe_of(self) -> Pipe | None:
        """The pipe on the connection, None if the connection is known to be gone."""
        client = self.connection.client
        if client is None:
            return None
        if self._pipe is None or self._piped is not client:
            try:
                self._pipe, self._piped = Pipe(client), client
            except SMTPServerDisconnected:
                return None
        return self._pipe if self._pipe.is_open else None

    def _final(self, code: int, message: str) -> Result:
        """The reply after a message's data, as :class:`Connection` judges it."""
        run = self.run
        if code == 250:
            return Result(Kind.SENT, run.reply_text(code, message))
        if code == 421:  # "closing the transmission channel"
            self.drop()
        if 400 <= code <= 599:
            return run.refused(Step.DATA, code, message)
        self.drop()
        return Result(Kind.UNCERTAIN, run.reply_text(code, message))

    def _refused(self, step: Step, code: int, message: str) -> Result:
        if code == 421:
            self.drop()
        if 400 <= code <= 599:
            return self.run.refused(step, code, message)
        self.drop()  # a garbled reply: the connection is out of step
        return Result(Kind.REFUSED, self.run.reply_text(code, message), NETWORK)

    def _lost(self, error: BaseException, *, handed_over: bool) -> Result:
        run = self.run
        if isinstance(error, SMTPResponseException):  # a garbled reply
            reply = run.reply_text(error.code, error.message)
        else:
            reply = run.text(_network_failure(error, handed_over=handed_over))
        return Result(Kind.UNCERTAIN, reply) if handed_over \
            else Result(Kind.REFUSED, reply, NETWORK)
