"""registrants.csv -> Registrant rows: the only module that uses csv.

Exports come from web forms, Zoom's registration report and Excel (often Danish, often with
``;`` and cp1252), so reading is forgiving about the format and strict about the content:
every problem is reported with ``file:line``, all at once, and a row with a problem is never
sent. The file's text is decoded once and kept; rows are parsed lazily, so a second pass
(validate, then send) costs no memory per registrant.

Every row of the file is accounted for: it becomes a registrant, a duplicate, or a problem
on its own line. The file is read a record at a time (see :class:`_Lines`): a malformed
record is that record only, and the next one starts afresh.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from invitemail.addresses import AddressError, normalize_address
from invitemail.config import LANGUAGES, LINE_BREAKS
from invitemail.decoding import BAD_BYTE, decode, describe_bad_bytes, mojibake
from invitemail.errors import Problem, ProblemsError

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


# What one record of the file became: its first line, the registrant (None when the row is
# not sent: a problem, or a repeated header) and its problems and warnings.
CheckedRow = tuple[int, "Registrant | None", list[Problem]]


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
    body_line: int = 2  # the first line after the header row
    # Addresses that a full pass found must not get a message (rows that disagree about
    # the personal join link, rows whose message cannot be built): later passes skip them.
    left_out: set[str] = field(default_factory=set)

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

    def checked_rows(self) -> Iterator[CheckedRow]:
        """Each data record, checked: (line, registrant or None, problems). Blank rows are
        left out; every other record of the file is here."""
        lines = _Lines(self.text)
        for _ in range(self.body_line - 1):
            next(lines, None)
        for line, cells in _records(lines, self.delimiter, self._is_full_row,
                                    len(self.header)):
            if isinstance(cells, str):
                yield line, None, [Problem(self.label, line, cells)]
                continue
            checked = self._row(line, cells)
            if checked is not None:
                yield line, *checked

    def rows(self) -> Iterator[Registrant | Problem]:
        """Each data row's problems and warnings, then its Registrant when it has one."""
        for _, registrant, problems in self.checked_rows():
            yield from problems
            if registrant is not None:
                yield registrant

    def _is_full_row(self, line: str) -> bool:
        """Whether one physical line is a whole row by itself: as many cells as the header,
        and something like an address where the address belongs."""
        width = len(self.header)
        if line.count(self.delimiter) < width - 1:
            return False  # the common case for a line of a note, decided at C speed
        cells = _parse_line(line, self.delimiter)
        if cells is None or len(cells) != width:
            return False
        email = cells[self.columns["email"]].strip()
        return "@" in email and not any(c.isspace() for c in email)

    def _row(self, line: int, cells: list[str]) -> tuple[Registrant | None, list[Problem]] | None:
        if not any(cell.strip() for cell in cells):
            return None  # a blank line or a row of empty cells
        label = self.label

        def refused(message: str) -> tuple[None, list[Problem]]:
            return None, [Problem(label, line, message)]

        if [c.strip() for c in cells] == [h.strip() for h in self.header]:
            return None, [Problem(label, line, "repeats the header row", warning=True)]
        if len(cells) != len(self.header):
            few = "few" if len(cells) < len(self.header) else "many"
            return refused(f"has {len(cells)} cells, the header has {len(self.header)}: too "
                           f"{few}; is a delimiter or quote missing?")
        joined = "\t".join(cells)
        if "\x00" in joined:
            return refused("contains a NUL character; delete it, or export the list again")
        if BAD_BYTE.search(joined):
            bad = next(c for c in cells if BAD_BYTE.search(c))
            return refused(f"is not UTF-8 here ({describe_bad_bytes(bad)}), though the rest "
                           "of the file is: retype this row's letters, or export the list "
                           "again as CSV UTF-8")
        control = _control_character(cells, self.header, self.columns)
        if control is not None:
            return refused(control)

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
        if any(not p.warning for p in problems):
            return None, problems
        garbled = _garbled(cells, self.header)
        if garbled is not None:
            problems.append(Problem(label, line, garbled, warning=True))
        fields = {key: cells[i].strip() for i, key in self.field_keys}
        return Registrant(line=line, email=email, name=name, first_name=first, last_name=last,
                          language=language, join_url=join_url, timezone=timezone,
                          fields=fields), problems


