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

A message without a calendar (the follow-up) is the multipart/alternative alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from email.utils import format_datetime

from invitemail.inputs.addresses import Mailbox
from invitemail.inputs.config import LINE_BREAKS
from invitemail.mime.ics import base64_lines
from invitemail.mime.quoted_printable import dot_stuffed, quoted_printable
from invitemail.render.body import Body

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
    text: Body | str  # a str: a body rendered in full
    html: Body | str
    calendar: bytes | None  # the iCalendar file; None: no calendar part
    method: str  # "REQUEST" or "CANCEL"
    calendar_base64: bytes | None = None  # ics.base64_lines(calendar), when made already


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


# RFC 5322 2.1.1: a line MUST NOT be longer than 998 octets and SHOULD NOT be longer than 78;
# RFC 2047 2: a line that holds an encoded word is at most 76, an encoded word at most 75.
MAX_LINE = 998
FOLD_AT = 78
_WORDS_LINE = 76
_WORD_BYTES = 45  # 45 bytes -> 60 base64 characters -> a 72-character encoded word
_WORD_FRAME = len("=?utf-8?b??=")


def encoded_words(text: str, *, start: int = 0) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words, folded with CRLF + space between them.

    ``start`` is the column the first word begins at (after ``Subject: ``): that word is made
    short enough for its line to stay within 76 characters, like every other line. Written
    here rather than with ``email.header.Header``, which costs more than the rest of the
    message; a word never splits a UTF-8 character.
    """
    data = text.encode("utf-8")
    # Bytes the first word holds: whole base64 groups that fit after `start` (at least one
    # character of up to four bytes, on a header name of any length).
    room = min(_WORD_BYTES, max(6, 3 * ((_WORDS_LINE - start - _WORD_FRAME) // 4)))
    if len(data) <= room:  # most names and subjects: one word
        return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="
    words: list[bytes] = []
    begin = 0
    while begin < len(data):
        cut = min(begin + room, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # inside a character: go back
            cut -= 1
        words.append(data[begin:cut])
        begin, room = cut, _WORD_BYTES
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


# A display name that can go in a header as it is: atoms (RFC 5322 3.2.3) with one space
# between them. Anything else is quoted, or encoded when it is not ASCII.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")


def encode_mailbox(mailbox: Mailbox, *, header: str = "To") -> str:
    """The value of a ``header`` such as ``To``: ``"Name" <addr>``, the address plain and the
    display name RFC 2047-encoded when it is not ASCII, and folded so that every line of the
    header stays within 78 characters (76 with encoded words) whatever the name holds.

    A name that needs quoting doubles its backslashes and quotes, so a name that would not
    fit on the first line is encoded instead (encoded words fold anywhere). Only the address
    itself cannot be folded: email addresses are at most 254 octets (addresses.py).
    """
    name, address = mailbox.name, mailbox.address
    _check_one_line("name", name)
    _check_one_line("address", address)
    start = len(header) + 2  # "To: "
    if len(address) > MAX_LINE - start - 3:
        raise HeaderValueError(f"the address is {len(address)} characters long, too long "
                               "for a header")
    if not name:
        return address
    if name.isascii() and "=?" not in name:
        phrase = name if _ATOMS.fullmatch(name) else \
            '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if start + len(phrase) + len(address) + 3 <= FOLD_AT:  # the common case
            return f"{phrase} <{address}>"
        if start + len(phrase) <= FOLD_AT:
            return f"{phrase}\r\n <{address}>"
    # "=?" would be read as the start of an encoded word and shown decoded: encode it.
    words = encoded_words(name, start=start)
    column = start + len(words) if "\n" not in words else len(words.rpartition("\n")[2])
    if column + len(address) + 3 <= _WORDS_LINE:
        return f"{words} <{address}>"
    return f"{words}\r\n <{address}>"


@functools.lru_cache(maxsize=256)  # most messages of a run share their subject
def encode_text_header(value: str, *, header: str = "Subject") -> str:
    """The value of an unstructured ``header``: ASCII text as it is, folded at its spaces
    when long; anything else (non-ASCII, "=?", white space at either end, a word too long to
    fold) as RFC 2047 encoded words. Every line of the header stays within 78 characters."""
    _check_one_line("subject", value)
    if not value:
        return value
    start = len(header) + 2
    if value.isascii() and "=?" not in value and not (value[0] in " \t" or value[-1] in " \t"):
        if start + len(value) <= FOLD_AT:  # the common case
            return value
        folded = _fold_at_spaces(value, start)
        if folded is not None:
            return folded
    return encoded_words(value, start=start)


_WORDS_WITH_SPACE = re.compile(r"[ \t]*[^ \t]+")


def _fold_at_spaces(value: str, start: int) -> str | None:
    """``value`` folded before white space so that no line is longer than 78 characters,
    or None when a word is too long for that. Unfolding (removing each CRLF) gives
    ``value`` back; no line is only white space."""
    lines: list[str] = []
    line, column = "", start
    for word in _WORDS_WITH_SPACE.findall(value):
        if line and column + len(word) > FOLD_AT:
            lines.append(line)
            line, column = "", 0
        line += word
        column += len(word)
        if column > FOLD_AT:
            return None
    lines.append(line)
    return "\r\n".join(lines)


def _check_line_lengths(headers: list[str]) -> None:
    """The assurance behind the encoders above, over the whole header block: no line over
    998 octets. (Only an address longer than any valid one could make one.)"""
    for header in headers:
        if len(header) > MAX_LINE:
            longest = max(len(line.encode("utf-8")) for line in header.split("\r\n"))
            if longest > MAX_LINE:
                raise HeaderValueError(
                    f"the {header.partition(':')[0][:40]} header would have a line of "
                    f"{longest} octets, more than the {MAX_LINE} a message may have")


# "=_" cannot occur in a quoted-printable or base64 body (QP writes "=" as "=3D"; base64 has
# no "_"), and every part here is one of those, so a fixed boundary never collides. Fixed
# boundaries also let a reader's parser reuse its compiled pattern for every message.
OUTER_BOUNDARY = "=_invitemail_mixed_0"
INNER_BOUNDARY = "=_invitemail_alternative_1"


def _date_header(date: dt.datetime) -> str:
    # Cached by the local time and its offset: aware datetimes of one instant in two zones
    # are equal (and hash alike), and would share one zone's text.
    return _date_text(date.replace(tzinfo=None), date.utcoffset())


@functools.lru_cache(maxsize=16)
def _date_text(local: dt.datetime, offset: dt.timedelta | None) -> str:
    """The Date header's value; one second's messages share it: formatted once."""
    return format_datetime(local if offset is None else
                           local.replace(tzinfo=dt.timezone(offset)))


def restamp_date(data: bytes, date: dt.datetime) -> bytes:
    """``data`` (as :func:`build_message` wrote it, or its wire form: a Date line never
    starts with a dot, so stuffing leaves it alone) with its Date header set to ``date``, to
    the second: the moment the message is handed over, not when it was built. One copy."""
    return restamp_header(data, _date_header(date.replace(microsecond=0)).encode("ascii"))


class DateHeaders:
    """The Date header's value for a moment, in ``zone``, made once per second: a run dates
    every message as it hands it over, and a second's messages share one text (hashing an
    aware datetime to look it up costs more than splicing it in)."""

    def __init__(self, zone: dt.tzinfo) -> None:
        self.zone = zone
        self._second: dt.datetime | None = None
        self._text = b""

    def at(self, moment: dt.datetime) -> bytes:
        """What :func:`restamp_date` writes for ``moment`` (an aware datetime)."""
        second = moment.replace(microsecond=0)
        if self._second is None or second != self._second:
            self._text = _date_header(second.astimezone(self.zone)).encode("ascii")
            self._second = second
        return self._text


def restamp_header(data: bytes, value: bytes) -> bytes:
    """``data`` with the value of its Date header replaced by ``value`` (see
    :func:`restamp_date`, :class:`DateHeaders`). One copy."""
    start = data.find(b"\r\nDate: ")
    head_end = data.find(b"\r\n\r\n")
    if start < 0 or 0 <= head_end < start:
        return data  # no Date header in the head
    start += len(b"\r\nDate: ")
    end = data.find(b"\r\n", start)
    if end < 0:  # the Date line is the last line, and has no line ending
        end = len(data)
    # Slices of a memoryview are not copies: the join is the only one.
    whole = memoryview(data)
    return b"".join((whole[:start], value, whole[end:]))


@functools.lru_cache(maxsize=64)
def _sender_header(mailbox: Mailbox, header: str) -> str:
    """From and Reply-To: the same in every message of a run, encoded once."""
    return f"{header}: {encode_mailbox(mailbox, header=header)}"


def build_message(parts: MessageParts, *, wire: bool = False) -> bytes:
    """The message as sent: CRLF line endings, no line over 998 octets; ``wire``: as it
    goes on the wire after DATA (``send.envelope.dot_stuff(message, crlf=True)``).

    For the wire form only the parts whose lines can start with "." are stuffed (the
    head, and the text and HTML, whose runs of shared lines are stuffed once for the
    group: quoted_printable.py); the fixed lines and base64 never start with one.

    Raises HeaderValueError when a value cannot go in a header.
    """
    outer, inner = OUTER_BOUNDARY, INNER_BOUNDARY
    headers = [
        _sender_header(parts.sender, "From"),
        f"To: {encode_mailbox(parts.recipient)}",
    ]
    if parts.reply_to is not None:
        headers.append(_sender_header(parts.reply_to, "Reply-To"))
    headers += [
        f"Subject: {encode_text_header(parts.subject)}",
        f"Date: {_date_header(parts.date)}",
        f"Message-ID: {parts.message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{outer}"' if parts.calendar is not None
        else f'Content-Type: multipart/alternative; boundary="{inner}"',
    ]
    _check_line_lengths(headers)
    try:
        head = "\r\n".join(headers).encode("ascii")
        if wire:
            head = dot_stuffed(head)
    except UnicodeEncodeError as err:  # an address that was not checked
        raise HeaderValueError(f"a header would hold {err.object[err.start:err.end]!r}, "
                               "which is not ASCII") from None
    method = parts.method
    alternative = [
        f"--{inner}\r\n".encode(),
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        quoted_printable(parts.text, stuffed=wire), CRLF,
        f"--{inner}\r\n".encode(),
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        quoted_printable(parts.html, stuffed=wire), CRLF,
    ]
    if parts.calendar is None:
        return b"".join([head, CRLF, CRLF, b"This is a message in MIME format.\r\n",
                         *alternative, f"--{inner}--\r\n".encode(), *_end(wire)])
    calendar = parts.calendar_base64  # the same file twice: inline, and attached
    if calendar is None:
        calendar = base64_lines(parts.calendar)
    chunks = [
        head, CRLF, CRLF,
        b"This is a message in MIME format.\r\n",
        f"--{outer}\r\n".encode(),
        f'Content-Type: multipart/alternative; boundary="{inner}"\r\n\r\n'.encode(),
        *alternative,
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
        *_end(wire),
    ]
    return b"".join(chunks)


def _end(wire: bool) -> tuple[bytes, ...]:
    return (b".\r\n",) if wire else ()  # the wire form's final dot
