"""Text -> quoted-printable UTF-8 with CRLF line endings: the text and HTML parts' encoding.

The one encoder that reads a body's segments (render/body.py): a run of lines shared by a
group of messages is encoded once, and its encoding kept on that run; the lines that hold a
registrant's value are encoded for each message. Whichever way a body was made, its bytes
are those of its whole text encoded at once (tests/test_message.py checks both).
"""

from __future__ import annotations

import binascii

from invitemail.render.body import Body, SharedLines

CRLF = b"\r\n"
ENCODING = "quoted-printable"  # the name SharedLines.encodings keeps this encoding under


def quoted_printable(body: Body | str) -> bytes:
    """``body`` as quoted-printable UTF-8 with CRLF line endings."""
    if isinstance(body, str):
        return _quoted_printable(body)
    encoded = []
    for segment in body.segments():
        if isinstance(segment, SharedLines):
            found = segment.encodings.get(ENCODING)
            if found is None:
                found = segment.encodings[ENCODING] = _quoted_printable(segment.text)
            encoded.append(found)
        elif "\r" in segment or "\n" in segment[:-1]:  # the whole text, or a value with a
            encoded.append(_quoted_printable(segment))  # line break of its own
        elif segment:  # a line holding a value: it never recurs, so it is not kept
            encoded.append(_qp(segment))
    return b"".join(encoded)


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


def _qp(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", CRLF)
