"""A scripted relay that offers PIPELINING and answers a whole group at once.

aiosmtpd reads a pipelined group line by line and answers each command as it goes, so a
client that waited for every reply would pass against it too. This relay reads all the
client has sent, handles every command in it, and only then writes all the replies in one
write, as Postfix does: :attr:`PipeliningRelay.writes` counts those writes, so a test can
count the round trips a message costs. Faults are scripted per command:

- ``answer(verb, n)``: a reply of its own to the ``n``-th ``verb`` (``MAIL``, ``RCPT``,
  ``DATA`` for the DATA command, ``DOT`` for the end of a message's data), or None;
- ``cut``: a :class:`Cut`, the point where the relay closes the connection once, without
  answering what it has not answered yet.

Runs in the test's own event loop::

    async with PipeliningRelay(cut=Cut("DOT", 2)) as relay:
        await deliver(..., smtp=relay.smtp_settings(), ...)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from invitemail.config import Smtp

HOST = "127.0.0.1"

Answer = Callable[[str, int], str | None]


@dataclass(frozen=True)
class Cut:
    """Close the connection at the ``n``-th ``verb``: ``when`` "before" handling it (the
    command arrived, nothing after it is answered), "mid" (DOT only: half the data
    arrived), or "after" its reply was written."""

    verb: str
    n: int
    when: str = "before"


@dataclass
class Message:
    mail_from: str
    rcpt_to: str
    data: bytes
    connection: int


@dataclass
class PipeliningRelay:
    answer: Answer = lambda verb, n: None
    cut: Cut | None = None
    pipelining: bool = True
    messages: list[Message] = field(default_factory=list)  # every message it accepted
    seen: Counter[str] = field(default_factory=Counter)  # commands handled, by verb
    writes: int = 0  # replies written after the greeting (one per round trip)
    connections: int = 0
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _cut_done: bool = False

    def smtp_settings(self, **overrides: Any) -> Smtp:
        values: dict[str, Any] = {"host": HOST, "port": self.port, "security": "none",
                                  "timeout": 5.0}
        values.update(overrides)
        return Smtp(**values)

    def received(self) -> Counter[str]:
        return Counter(message.rcpt_to for message in self.messages)

    async def __aenter__(self) -> PipeliningRelay:
        self._server = await asyncio.start_server(self._session, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- one connection ----------------------------------------------------------------------

    def _cutting(self, verb: str, n: int, when: str) -> bool:
        cut = self.cut
        if cut is None or self._cut_done or (cut.verb, cut.n, cut.when) != (verb, n, when):
            return False
        self._cut_done = True
        return True

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        writer.write(b"220 relay.test ESMTP\r\n")
        buffer = b""
        envelope: dict[str, str] = {}
        in_data = False
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                replies: list[bytes] = []
                after: list[tuple[str, int]] = []  # cuts due once these replies are out
                while True:
                    if in_data:
                        if buffer and self._cutting("DOT", self.seen["DOT"] + 1, "mid"):
                            raise ConnectionAbortedError  # with the data half read
                        end = buffer.find(b"\r\n.\r\n")
                        if end == -1:
                            break
                        data, buffer = buffer[:end + 2], buffer[end + 5:]
                        in_data = False
                        n = self.seen["DOT"] + 1
                        if self._cutting("DOT", n, "before"):  # the data came, unanswered
                            raise ConnectionAbortedError
                        self.seen["DOT"] = n
                        reply = self.answer("DOT", n)
                        if reply is None:
                            self.messages.append(Message(envelope["from"], envelope["to"],
                                                         data.replace(b"\r\n..", b"\r\n."),
                                                         number))
                            reply = f"250 2.0.0 Ok: queued as {len(self.messages):06X}"
                        envelope = {}
                        replies.append(reply.encode() + b"\r\n")
                        after.append(("DOT", n))
                        continue
                    line_end = buffer.find(b"\r\n")
                    if line_end == -1:
                        break
                    line, buffer = buffer[:line_end].decode(), buffer[line_end + 2:]
                    verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
                    n = self.seen[verb] + 1
                    if self._cutting(verb, n, "before"):
                        raise ConnectionAbortedError
                    self.seen[verb] = n
                    reply, in_data = self._command(verb, line, n, envelope)
                    replies.append(reply.encode() + b"\r\n")
                    after.append((verb, n))
                    if verb == "QUIT":
                        self.writes += 1
                        writer.write(b"".join(replies))
                        return
                if replies:
                    self.writes += 1
                    writer.write(b"".join(replies))
                    await writer.drain()
                if any(self._cutting(verb, n, "after") for verb, n in after) or any(
                        reply.startswith(b"421") for reply in replies):
                    raise ConnectionAbortedError  # "421 ... closing the channel" too
        except (ConnectionAbortedError, ConnectionResetError):
            pass
        finally:
            writer.close()

    def _command(self, verb: str, line: str, n: int,
                 envelope: dict[str, str]) -> tuple[str, bool]:
        """The reply to one command line, and whether the message data comes next."""
        if verb == "EHLO":
            offers = "250-PIPELINING\r\n" if self.pipelining else ""
            return f"250-relay.test\r\n{offers}250-8BITMIME\r\n250 SMTPUTF8", False
        if verb in ("HELO", "NOOP"):
            return "250 Ok", False
        if verb == "RSET":
            envelope.clear()
            return "250 2.0.0 Ok", False
        if verb == "QUIT":
            return "221 2.0.0 Bye", False
        scripted = self.answer(verb, n)
        if verb == "MAIL":
            if "from" in envelope:
                return "503 5.5.1 Error: nested MAIL command", False
            if scripted is not None:
                return scripted, False
            envelope["from"] = line.split("<", 1)[1].split(">", 1)[0]
            return "250 2.1.0 Ok", False
        if verb == "RCPT":
            if "from" not in envelope:
                return "503 5.5.1 Error: need MAIL command", False
            if scripted is not None:
                return scripted, False
            envelope["to"] = line.split("<", 1)[1].split(">", 1)[0]
            return "250 2.1.5 Ok", False
        if verb == "DATA":
            if "to" not in envelope:  # RFC 2920 3.1: no valid recipients
                return "554 5.5.1 Error: no valid recipients", False
            if scripted is not None:
                return scripted, False
            return "354 End data with <CR><LF>.<CR><LF>", True
        return "502 5.5.2 Error: command not recognized", False
