"""The pipe's reply parser (smtp_adapter.take_replies) against the one it replaced, which
took one reply at a time off the buffer: for any bytes, cut into any reads, the same replies
in the same order, the same garbled-line or too-long error after the same replies, and the
same bytes left waiting."""

from __future__ import annotations

from collections import deque

import pytest
from aiosmtplib import SMTPResponse, SMTPResponseException
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invitemail.send.smtp_adapter import MAX_REPLY, take_replies


def one_reply(buffer: bytearray) -> SMTPResponse | None:
    """The parser before: one whole reply from the buffer, or None for now."""
    lines: list[bytes] = []
    offset = 0
    while (end := buffer.find(b"\n", offset)) != -1:
        line = bytes(buffer[offset:end + 1])
        offset = end + 1
        try:
            code = int(line[:3])
        except ValueError:
            text = line.decode("utf-8", errors="ignore").strip()
            raise SMTPResponseException(-1, f"Malformed SMTP response line: {text}") from None
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            del buffer[:offset]
            return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))
    if len(buffer) > MAX_REPLY:
        raise SMTPResponseException(-1, "Response too long")
    return None


def before(reads: list[bytes]) -> tuple[list[SMTPResponse], tuple[int, str] | None, bytes]:
    buffer, replies = bytearray(), []
    for data in reads:
        buffer.extend(data)
        try:
            while (reply := one_reply(buffer)) is not None:
                replies.append(reply)
        except SMTPResponseException as error:
            return replies, (error.code, error.message), b""
    return replies, None, bytes(buffer)


def now(reads: list[bytes]) -> tuple[list[SMTPResponse], tuple[int, str] | None, bytes]:
    buffer, replies = bytearray(), deque[SMTPResponse]()
    for data in reads:
        buffer.extend(data)
        try:
            take_replies(buffer, replies)
        except SMTPResponseException as error:
            return list(replies), (error.code, error.message), b""
    return list(replies), None, bytes(buffer)


LINE = st.sampled_from([
    b"250 2.0.0 Ok: queued as 4XyZ", b"250-PIPELINING", b"250 ", b"250", b"354 End data with",
    b"250-", b"452-4.3.1 first", b"452 4.3.1 second", b"25", b"2", b"", b"\r", b"+25 x",
    b"2_5 x", b" 25 x", b"250 caf\xc3\xa9", b"250 \xff\xfe", b"250-\t spaced \t",
    b"garbled", b"421 4.4.2 closing",
]) | st.binary(max_size=8)
ENDING = st.sampled_from([b"\r\n", b"\n", b"\r\n", b""])


@st.composite
def reads(draw: st.DrawFn) -> list[bytes]:
    """A relay's bytes (reply lines, CRLF or LF, maybe a last line cut short), cut into
    reads at arbitrary points."""
    lines = draw(st.lists(st.tuples(LINE, ENDING), max_size=14))
    stream = b"".join(text + end for text, end in lines)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@settings(max_examples=400)
@given(reads())
@example([b"250 ok\r\n250-first\r\n250 second\r\n354 go\r\n"])
@example([b"250-one\r\n250-two", b"\r\n250 three\r\n2"])
@example([b"250 ok\r\nnot smtp\r\n250 never\r\n"])
@example([b"250-a\r\n", b"x\r\n"])
def test_replies_are_what_the_one_at_a_time_parser_gave(chunks: list[bytes]) -> None:
    assert now(chunks) == before(chunks)


@pytest.mark.parametrize("reads", [
    [b"250-" + b"x" * MAX_REPLY + b"\r\n"],  # one line too many: its reply never ends
    [b"250 ok\r\n", b"250-" + b"y" * (MAX_REPLY // 2) + b"\r\n", b"250-" + b"z" * MAX_REPLY],
    [b"250 ok\r\n" * 20_000],  # long, but every reply whole
])
def test_a_reply_longer_than_the_limit_is_refused_after_the_ones_before(
        reads: list[bytes]) -> None:
    assert now(reads) == before(reads)

