"""registrants.csv -> Registrant rows: the only module that uses csv.

Exports come from web forms, Zoom's registration report and Excel (often Danish, often with
``;`` and cp1252), so reading is forgiving about the format and strict about the content:
every problem is reported with ``file:line``, all at once, and a row with a problem is never
sent. The file's text is decoded once and kept; rows are parsed lazily, so a second pass
(validate, then send) costs no memory per registrant.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import unicodedata
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from invitemail.addresses import AddressError, normalize_address
from invitemail.config import LANGUAGES, LINE_BREAKS
from invitemail.errors import Problem, ProblemsError

if TYPE_CHECKING:
    from _csv import Reader as CsvReader  # what csv.reader returns: rows and line_num

DELIMITERS = (",", ";", "\t")
MAX_CELL = 128 * 1024  # csv's own limit; a bigger cell is a broken file, not a registrant

# Header names as exports spell them, after lower-casing and dropping spaces, "_", "-", ".".
HEADER_ALIASES: Mapping[str, str] = {
    **dict.fromkeys(("email", "emailaddress", "mail", "emailadresse", "mailadresse",
                     "epost"), "email"),
    **dict.fromkeys(("name", "navn", "fullname", "fuldenavn", "fuldtnavn", "deltager"), "name"),
    **dict.fromkeys(("firstname", "fornavn", "givenname"), "first_name"),
    **dict.fromkeys(("lastname", "efternavn", "surname", "familyname"), "last_name"),
    **dict.fromkeys(("language", "sprog", "lang"), "language"),
    **dict.fromkeys(("joinurl", "joinlink", "personallink", "personligtlink", "deltagerlink"),
                    "join_url"),
    **dict.fromkeys(("timezone", "tidszone", "tz"), "timezone"),
}
LANGUAGE_ALIASES: Mapping[str, str] = {
    "da": "da", "dk": "da", "dansk": "da", "danish": "da", "en": "en", "engelsk": "en",
    "english": "en", "uk": "en", "gb": "en",
}


@dataclass(frozen=True, slots=True)
class Registrant:
    """One valid registrant: what the templates and the message need."""

    line: int
    email: str
    name: str
    first_name: str
    last_name: str
    language: str
    join_url: str
    timezone: str
    fields: Mapping[str, str] = field(default_factory=dict)  # every column, by its key

    @property
    def key(self) -> str:
        """The identity of a registrant: the address, case-insensitive (product.md)."""
        email = self.email
        return email if email.islower() else email.lower()  # the same string when it can be

    def as_context(self) -> dict[str, str]:
        """What a template sees as ``registrant``: every column, then the known names."""
        context = dict(self.fields)
        context.update(email=self.email, name=self.name, first_name=self.first_name,
                       last_name=self.last_name, language=self.language,
                       join_url=self.join_url, timezone=self.timezone)
        return context


def column_key(header: str) -> str:
    """``"Join URL"`` -> ``join_url``: the name a column has in templates."""
    return re.sub(r"[^0-9a-zæøå]+", "_", header.strip().lower()).strip("_")


def _alias(header: str) -> str | None:
    return HEADER_ALIASES.get(re.sub(r"[\s_.\-]+", "", header.strip().lower()))


@dataclass
class RegistrantFile:
    """A decoded registrant file: its dialect, its header and its rows on demand."""

    path: Path
    text: str
    encoding: str
    delimiter: str
    header: list[str]
    columns: dict[str, int]  # canonical name or column key -> index
    default_language: str = "da"

    @property
    def label(self) -> str:
        return str(self.path)

    @functools.cached_property
    def field_keys(self) -> list[tuple[int, str]]:
        """(column index, template key) of every column with a usable name."""
        return [(i, key) for i, h in enumerate(self.header) if (key := column_key(h))]

    @property
    def rows_estimate(self) -> int:
        """About how many rows the file has (its line count), without parsing it."""
        return self.text.count("\n")

    def _reader(self) -> CsvReader:
        return csv.reader(io.StringIO(self.text, newline=""), delimiter=self.delimiter,
                          strict=True)

    def rows(self) -> Iterator[Registrant | Problem]:
        """Each data row as a Registrant, or one or more Problems (errors and warnings)."""
        reader = self._reader()
        line = 1
        try:
            _header_row(reader)
            line = reader.line_num + 1
            for cells in reader:
                yield from self._row(line, cells)
                line = reader.line_num + 1
        except csv.Error as err:
            yield Problem(self.label, line, _csv_error(err))

    def _row(self, line: int, cells: list[str]) -> Iterator[Registrant | Problem]:
        if not any(cell.strip() for cell in cells):
            return  # a blank line or a row of empty cells
        label = self.label
        if [c.strip() for c in cells] == [h.strip() for h in self.header]:
            yield Problem(label, line, "repeats the header row", warning=True)
            return
        if len(cells) != len(self.header):
            few = "few" if len(cells) < len(self.header) else "many"
            yield Problem(label, line, f"has {len(cells)} cells, the header has "
                          f"{len(self.header)}: too {few}; is a delimiter or quote missing?")
            return
        if any("\x00" in cell for cell in cells):
            yield Problem(label, line, "contains a NUL character")
            return
        control = _control_character(cells, self.header, self.columns)
        if control is not None:
            yield Problem(label, line, control)
            return

        def cell(name: str) -> str:
            index = self.columns.get(name)
            return cells[index].strip() if index is not None else ""

        problems: list[Problem] = []
        raw_email = cell("email")
        email = ""
        if any(c in LINE_BREAKS for c in raw_email):
            problems.append(Problem(label, line, "the address contains a line break"))
        else:
            try:
                email = normalize_address(raw_email)
            except AddressError as err:
                problems.append(Problem(label, line, f"{raw_email!r} is not a valid address: "
                                        f"{err}" if raw_email else "the address is empty"))
        # A tab inside a name (a pasted TSV row) is a space to the reader; headers and the
        # calendar's CN would each treat it differently.
        full, first, last = (cell(key).replace("\t", " ")
                             for key in ("name", "first_name", "last_name"))
        name = full or " ".join(part for part in (first, last) if part)
        for what, value in (("name", full), ("first name", first), ("last name", last)):
            if any(c in LINE_BREAKS for c in value):
                problems.append(Problem(label, line, f"the {what} contains a line break; it "
                                        "would reach the To: header"))
        language = self.default_language
        if raw := cell("language"):
            found = LANGUAGE_ALIASES.get(raw.lower().split("-")[0].split("_")[0])
            if found is None:
                problems.append(Problem(label, line, f"language {raw!r} is not supported; use "
                                        + " or ".join(LANGUAGES)))
            else:
                language = found
        join_url = cell("join_url")
        if join_url:
            parts = urlsplit(join_url)
            # urlsplit drops tabs and line breaks silently; a link with any is broken.
            if parts.scheme not in ("http", "https") or not parts.netloc or any(
                    c.isspace() for c in join_url):
                problems.append(Problem(label, line, f"join link {join_url!r} is not a web "
                                        "address"))
            elif parts.scheme != "https":
                problems.append(Problem(label, line, f"join link {join_url} is not https",
                                        warning=True))
        timezone = cell("timezone")
        if timezone:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(Problem(label, line, f"time zone {timezone!r} is not known; use "
                                        'an IANA name such as "America/New_York"'))
        yield from problems
        if any(not p.warning for p in problems):
            return
        fields = {key: cells[i].strip() for i, key in self.field_keys}
        yield Registrant(line=line, email=email, name=name, first_name=first, last_name=last,
                         language=language, join_url=join_url, timezone=timezone, fields=fields)


@dataclass
class Scan:
    """The result of reading every row once: counts and problems, not the rows."""

    problems: list[Problem] = field(default_factory=list)
    valid: int = 0
    duplicates: int = 0
    languages: set[str] = field(default_factory=set)
    # The address and line of each valid, unique registrant (its key is the address in lower
    # case): what the journal needs, so a send run does not parse the file again to learn it.
    # Two flat arrays rather than a list of pairs: a third of the memory for 100,000 rows.
    addresses: list[str] = field(default_factory=list)
    lines: array[int] = field(default_factory=lambda: array("q"))

    @property
    def identities(self) -> Iterator[tuple[str, int]]:
        """(address, line) of each valid, unique registrant, in the file's order."""
        return zip(self.addresses, self.lines, strict=True)

    def forget_identities(self) -> None:
        """Free the addresses and lines (a send run has registered them)."""
        self.addresses, self.lines = [], array("q")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]


