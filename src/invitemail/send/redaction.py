"""Text from a relay, made safe to show and to store.

A relay's reply is the one text invitemail shows and journals that a stranger wrote. Two
things must never get through: the SMTP password (a relay may echo the AUTH payload back,
``535 5.7.8 you sent:AHVzZXIAc2VjcmV0``), and terminal control (an escape
sequence that retitles the window, hides a link behind text, clears the screen, or rings the
bell; a bidi override that reverses what follows). :func:`clean_reply` does, in this order:

1. redact the password and every base64 form of it, on the text exactly as it came (so a
   password with two spaces or a tab is found before white space is touched);
2. remove escape sequences (CSI, OSC up to BEL or ST, the string sequences; 8-bit forms too);
3. collapse white space of every kind to single spaces;
4. show every other character that is not printable (C0 and C1 controls, DEL, bidi and other
   format characters, lone surrogates from bytes that were not UTF-8) as ``?``;
5. redact again (the steps above could have joined a password together), then cut the text.

Pure functions, no outside library: tested on their own with property tests.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import re

__all__ = ["MAX_REPLY", "REDACTED", "clean_reply", "format_reply", "redact"]

REDACTED = "[redacted]"
MAX_REPLY = 1000  # characters of a reply kept (a relay can answer with many lines)

# A run of base64 characters, standard or URL-safe, with its padding. A base64 form of the
# password is searched for inside every run: a run may begin with text that is not base64 at
# all ("sent:AHVz..." is a run of "AHVz..."; "user/AHVz..." is one run, prefix included).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]+=*")
_TO_STANDARD = str.maketrans("-_", "+/")


@functools.lru_cache(maxsize=4)
def _needle(secret: str) -> tuple[bytes, int]:
    """The password's bytes as AUTH sends them (UTF-8), and the fewest base64 characters
    that can hold them."""
    try:
        data = secret.encode("utf-8")
    except UnicodeEncodeError:  # not sendable anyway; still never shown
        data = secret.encode("utf-8", "surrogatepass")
    return data, (len(data) * 4 + 2) // 3


@functools.lru_cache(maxsize=4)
def _plain_marker(secret: str) -> str:
    """What replaces a password when "[redacted]" itself could spell it, or a base64 form of
    it: characters that are neither in the password nor base64, so that the marker and what
    is left around it can never spell either."""
    candidates = itertools.chain("*#~%!", map(chr, itertools.count(0x2591)))
    return next(char * 3 for char in candidates if char not in secret and char.isprintable())


def _holds(run: str, needle: bytes) -> bool:
    """Whether the base64 ``run`` encodes ``needle`` somewhere, at any alignment.

    Base64 encodes each group of 3 bytes as 4 characters on its own, so decoding the run from
    each of its first four characters finds the bytes wherever the encoding began: the AUTH
    LOGIN payload (the password alone), the AUTH PLAIN payload (authzid, user and password
    joined by NULs) and anything longer. Padding is optional; a partial last group still
    decodes its whole bytes.
    """
    body = run.rstrip("=").translate(_TO_STANDARD)
    for offset in range(4):
        chunk = body[offset:]
        whole = len(chunk) - len(chunk) % 4
        tail = chunk[whole:]
        if len(tail) == 1:  # six bits: not a byte
            chunk = chunk[:whole]
        elif tail:
            chunk += "=" * (4 - len(tail))
        try:
            if needle in binascii.a2b_base64(chunk):
                return True
        except binascii.Error:
            continue
    return False


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced by ``[redacted]`` wherever it appears, and every run
    of base64 that encodes it (AUTH PLAIN and LOGIN payloads, standard or URL-safe, padded or
    not, whatever punctuation surrounds it) replaced whole."""
    if not secret:
        return text
    spans: list[tuple[int, int]] = []
    start = text.find(secret)
    while start >= 0:
        spans.append((start, start + len(secret)))
        start = text.find(secret, start + 1)
    needle, shortest = _needle(secret)
    for found in _BASE64_RUN.finditer(text):
        run = found.group()
        if len(run) >= shortest and _holds(run, needle):
            spans.append(found.span())
    if not spans:
        return text
    out = _replace(text, spans, REDACTED)
    if secret in out or _holds(REDACTED[1:-1], needle):  # "[redacted]" helps spell it
        out = _replace(text, spans, _plain_marker(secret))
    return out


def _replace(text: str, spans: list[tuple[int, int]], marker: str) -> str:
    """``text`` with each of the (possibly overlapping) ``spans`` replaced by ``marker``."""
    pieces: list[str] = []
    done = 0
    for begin, end in sorted(spans):
        if end <= done:
            continue
        if begin >= done:
            pieces += [text[done:begin], marker]
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


# Terminal escape sequences (ECMA-48), removed whole: what they would do is the danger, and
# their parameters (a window title, a link's target) are not the relay's message.
_ESCAPES = re.compile(
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|$)"  # OSC ... BEL or ST (OSC 8 links)
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c|$)"  # DCS, SOS, PM, APC
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clearing the screen
    r"|\x1b[ -/]*[0-~]"  # every other escape sequence
)


def clean_reply(text: str, secret: str | None = None, *, limit: int = MAX_REPLY) -> str:
    """``text`` (a relay's reply, or a sentence quoting one) safe to print and to store:
    one line of printable characters, without ``secret``, at most ``limit`` characters and
    "..." (see the module's docstring for the steps and their order)."""
    redacted = redact(text, secret)
    cleaned = redacted
    if not cleaned.isprintable():
        cleaned = _ESCAPES.sub("", cleaned)
    cleaned = " ".join(cleaned.split())
    if not cleaned.isprintable():
        cleaned = "".join(c if c.isprintable() else "?" for c in cleaned)
    if cleaned != redacted:  # what was taken out or joined up could spell the password
        cleaned = redact(cleaned, secret)
    if len(cleaned) > limit:
        cleaned = redact(cleaned[:limit] + "...", secret)
    return cleaned


def format_reply(code: int, message: str, secret: str | None = None) -> str:
    """``550``, ``"5.1.1 <x@y>:\\nuser unknown"`` -> ``"550 5.1.1 <x@y>: user unknown"``.

    The text is cleaned as :func:`clean_reply` says: ``secret`` (the password) and its base64
    forms redacted before anything else, terminal escape sequences and control characters
    taken out. aiosmtplib gives code -1 for a reply that is not SMTP at all (garbled, or a
    line too long): then the text alone, shortened, says what came.
    """
    if not 100 <= code <= 599:
        return clean_reply(message, secret, limit=120) or "an empty reply"
    text = clean_reply(message, secret)
    return f"{code} {text}" if text else str(code)
