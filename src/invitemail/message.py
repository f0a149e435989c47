"""Rendered parts -> the bytes of one message.

The MIME is written directly rather than through ``email.message.EmailMessage``: its default
policy costs more than sending the message (about 400 messages a second here), and writing
the few headers and parts ourselves keeps every line CRLF-terminated and under 998 octets by
construction. The tests read every message back with the standard library's parser.

Structure::

    multipart/mixed
      multipart/alternative
        text/plain; charset=utf-8           (quoted-printable)
        text/html; charset=utf-8            (quoted-printable)
        text/calendar; method=REQUEST       (base64)
      application/ics; name="invite.ics"    (base64, attachment)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime, formataddr

from invitemail.addresses import Mailbox
from invitemail.config import LINE_BREAKS

CRLF = b"\r\n"


class HeaderValueError(ValueError):
    """A value that would break a header (a line break from the CSV or a template)."""


@dataclass(frozen=True, slots=True)
class MessageParts:
    """Everything one message is made of."""

    sender: Mailbox
    recipient: Mailbox
    reply_to: Mailbox | None
    subject: str
    date: dt.datetime
    message_id: str  # with the angle brackets
    text: str
    html: str
    calendar: bytes  # the iCalendar file
    method: str  # "REQUEST" or "CANCEL"
    # The text and HTML as pieces and values (see :func:`quoted_printable_pieces`), when
    # they were filled in from a skeleton: the same body, encoded faster.
    text_pieces: tuple[Sequence[str | int], Sequence[str]] | None = None
    html_pieces: tuple[Sequence[str | int], Sequence[str]] | None = None


def make_message_id(domain: str, *parts: object, unique: bool = False) -> str:
    """A Message-ID on the sender's domain.

    Derived from ``parts`` (event, template, sequence, registrant), so a message resent after
    an uncertain outcome carries the same Message-ID and mail clients that deduplicate by it
    show it once. ``unique`` adds randomness (test messages).
    """
    seed = "\0".join(str(p) for p in parts)
    if unique:
        seed += "\0" + secrets.token_hex(8)
    digest = hashlib.sha256(seed.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


# Every control character but tab, and the Unicode line breaks that are not control characters.
_NOT_IN_HEADERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _check_one_line(what: str, value: str) -> None:
    """A header value may hold no line break of any kind and no control character but tab:
    a reader could start a new header at one, or show it raw."""
    found = _NOT_IN_HEADERS.search(value)
    if found is None:
        return
    for char in value[found.start():]:
        if char in LINE_BREAKS:
            raise HeaderValueError(f"the {what} contains a line break")
        if char != "\t" and unicodedata.category(char) == "Cc":
            raise HeaderValueError(f"the {what} contains a control character "
                                   f"(U+{ord(char):04X})")


_WORD_BYTES = 45  # 45 bytes -> 60 base64 characters -> a 72-character encoded word


def encoded_words(text: str) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words, folded with CRLF + space between them.

    Written here rather than with ``email.header.Header``, which costs more than the rest of
    the message; a word never splits a UTF-8 character.
    """
    data = text.encode("utf-8")
    words: list[bytes] = []
    start = 0
    while start < len(data):
        cut = min(start + _WORD_BYTES, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # inside a character: go back
            cut -= 1
        words.append(data[start:cut])
        start = cut
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


def encode_mailbox(mailbox: Mailbox) -> str:
    """``"Søren <s@example.org>"`` with the display name RFC 2047-encoded, the address plain."""
    _check_one_line("name", mailbox.name)
    _check_one_line("address", mailbox.address)
    if _needs_encoding(mailbox.name):
        return f"{encoded_words(mailbox.name)} <{mailbox.address}>"
    return formataddr((mailbox.name, mailbox.address))


def encode_text_header(value: str) -> str:
    _check_one_line("subject", value)
    return encoded_words(value) if _needs_encoding(value) else value


def _needs_encoding(value: str) -> bool:
    # "=?" would be read as the start of an encoded word and shown decoded: encode it.
    return bool(value) and (not value.isascii() or len(value) > 900 or "=?" in value)


_QP_LINES: dict[str, bytes] = {}  # a line -> its encoding; shared lines recur in every message
_QP_CACHED = 20_000  # lines kept at once (the lines holding a registrant's name never recur)


def _quoted_printable(text: str) -> bytes:
    """``text`` as quoted-printable UTF-8 with CRLF line endings.

    Quoted-printable encodes each line on its own (a soft line break never crosses a line
    ending), so a line's encoding is kept and reused: most lines of a message (the meeting
    details, the FAQ, the layout) are the same in every message of a run.
    """
    # Normalise line endings first: b2a_qp keeps "\r" as a byte of its own otherwise.
    *lines, last = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cache = _QP_LINES
    if len(cache) + len(lines) > _QP_CACHED:
        cache.clear()
    encoded = []
    for line in lines:
        found = cache.get(line)
        if found is None:  # encoded with its line ending: the end of a line is encoded
            # differently from the end of the text
            found = cache[line] = _qp(line + "\n")
        encoded.append(found)
    if last:
        encoded.append(_qp(last))
    return b"".join(encoded)


# A skeleton part's encoding plan: its complete constant lines encoded once, and the lines
# that hold a value as the pieces to join for each message. Keyed by the pieces' id, with
# the pieces kept alongside so that the id cannot be reused while the entry lives.
_Plan = list[bytes | tuple[list[str | int], bool]]
_PLANS: dict[int, tuple[Sequence[str | int], _Plan | None]] = {}
_PLANS_CACHED = 512  # two parts for each of the renderer's 256 skeletons


def quoted_printable_pieces(pieces: Sequence[str | int], values: Sequence[str]) -> bytes:
    """What :func:`_quoted_printable` gives for the text ``pieces`` make with ``values``
    (each int in ``pieces`` is an index into ``values``).

    The pieces are the same objects for every message of a group, so their lines are
    encoded once; per message only the lines that hold a value are encoded.
    """
    entry = _PLANS.get(id(pieces))
    if entry is None or entry[0] is not pieces:
        if len(_PLANS) >= _PLANS_CACHED:
            _PLANS.clear()
        entry = _PLANS[id(pieces)] = (pieces, _plan(pieces))
    plan = entry[1]
    if plan is None:
        return _quoted_printable("".join(p if isinstance(p, str) else values[p]
                                         for p in pieces))
    encoded = []
    for item in plan:
        if isinstance(item, bytes):
            encoded.append(item)
            continue
        line_pieces, ended = item
        line = "".join([p if isinstance(p, str) else values[p] for p in line_pieces])
        if ended:
            line += "\n"
        if "\r" in line or "\n" in line[:-1]:  # a value with a line break of its own
            encoded.append(_quoted_printable(line))
        elif line:
            encoded.append(_qp(line))
    return b"".join(encoded)


def _plan(pieces: Sequence[str | int]) -> _Plan | None:
    """The encoding plan of a skeleton part; None when a constant piece holds "\r" (a line
    ending could then straddle a piece and a value: the whole text is encoded instead)."""
    if any(isinstance(p, str) and "\r" in p for p in pieces):
        return None
    plan: _Plan = []
    line: list[str | int] = []  # the pieces of the line being gathered
    for piece in pieces:
        if isinstance(piece, int) or "\n" not in piece:
            line.append(piece)
            continue
        first, *middle, last = piece.split("\n")
        line.append(first)
        if all(isinstance(p, str) for p in line):
            plan.append(_qp("".join(line) + "\n"))  # type: ignore[arg-type]
        else:
            plan.append((line, True))
        if middle:
            plan.append(b"".join(_qp(m + "\n") for m in middle))
        line = [last] if last else []
    if line:
        plan.append((line, False))
    return plan


def _qp(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", CRLF)


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


# "=_" cannot occur in a quoted-printable or base64 body (QP writes "=" as "=3D"; base64 has
# no "_"), and every part here is one of those, so a fixed boundary never collides. Fixed
# boundaries also let a reader's parser reuse its compiled pattern for every message.
OUTER_BOUNDARY = "=_invitemail_mixed_0"
INNER_BOUNDARY = "=_invitemail_alternative_1"


@functools.lru_cache(maxsize=16)
def _date_header(date: dt.datetime) -> str:
    return format_datetime(date)  # every message of a run has the run's date


def build_message(parts: MessageParts) -> bytes:
    """The message as sent: CRLF line endings, no line over 998 octets."""
    outer, inner = OUTER_BOUNDARY, INNER_BOUNDARY
    headers = [
        f"From: {encode_mailbox(parts.sender)}",
        f"To: {encode_mailbox(parts.recipient)}",
    ]
    if parts.reply_to is not None:
        headers.append(f"Reply-To: {encode_mailbox(parts.reply_to)}")
    headers += [
        f"Subject: {encode_text_header(parts.subject)}",
        f"Date: {_date_header(parts.date)}",
        f"Message-ID: {parts.message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{outer}"',
    ]
    method = parts.method
    calendar = _base64(parts.calendar)  # the same file twice: inline, and attached
    chunks = [
        "\r\n".join(headers).encode("ascii"), CRLF, CRLF,
        b"This is a message in MIME format.\r\n",
        f"--{outer}\r\n".encode(),
        f'Content-Type: multipart/alternative; boundary="{inner}"\r\n\r\n'.encode(),
        f"--{inner}\r\n".encode(),
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        quoted_printable_pieces(*parts.text_pieces) if parts.text_pieces
        else _quoted_printable(parts.text), CRLF,
        f"--{inner}\r\n".encode(),
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        quoted_printable_pieces(*parts.html_pieces) if parts.html_pieces
        else _quoted_printable(parts.html), CRLF,
        f"--{inner}\r\n".encode(),
        f"Content-Type: text/calendar; charset=utf-8; method={method}\r\n".encode(),
        b"Content-Transfer-Encoding: base64\r\n\r\n",
        calendar,
        f"--{inner}--\r\n".encode(),
        f"--{outer}\r\n".encode(),
        f'Content-Type: application/ics; name="invite.ics"; method={method}\r\n'.encode(),
        b'Content-Disposition: attachment; filename="invite.ics"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n",
        calendar,
        f"--{outer}--\r\n".encode(),
    ]
    return b"".join(chunks)
