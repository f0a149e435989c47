"""One message for one recipient, and its bytes as they go on the wire.

Pure: no I/O, so the wire form is tested without a socket. :func:`dot_stuff` is the message
after DATA (RFC 5321 4.5.2), :func:`unstuffed` the message again, :func:`quoted` an address on
a MAIL FROM or RCPT TO line.

invitemail's own messages are stuffed where they are built (a worker process: see
outcome.Built), so the process that speaks SMTP only splices the Date in; an envelope says so
with ``stuffed``, and any other message is stuffed on its way out, as it always was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from invitemail.mime.quoted_printable import dot_stuffed

__all__ = ["Envelope", "dot_stuff", "quoted", "unstuffed"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient."""

    key: str  # the journal's key for this recipient (opaque to the transport)
    sender: str  # MAIL FROM address
    recipient: str  # the ONE RCPT TO address
    data: bytes  # the whole message, CRLF line endings (or its wire form: ``stuffed``)
    # True when every line of ``data`` is known to end in CRLF, with no other CR or LF in it
    # (invitemail's own messages are written so): the transport skips checking that.
    crlf: bool = False
    # True when ``data`` is the wire form already (dot_stuff's result: dot-stuffed, CRLF,
    # with the final dot), as a worker made it: it goes out as it is.
    stuffed: bool = False
    ascii: bool | None = None  # whether ``data`` is all ASCII, when the caller knows

    def wire(self) -> bytes:
        """The message as it goes on the wire after DATA, with the final dot."""
        return self.data if self.stuffed else dot_stuff(self.data, crlf=self.crlf)


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
    return dot_stuffed(data) + b".\r\n"


def unstuffed(wire: bytes) -> bytes:
    """The message ``wire`` was made from by :func:`dot_stuff` (``data`` that ended in CRLF
    with no stray CR or LF: what :func:`dot_stuff` leaves alone apart from the dots)."""
    data = wire[1:-3] if wire.startswith(b"..") else wire[:-3]  # the final ".\r\n"
    return data.replace(b"\r\n..", b"\r\n.") if b"\r\n.." in data else data


_NOT_ON_A_COMMAND_LINE = frozenset("\r\n\0<> ")


def quoted(address: str, encoding: str) -> bytes:
    """``<address>`` for MAIL FROM or RCPT TO. The addresses were validated when the list
    was read; this only refuses what would break the command line."""
    if not address or not _NOT_ON_A_COMMAND_LINE.isdisjoint(address):
        raise ValueError(f"{address!r} cannot go on an SMTP command line")
    return b"<" + address.encode(encoding) + b">"
