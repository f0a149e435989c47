"""A registrant file's bytes -> text, decided on evidence, and text that shows it went wrong.

Exports are UTF-8 (with or without Excel's BOM), Excel's cp1252, or Excel's UTF-16 "Unicode
text". The decision is made from the bytes, never by falling back:

- valid UTF-8 is UTF-8;
- UTF-8 that is valid but for a few bytes (a row pasted from a cp1252 file, a truncated
  letter at the end) is UTF-8: the bad bytes are kept as lone surrogates (U+DC80-U+DCFF,
  Python's "surrogateescape"), so the rows that hold them are reported with their lines and
  every other row reads as it should; reading it all as cp1252 would garble every
  non-ASCII letter of every other row instead;
- bytes 0x80-0xFF without a valid multi-byte UTF-8 sequence among them are cp1252.

``--encoding`` overrides all of it. Text that was already garbled before it reached the file
(UTF-8 read as cp1252 upstream: ``SÃ¸ren``) decodes fine; :func:`mojibake` finds it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

# A byte that is not UTF-8, as "surrogateescape" keeps it.
BAD_BYTE = re.compile("[\udc80-\udcff]")
_MULTI_BYTE = re.compile("[^\x00-\x7f\udc80-\udcff]")  # a character from a valid sequence

# UTF-8 read as cp1252 (or Latin-1): each multi-byte letter becomes a lead character (the
# reading of C2-F4: Â Ã ... Å ... Ð Ñ ... â ...) and one to three continuation characters
# (the reading of 0x80-0xBF: € ‚ ... ’ “ ” – ... NBSP ¡ ... ¿): "ø" is C3 B8, read "Ã¸";
# "–" is E2 80 93, read "â€“"; "И" is D0 98, read "Ð˜". Â and Ã before a continuation
# (Latin-1 letters: æøå, é, ü) and the three-byte sequences never occur in a real name;
# other leads are letters too (Å, Ø), and one of them before "’" can be real ("JØ’S"), so
# those count only twice in one cell ("Ð˜Ð²Ð°Ð½" for "Иван", "PaweÅ‚ Å»ak" for "Paweł Żak").
_CONTINUATION = re.escape("".join(sorted(
    {bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(0x80, 0xC0)}
    | {chr(b) for b in range(0x80, 0xC0)})))
_ANY_GARBLED = re.compile(f"[\u00c2-\u00f4][{_CONTINUATION}]")
_SURELY_GARBLED = re.compile(f"[\u00c2\u00c3][{_CONTINUATION}]"
                             f"|[\u00e0-\u00ef][{_CONTINUATION}]{{2}}"
                             f"|[\u00f0-\u00f4][{_CONTINUATION}]{{3}}")

Fail = Callable[..., Exception]  # fail(message, hint=None, line=None) -> the error to raise


def decode(data: bytes, encoding: str | None, fail: Fail) -> tuple[str, str]:
    """The text of ``data`` and the name of its encoding.

    The text may hold lone surrogates (U+DC80-U+DCFF) for bytes that are not UTF-8 in an
    otherwise UTF-8 file; the encoding is then ``"utf-8 (some bytes are not)"``. Raises
    ``fail(...)`` when the bytes are no text this can read.
    """
    if encoding is not None:
        return _decode_as(data, encoding, fail)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise fail("is neither UTF-8 nor Windows-1252 (cp1252) text",
                       "save it as CSV UTF-8, or give --encoding") from None
    # Excel writes a BOM for "CSV UTF-8"; csv would otherwise see it inside the first header.
    # A BOM alone proves little: tools add one to a Danish Excel export without converting
    # it, so the bytes after it decide.
    bom = data.startswith(codecs.BOM_UTF8)
    body = data[len(codecs.BOM_UTF8):] if bom else data
    try:
        return body.decode("utf-8"), "utf-8-sig" if bom else "utf-8"
    except UnicodeDecodeError as err:
        # Only the end is cut off (a download that stopped inside a letter): UTF-8.
        truncated = err.reason == "unexpected end of data" and err.end == len(body)
    text = body.decode("utf-8", "surrogateescape")
    bad = len(BAD_BYTE.findall(text))
    good = len(_MULTI_BYTE.findall(text))
    if truncated or (good and good >= bad):
        return text, "utf-8 (some bytes are not)"
    # In real cp1252 text most bytes above 0x7F are not valid UTF-8 sequences; the few that
    # happen to pair up are outweighed. Plain "CSV" from a Danish Excel is cp1252. (UTF-8
    # rows in a file that is mostly cp1252 read garbled, and check warns about them.)
    try:
        return body.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        # Bytes cp1252 does not have: the UTF-8 in the file is the evidence left, unless
        # bad bytes are everywhere (a binary file).
        if good and 10 * bad < len(body):
            return text, "utf-8 (some bytes are not)"
        raise fail("is neither UTF-8 nor Windows-1252 (cp1252) text",
                   "save it as CSV UTF-8, or give --encoding") from None


def _decode_as(data: bytes, encoding: str, fail: Fail) -> tuple[str, str]:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise fail(f"--encoding {encoding!r} is not an encoding Python knows",
                   "try utf-8 or cp1252") from None
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise fail(f"is not valid {encoding}: byte {data[err.start]:#04x} cannot be read",
                   "give the right --encoding", line) from None


def describe_bad_bytes(cell: str) -> str:
    """The bytes of ``cell`` that are not UTF-8 (see :func:`decode`) and the cell as an
    editor shows it: ``0xF8 in 'S\ufffdren'``."""
    found = ", ".join(f"0x{ord(c) - 0xDC00:02X}" for c in dict.fromkeys(BAD_BYTE.findall(cell)))
    shown = BAD_BYTE.sub("\ufffd", cell.strip())
    return f"{found} in {shown[:60]!r}"


def mojibake(value: str) -> str | None:
    """When ``value`` looks like UTF-8 that was read as cp1252 before it reached the file,
    what it probably said (each garbled letter read back where that works); else None."""
    if not _ANY_GARBLED.search(value):
        return None  # the common case, found at C speed
    if not _SURELY_GARBLED.search(value) and len(_ANY_GARBLED.findall(value)) < 2:
        return None
    return _GARBLED_RUN.sub(_read_back, value)


_GARBLED_RUN = re.compile(f"[\u00c2-\u00f4][{_CONTINUATION}]{{1,3}}")


def _read_back(match: re.Match[str]) -> str:
    garbled = match.group()
    for wrong in ("cp1252", "latin-1"):
        try:
            return garbled.encode(wrong).decode("utf-8")
        except UnicodeError:
            continue
    return garbled