@dataclass
class Scan:
    """The result of reading every row once: counts and problems, not the rows.

    Every non-blank row after the header is counted once in ``rows``, and once in exactly
    one of ``valid`` (gets a message), ``duplicates``, ``invalid`` (a problem: never sent)
    and ``ignored`` (a repeated header row).
    """

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    valid: int = 0
    duplicates: int = 0
    invalid: int = 0
    ignored: int = 0
    languages: set[str] = field(default_factory=set)
    # The address and line of each valid, unique registrant (its key is the address in lower
    # case): what the journal needs, so a send run does not parse the file again to learn it.
    # Two flat arrays rather than a list of pairs: a third of the memory for 100,000 rows.
    addresses: list[str] = field(default_factory=list)
    lines: array[int] = field(default_factory=lambda: array("q"))
    left_out: set[str] = field(default_factory=set)  # keys that left the identities

    @property
    def identities(self) -> Iterator[tuple[str, int]]:
        """(address, line) of each valid, unique registrant, in the file's order."""
        return zip(self.addresses, self.lines, strict=True)

    def forget_identities(self) -> None:
        """Free the addresses and lines (a send run has registered them)."""
        self.addresses, self.lines = [], array("q")

    def leave_out(self, keys: Iterable[str]) -> None:
        """Valid registrants that turned out not to get a message after all: they count as
        rows with a problem (the caller has reported it), and leave the identities."""
        keys = set(keys) - self.left_out
        if not keys:
            return
        self.left_out |= keys
        kept = [(a, n) for a, n in self.identities if a.lower() not in keys]
        self.valid -= len(self.addresses) - len(kept)
        self.invalid += len(self.addresses) - len(kept)
        self.addresses = [a for a, _ in kept]
        self.lines = array("q", (n for _, n in kept))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]


def unique_registrants(source: RegistrantFile, scan: Scan | None = None) -> Iterator[Registrant]:
    """The valid registrants, first occurrence of each address only.

    With ``scan``, problems, duplicates and counts are recorded in it as rows go by. Rows
    that share an address (in any case) and differ in the personal join link are a problem
    each: there is no telling which link is the registrant's, so the address gets nothing
    (and a registrant yielded before its conflict came to light leaves ``scan`` again).
    Without ``scan``, the addresses an earlier pass left out (``source.left_out``) are
    skipped.
    """
    if scan is None:
        seen: set[str] = set()
        left_out = source.left_out
        for _, registrant, _problems in source.checked_rows():
            if registrant is not None and (key := registrant.key) not in seen:
                seen.add(key)
                if key not in left_out:
                    yield registrant
        return
    first_lines: dict[str, int] = {}
    links: dict[str, str] = {}  # the first row's personal join link, when it has one
    conflicting: set[str] = set()
    label = source.label
    for line, registrant, problems in source.checked_rows():
        scan.rows += 1
        scan.problems.extend(problems)
        if registrant is None:
            if any(not p.warning for p in problems):
                scan.invalid += 1
            else:
                scan.ignored += 1
            continue
        key = registrant.key
        first = first_lines.get(key)
        if first is None:
            first_lines[key] = line
            if registrant.join_url:
                links[key] = registrant.join_url
            scan.valid += 1
            scan.languages.add(registrant.language)
            scan.addresses.append(registrant.email)
            scan.lines.append(line)
            yield registrant
        elif registrant.join_url == links.get(key, ""):
            scan.duplicates += 1
            scan.problems.append(Problem(label, line, f"{registrant.email} is a duplicate of "
                                         f"line {first}; it gets one message", warning=True))
        else:
            scan.invalid += 1
            scan.problems.append(_conflict(label, line, registrant.email, first))
            if key not in conflicting:
                conflicting.add(key)
                scan.problems.append(_conflict(label, first, key, line))
    if conflicting:
        scan.leave_out(conflicting)
        source.left_out |= conflicting


def scan_file(path: Path, *, encoding: str | None = None, delimiter: str | None = None) -> Scan:
    """Every row of a registrant file read and counted, without keeping the rows."""
    scan = Scan()
    for _ in unique_registrants(open_registrants(path, encoding=encoding, delimiter=delimiter),
                                scan):
        pass
    return scan


def _conflict(label: str, line: int, email: str, other: int) -> Problem:
    return Problem(label, line, f"{email} is also on line {other}, with another personal join "
                   "link: keep the row with the right link and delete the other (neither gets "
                   "a message until then)")


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
    text, used = decode(data, encoding, fail)
    binary = _binary_line(text)
    if binary is not None:
        raise fail("contains NUL bytes: it is not a text file", "export the list as CSV", binary)
    if not text.strip():
        raise fail("is empty", "export the registrant list with a header row such as "
                   "Name,Email")
    first_line = text.lstrip("\r\n").splitlines()[0]
    if delimiter is None:
        delimiter = max(DELIMITERS, key=first_line.count)
    csv.field_size_limit(MAX_CELL)
    lines = _Lines(text)
    header: list[str] | None = None
    for header_line, cells in _records(lines, delimiter):
        if isinstance(cells, str):
            raise fail(cells, line=header_line)
        if any(cell.strip() for cell in cells):
            header = cells
            break
    if header is None:
        raise fail("is empty", "export the registrant list with a header row such as "
                   "Name,Email")
    if BAD_BYTE.search("".join(header)):
        bad = next(c for c in header if BAD_BYTE.search(c))
        raise fail(f"the header row is not UTF-8 ({describe_bad_bytes(bad)}), though the rest "
                   "of the file is", "export the list again as CSV UTF-8, or give --encoding",
                   header_line)
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
                          header=header, columns=columns, default_language=default_language,
                          body_line=lines.number + 1)


