"""Text -> quoted-printable UTF-8 with CRLF line endings: the text and HTML parts' encoding.

The one encoder that reads a body's segments (render/body.py): a run of lines shared by a
group of messages is encoded once, and its encoding kept on that run; the lines that hold a
registrant's value are encoded for each message. Whichever way a body was made, its bytes
are those of its whole text encoded at once (tests/test_message.py checks both).

``stuffed``: the encoding dot-stuffed as it goes on the wire after DATA (RFC 5321 4.5.2: a
line that starts with "." gets another). A run of shared lines is stuffed once, with its
encoding, so a message's wire form is not searched for dots whole in every message
(tests/test_build_speed.py checks it against stuffing the plain encoding).
"""

from __future__ import annotations

import binascii

from invitemail.render.body import Body, SharedLines

CRLF = b"\r\n"
ENCODING = "quoted-printable"  # the name SharedLines.encodings keeps this encoding under
STUFFED = "quoted-printable, dot-stuffed"  # and its wire form


def quoted_printable(body: Body | str, *, stuffed: bool = False) -> bytes:
    """``body`` as quoted-printable UTF-8 with CRLF line endings; ``stuffed``: with every
    line that starts with "." given another (the text starts at the start of a line)."""
    if isinstance(body, str):
        return _quoted_printable(body, stuffed)
    # Every segment but the last ends with a line ending, so each starts a line: stuffing
    # them one by one stuffs the whole.
    name = STUFFED if stuffed else ENCODING
    encoded = []
    for segment in body.segments():
        if isinstance(segment, SharedLines):
            found = segment.encodings.get(name)
            if found is None:
                found = segment.encodings[name] = _quoted_printable(segment.text, stuffed)
            encoded.append(found)
        elif "\r" in segment or "\n" in segment[:-1]:  # the whole text, or a value with a
            encoded.append(_quoted_printable(segment, stuffed))  # line break of its own
        elif segment:  # a line holding a value: it never recurs, so it is not kept
            encoded.append(dot_stuffed(_qp(segment)) if stuffed else _qp(segment))
    return b"".join(encoded)


def dot_stuffed(lines: bytes) -> bytes:
    """``lines`` (starting at the start of a line, CRLF line endings) with a "." added to
    every line that starts with one."""
    if lines[:1] == b".":
        lines = b"." + lines
    return lines.replace(b"\r\n.", b"\r\n..") if b"\r\n." in lines else lines


_QP_LINES: dict[str, bytes] = {}  # a line -> its encoding; shared lines recur in every message
_QP_STUFFED: dict[str, bytes] = {}  # a line -> its encoding, dot-stuffed
_QP_CACHED = 20_000  # lines kept at once (the lines holding a registrant's name never recur)


def _quoted_printable(text: str, stuffed: bool = False) -> bytes:
    """``text`` as quoted-printable UTF-8 with CRLF line endings.

    Quoted-printable encodes each line on its own (a soft line break never crosses a line
    ending), so a line's encoding is kept and reused: most lines of a message (the meeting
    details, the FAQ, the layout) are the same in every message of a run.
    """
    # Normalise line endings first: b2a_qp keeps "\r" as a byte of its own otherwise.
    *lines, last = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cache = _QP_STUFFED if stuffed else _QP_LINES
    if len(cache) + len(lines) > _QP_CACHED:
        cache.clear()
    encoded = []
    for line in lines:
        found = cache.get(line)
        if found is None:  # encoded with its line ending: the end of a line is encoded
            # differently from the end of the text
            found = _qp(line + "\n")
            found = cache[line] = dot_stuffed(found) if stuffed else found
        encoded.append(found)
    if last:
        encoded.append(dot_stuffed(_qp(last)) if stuffed else _qp(last))
    return b"".join(encoded)


def _qp(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", CRLF)