def unique_registrants(source: RegistrantFile, scan: Scan | None = None) -> Iterator[Registrant]:
    """The valid registrants, first occurrence of each address only.

    With ``scan``, problems, duplicates and counts are recorded in it as rows go by.
    """
    seen: dict[str, int] = {}
    for item in source.rows():
        if isinstance(item, Problem):
            if scan is not None:
                scan.problems.append(item)
            continue
        first = seen.get(item.key)
        if first is not None:
            if scan is not None:
                scan.duplicates += 1
                scan.problems.append(Problem(source.label, item.line, f"{item.email} is a "
                                             f"duplicate of line {first}; it gets one message",
                                             warning=True))
            continue
        seen[item.key] = item.line
        if scan is not None:
            scan.valid += 1
            scan.languages.add(item.language)
            scan.addresses.append(item.email)
            scan.lines.append(item.line)
        yield item


def open_registrants(path: Path, *, encoding: str | None = None, delimiter: str | None = None,
                     default_language: str = "da") -> RegistrantFile:
    """Read, decode and check the header of a registrant file.

    Raises :class:`ProblemsError` when the file as a whole cannot be used.
    """
    label = str(path)

    def fail(message: str, hint: str | None = None, line: int | None = None) -> ProblemsError:
        return ProblemsError([Problem(label, line, message)], hint=hint)

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("not found", "put registrants.csv in the event folder or give "
                   "--registrants FILE") from None
    except OSError as err:
        raise fail(f"cannot be read: {err.strerror}") from None
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise fail("is an Excel workbook, not a CSV file",
                   "in Excel choose File > Save As > CSV UTF-8, then use that file")
    text, used = _decode(data, encoding, fail)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise fail("contains NUL bytes: it is not a text file", "export the list as CSV", line)
    if not text.strip():
        raise fail("is empty", "export the registrant list with a header row such as "
                   "Name,Email")
    first_line = text.lstrip("\r\n").splitlines()[0]
    if delimiter is None:
        delimiter = max(DELIMITERS, key=first_line.count)
    csv.field_size_limit(MAX_CELL)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = _header_row(reader)
    except csv.Error as err:
        raise fail(_csv_error(err), line=reader.line_num or 1) from None
    if header is None:
        raise fail("is empty", "export the registrant list with a header row such as "
                   "Name,Email")
    header_line = reader.line_num
    columns: dict[str, int] = {}
    problems: list[Problem] = []
    for index, name in enumerate(header):
        canonical = _alias(name) or column_key(name)
        if not canonical:
            continue
        if canonical in columns:
            other = header[columns[canonical]]
            problems.append(Problem(label, header_line, f"column {name.strip()!r} (column "
                                    f"{index + 1}) means the same as {other.strip()!r} (column "
                                    f"{columns[canonical] + 1}); keep one"))
            continue
        columns[canonical] = index
    if "email" not in columns:
        shown = ", ".join(repr(h.strip()) for h in header[:8])
        shown += ", ..." if len(header) > 8 else ""
        problems.append(Problem(label, header_line,
                                f"has no email column (the header has {shown})"))
        raise ProblemsError(problems, hint="name the column with the addresses Email or "
                            "E-mail; if the header looks run together, give --delimiter")
    if problems:
        raise ProblemsError(problems)
    return RegistrantFile(path=path, text=text, encoding=used, delimiter=delimiter,
                          header=header, columns=columns, default_language=default_language)