def _binary_line(text: str) -> int | None:
    """The line of the first NUL when the file is not text (NULs in the header line or in
    half the other lines or more: UTF-16 read as bytes, a binary file), else None: a NUL in
    a few rows is a broken export, and those rows are reported one by one."""
    if "\x00" not in text:
        return None
    lines = text.split("\n")
    nul = [number for number, line in enumerate(lines, 1) if "\x00" in line]
    filled = [number for number, line in enumerate(lines, 1) if line.strip()]
    if nul[0] == filled[0] or 2 * len(nul) >= len(filled) - 1:
        return nul[0]
    return None


class _Lines:
    """The physical lines of a text, one at a time, for csv.reader; numbered, and with the
    lines of the record being read kept, so that a record found malformed can hand the
    lines after its first back to be read again.

    Lines end at LF (or CRLF), as editors, grep and sed number them. A CR alone is a line
    end only in a file without any LF (an old Mac export); elsewhere :func:`_records` deals
    with it.
    """

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline="\n" if "\n" in text else ""))
        self._again: list[str] = []
        self.number = 0  # how many lines were handed out
        self.taken: list[str] = []  # the lines of the record being read

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._again.pop() if self._again else next(self._lines)
        self.number += 1
        self.taken.append(line)
        return line

    def read_again(self, lines: list[str]) -> None:
        self._again.extend(reversed(lines))
        self.number -= len(lines)


UNCLOSED = 'a quoted cell starts here and is never closed: a " is missing'


def _records(lines: _Lines, delimiter: str, is_full_row: Callable[[str], bool] | None = None,
             width: int | None = None) -> Iterator[tuple[int, list[str] | str]]:
    """(first line, cells) of each record, or (first line, what is wrong) for a malformed one.

    A quoted cell may hold line breaks, so a record can span lines. Where a malformed
    record ends:

    - csv's own error (text after a closing quote, a quote never closed) ends it at the line
      where csv stopped, and the next record starts on the line after;
    - a record whose quoted cell swallows a following line that is a whole row by itself
      (``is_full_row``: the header's number of cells, an address in the address column) is
      an unclosed quote on its first line: it ends before that line, which is read again
      as a row of its own. A line swallowed is one wholly inside the quoted cell (or any
      line of a record csv found broken). A note over several lines is not taken for that:
      its lines do not look like whole rows, and its last line closes the quote;
    - a CR alone inside a row (rows pasted from several exports): when it parts whole rows
      (``width`` cells each), each is read, on the line's number; otherwise the line is
      malformed.
    """
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    while True:
        lines.taken = []
        start = lines.number + 1
        error: csv.Error | None = None
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            error, cells = err, []
        taken = lines.taken
        if len(taken) > 1 and is_full_row is not None:
            # A record that parsed ends on the line that closes its quote: only the lines
            # before that one lie wholly inside the quoted cell.
            inside = range(1, len(taken) if error is not None else len(taken) - 1)
            whole = next((i for i in inside if is_full_row(taken[i])), None)
            if whole is not None:
                lines.read_again(taken[whole:])
                yield start, UNCLOSED
                continue
        if error is None:
            yield start, cells
        elif "new-line character" in str(error) and len(taken) == 1:
            yield from _split_at_cr(start, taken[0], delimiter, width)
        else:
            yield start, _csv_error(error)


def _split_at_cr(line_number: int, line: str, delimiter: str, width: int | None
                 ) -> Iterator[tuple[int, list[str] | str]]:
    pieces = [p for p in re.split(r"\r(?!\n)", line) if p.strip()]
    rows = [_parse_line(piece, delimiter) for piece in pieces]
    whole = [cells for cells in rows if cells is not None and len(cells) == width]
    if width is not None and len(whole) == len(rows):
        for cells in whole:
            yield line_number, cells
    else:
        yield line_number, ("a carriage return (CR) in the middle of the row breaks it in two; "
                            "delete it")


def _parse_line(line: str, delimiter: str) -> list[str] | None:
    """The cells of one line read on its own, or None when it is not a row by itself."""
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error:
        return None


def _garbled(cells: list[str], header: list[str]) -> str | None:
    """A warning when a cell looks like UTF-8 that was read as cp1252 before it reached the
    file (``SÃ¸ren``), else None."""
    for index, cell in enumerate(cells):
        meant = mojibake(cell)
        if meant is not None:
            column = header[index].strip()
            guess = f"; it probably said {meant.strip()!r}" if meant != cell else ""
            return (f"{cell.strip()!r} (column {column!r}) looks garbled: UTF-8 read as "
                    f"Windows-1252 somewhere before this file{guess}; correct it in the file")
    return None


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


def _csv_error(err: csv.Error) -> str:
    text = str(err)
    if "field larger than field limit" in text:
        return f"a cell is larger than {MAX_CELL // 1024} KiB: is a closing quote missing?"
    if "unexpected end of data" in text or "EOF" in text:
        return UNCLOSED
    if "newline inside string" in text.lower() or "new-line character" in text:
        return "a line break inside an unquoted cell: quote the cell"
    if "expected after" in text:
        return ('text follows the closing " of a quoted cell: inside a quoted cell, write a " '
                'as ""')
    return f"is not valid CSV here: {text}"
