"""The part of aiosmtplib that invitemail uses beyond its documented API, in one place.

aiosmtplib's ``SMTP.data()`` sends the DATA command and the message in one call, so a failure
cannot tell "refused before the hand-over" from "lost after it", which decides between
retrying a message and marking it uncertain. So the transport sends DATA itself and writes the
message on the connection's protocol (``SMTP.protocol``, an attribute, not a documented API),
then reads the final reply: the same steps ``data()`` takes, split in two. MAIL and RCPT go
through ``execute_command`` with the address bytes as they are, without aiosmtplib's address
parsing (``email.utils``, for every message).

For pipelining (RFC 2920) aiosmtplib's protocol cannot be used at all: it parses one reply
per command awaited and drops what arrives while a parsed reply waits to be picked up, so the
replies to a group of commands would be lost. :class:`Pipe` takes the connection's transport
over with asyncio's ``set_protocol`` (after EHLO, STARTTLS and AUTH went through aiosmtplib),
reads every reply in order, and hands the transport back (:meth:`Pipe.release`) before QUIT.

A failure to connect comes from aiosmtplib as ``SMTPConnectError`` with the reason (the
``OSError``, or ``SMTPServerDisconnected`` when the relay closed before its greeting) as its
``__cause__``, which is not documented either: :func:`connect_cause` reads it.

Only this module touches ``SMTP.protocol``. ``tests/test_aiosmtplib_contract.py`` checks every
attribute, signature and behaviour it leans on against a real server, and ``pyproject.toml``
bounds aiosmtplib to the releases that test passed on: a release that changes them fails that
test by name rather than a send half way.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque

from aiosmtplib import (
    SMTP,
    SMTPReadTimeoutError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
)

__all__ = ["INTERNALS", "TESTED_RANGE", "Pipe", "command", "connect_cause", "read_reply",
           "write_message"]

# The aiosmtplib releases the contract test passed on; pyproject.toml says the same.
TESTED_RANGE: str = ">=3.0,<6"

# Every part of aiosmtplib this module uses beyond its documented API: the contract test
# checks each one by name (and fails when one is added here without a check).
INTERNALS: tuple[str, ...] = (
    "SMTP.protocol",  # None until connected, and again after close()
    "SMTPProtocol.write",  # writes at once, without awaiting
    "SMTPProtocol.read_response",  # the reply to what was written, or a timeout
    "SMTPProtocol.transport",  # the asyncio transport the Pipe takes over
    "SMTPProtocol.connection_lost",  # the Pipe passes a lost connection on to it
    "SMTPResponse",  # the Pipe builds each reply as aiosmtplib parses one
    "SMTPConnectError.__cause__",  # connect_cause: why the connection failed
)


async def command(client: SMTP, *words: bytes) -> SMTPResponse:
    """Send one command line made of ``words`` and return the reply (``MAIL``, ``RCPT``,
    ``DATA``). Raises SMTPServerDisconnected when the connection is gone."""
    return await client.execute_command(*words)


def write_message(client: SMTP, payload: bytes) -> None:
    """Write ``payload`` (the dot-stuffed message and its final dot) after a 354 reply.

    Raises SMTPServerDisconnected when the connection is gone: then nothing was written."""
    protocol = client.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    protocol.write(payload)


async def read_reply(client: SMTP, *, timeout: float) -> SMTPResponse:
    """The reply to what :func:`write_message` wrote, within ``timeout`` seconds.

    Raises SMTPServerDisconnected (the connection broke) or SMTPTimeoutError."""
    protocol = client.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    return await protocol.read_response(timeout=timeout)


def connect_cause(error: BaseException) -> BaseException | None:
    """What aiosmtplib's connection error wraps: the ``OSError`` (refused, no route, a name
    that does not resolve) or the ``SMTPServerDisconnected`` (closed before the greeting)."""
    return error.__cause__


MAX_REPLY: int = 1 << 16  # bytes of one reply, all its lines: more is not an SMTP relay


class Pipe(asyncio.Protocol):
    """The connection of ``client`` taken over for pipelined commands: :meth:`write` sends
    at once, :meth:`read_reply` returns the replies in the order they came, each once.

    While the pipe holds the connection, aiosmtplib's own commands must not be used on it;
    :meth:`release` gives it back. A lost connection is passed on to aiosmtplib's protocol,
    so ``client.is_connected`` stays true to the socket."""

    def __init__(self, client: SMTP) -> None:
        protocol = client.protocol
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None or transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        self._protocol = protocol
        self._transport: asyncio.BaseTransport = transport
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._error: Exception | None = None  # the connection broke, or a garbled reply
        self._waiter: asyncio.Future[None] | None = None
        # One timer for the read timeouts, not one per read (asyncio.wait_for schedules and
        # cancels a timer, and adds two turns of the loop, for every reply awaited): each
        # read moves the deadline on, and the timer, when it fires early, waits again.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        transport.set_protocol(self)

    @property
    def is_open(self) -> bool:
        """False once the connection is known to be gone: :meth:`write` would raise."""
        return self._error is None and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send ``data`` (whole command lines, or a message and its final dot) now.

        Raises SMTPServerDisconnected when the connection is gone: then nothing was written."""
        transport = self._transport
        if not self.is_open:
            raise SMTPServerDisconnected("Connection lost")
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(data)

    async def read_reply(self, *, timeout: float) -> SMTPResponse:
        """The next reply, within ``timeout`` seconds. Raises SMTPServerDisconnected,
        SMTPReadTimeoutError, or SMTPResponseException (code -1) for a garbled reply."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            self._deadline = deadline = loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:  # none set, or set for later
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._time_out, loop)
            try:
                await waiter
            finally:
                self._waiter = None
        return self._replies.popleft()

    def _time_out(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: the awaited reply is late (SMTPReadTimeoutError), or the deadline moved
        on since the timer was set (wait until then), or nothing is awaited (stop)."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if loop.time() >= self._deadline:
            waiter.set_exception(SMTPReadTimeoutError("Timed out waiting for server response"))
        else:
            self._timer = loop.call_at(self._deadline, self._time_out, loop)

    def release(self) -> None:
        """Give the connection back to aiosmtplib (for QUIT)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._error is None and not self._transport.is_closing():
            self._transport.set_protocol(self._protocol)

    # -- asyncio.Protocol --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            take_replies(self._buffer, self._replies)
        except SMTPResponseException as error:
            self._error = error
            self._transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._broken(SMTPServerDisconnected("Unexpected EOF received"))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._broken(error)
        self._protocol.connection_lost(exc)

    def _broken(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def take_replies(buffer: bytearray, replies: deque[SMTPResponse]) -> None:
    """Every whole reply in ``buffer`` to ``replies``, in order, as aiosmtplib reads each
    one (a pipelined group's replies come in one read: they are split in one go); what is
    left of a reply stays in ``buffer``. SMTPResponseException (code -1) for a garbled line,
    and for a reply longer than MAX_REPLY, once the replies before it are in."""
    last = buffer.rfind(b"\n")
    consumed = 0
    if last >= 0:
        lines: list[bytes] = []  # the texts of the reply read so far
        offset = 0
        for line in bytes(buffer[:last]).split(b"\n"):  # each line without its "\n"
            offset += len(line) + 1
            try:
                code = int(line[:3])
            except ValueError:
                del buffer[:consumed]
                text = line.decode("utf-8", errors="ignore").strip()
                raise SMTPResponseException(
                    -1, f"Malformed SMTP response line: {text}") from None
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                replies.append(SMTPResponse(
                    code, b"\n".join(lines).decode("utf-8", "surrogateescape")))
                lines = []
                consumed = offset
        del buffer[:consumed]
    if len(buffer) > MAX_REPLY:
        raise SMTPResponseException(-1, "Response too long")


def leaned_on() -> dict[str, inspect.Signature]:
    """The signatures this module relies on (the contract test compares them)."""
    from aiosmtplib.protocol import SMTPProtocol

    return {
        "SMTP.execute_command": inspect.signature(SMTP.execute_command),
        "SMTPProtocol.write": inspect.signature(SMTPProtocol.write),
        "SMTPProtocol.read_response": inspect.signature(SMTPProtocol.read_response),
        "SMTPProtocol.connection_lost": inspect.signature(SMTPProtocol.connection_lost),
    }