# Cells that go into the To: header (and the calendar's ATTENDEE): only printable text there.
_HEADER_FIELDS = ("email", "name", "first_name", "last_name")


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Cc but tab, LF, CR


def _control_character(cells: list[str], header: list[str],
                       columns: Mapping[str, int]) -> str | None:
    """The problem with a row that holds a control character, or None.

    A line break in a cell is normal (a note over two lines) except in the fields that reach
    a header, which the caller reports as a line break. Any other control character (a bell,
    an escape, a vertical tab) is never meant: it is garbage from a broken export, and some
    of them start a new line for some readers, so the row is refused.
    """
    if not _CONTROL.search("\t".join(cells)):
        return None  # the common case, found at C speed
    header_cells = {columns[name] for name in _HEADER_FIELDS if name in columns}
    for index, cell in enumerate(cells):
        for char in cell:
            if char in "\t\n\r" or unicodedata.category(char) != "Cc":
                continue
            if index in header_cells and char in LINE_BREAKS:
                break  # reported as a line break in that field
            column = header[index].strip() if index < len(header) else str(index + 1)
            return (f"column {column!r} contains a control character (U+{ord(char):04X}); "
                    "delete it, or export the list again")
    return None


def _header_row(reader: CsvReader) -> list[str] | None:
    """The first row with any text (an export may have blank lines above the header)."""
    for cells in reader:
        if any(cell.strip() for cell in cells):
            return cells
    return None


def _decode(data: bytes, encoding: str | None, fail: object) -> tuple[str, str]:
    assert callable(fail)
    if encoding is not None:
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
    # Excel writes a BOM for "CSV UTF-8"; csv would otherwise see it inside the first header.
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:
            # A BOM before cp1252 text: a tool added the BOM to a Danish Excel export without
            # converting it. The bytes after the BOM say what the text is.
            data = data[len(codecs.BOM_UTF8):]
            candidates = ["cp1252"]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        # Plain "CSV" from a Danish Excel is cp1252; UTF-8 that decodes is almost never cp1252.
        candidates = ["utf-8", "cp1252"]
    for candidate in candidates:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    raise fail("is neither UTF-8 nor Windows-1252 (cp1252) text",
               "save it as CSV UTF-8, or give --encoding")


def _csv_error(err: csv.Error) -> str:
    text = str(err)
    if "field larger than field limit" in text:
        return f"a cell is larger than {MAX_CELL // 1024} KiB: is a closing quote missing?"
    if "unexpected end of data" in text or "EOF" in text:
        return "a quoted cell starts here and is never closed: a \" is missing"
    if "newline inside string" in text.lower() or "new-line character" in text:
        return "a line break inside an unquoted cell: quote the cell"
    return f"is not valid CSV here: {text}"
