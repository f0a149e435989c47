"""registrants.csv -> Registrant rows: the only module that uses csv (it writes the status
report's CSV too, see :func:`write_csv`).

Exports come from web forms, Zoom's registration report and Excel (often Danish, often with
``;`` and cp1252), so reading is forgiving about the format and strict about the content:
every problem is reported with ``file:line``, all at once, and a row with a problem is never
sent. The file's text is decoded once and kept; rows are parsed lazily, so a second pass
(validate, then send) costs no memory per registrant.

A sheet of an .xlsx workbook is the other kind of list (sheet_registrants.py): both are a
:class:`~invitemail.inputs.sources.RegistrantSource`, checked row by row by cells.py, and
counted by :func:`~invitemail.inputs.scan.unique_registrants` (scan.py; importable from here
too). Every row of the file is accounted for: it becomes a registrant, a duplicate, or a
problem on its own line. The file is read a record at a time (see :class:`_Lines`): a
malformed record is that record only, and the next one starts afresh.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from invitemail.errors import Problem, ProblemsError
from invitemail.inputs.cells import HEADER_ALIASES as HEADER_ALIASES
from invitemail.inputs.cells import LANGUAGE_ALIASES as LANGUAGE_ALIASES
from invitemail.inputs.cells import Registrant as Registrant
from invitemail.inputs.cells import check_row, header_columns
from invitemail.inputs.cells import column_key as column_key
from invitemail.inputs.decoding import BAD_BYTE, decode, describe_bad_bytes
from invitemail.inputs.scan import Scan as Scan
from invitemail.inputs.scan import unique_registrants as unique_registrants
from invitemail.inputs.sources import CheckedRow as CheckedRow
from invitemail.inputs.sources import RegistrantSource as RegistrantSource
from invitemail.inputs.sources import default_registrants as default_registrants
from invitemail.inputs.sources import is_workbook_name

DELIMITERS = (",", ";", "\t")
MAX_CELL = 128 * 1024  # csv's own limit; a bigger cell is a broken file, not a registrant
# A cell a spreadsheet would run as a formula (CSV injection): written with a leading '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class RegistrantFile(RegistrantSource):
    """A decoded registrant file: its dialect, its header and its rows on demand."""

    path: Path
    text: str
    encoding: str
    delimiter: str
    header: list[str]
    columns: dict[str, int]
    default_language: str = "da"
    local_test: bool = False
    body_line: int = 2  # the first line after the header row
    left_out: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def rows_estimate(self) -> int:
        """About how many rows the file has (its line count), without parsing it."""
        return self.text.count("\n")

    def checked_rows(self) -> Iterator[CheckedRow]:
        lines, layout = _Lines(self.text), self.layout
        for _ in range(self.body_line - 1):
            next(lines, None)
        for line, cells in _records(lines, self.delimiter, self._is_full_row,
                                    len(self.header)):
            if isinstance(cells, str):
                yield line, None, [Problem(self.label, line, cells)]
                continue
            checked = check_row(layout, line, cells)
            if checked is not None:
                yield line, *checked

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


def scan_file(path: Path, *, encoding: str | None = None, delimiter: str | None = None,
              sheet: str | None = None) -> Scan:
    """Every row of a registrant file read and counted, without keeping the rows."""
    scan = Scan()
    source = open_registrants(path, encoding=encoding, delimiter=delimiter, sheet=sheet)
    for _ in unique_registrants(source, scan):
        pass
    return scan


def open_registrants(path: Path, *, encoding: str | None = None, delimiter: str | None = None,
                     default_language: str = "da", local_test: bool = False,
                     sheet: str | None = None) -> RegistrantSource:
    """Read, decode and check the header of a registrant file: CSV, or a sheet of an .xlsx
    workbook (``sheet``, or the first). ``local_test``: the run sends through a local test
    server, where ``.test``-like addresses are allowed.

    Raises :class:`ProblemsError` (or a WorkbookError) when the file as a whole cannot be
    used.
    """
    label = str(path)
    if is_workbook_name(path):
        if encoding is not None or delimiter is not None:
            raise ProblemsError([Problem(label, None, "is a workbook: --encoding and "
                                         "--delimiter apply to CSV files only")],
                                hint="leave them out")
        from invitemail.inputs.sheet_registrants import open_sheet_registrants

        return open_sheet_registrants(path, sheet, default_language=default_language,
                                      local_test=local_test)
    if sheet is not None:
        raise ProblemsError([Problem(label, None, "is a CSV file: --sheet applies to .xlsx "
                                     "workbooks only")],
                            hint="leave out --sheet, or give the workbook with --registrants")

    def fail(message: str, hint: str | None = None, line: int | None = None) -> ProblemsError:
        return ProblemsError([Problem(label, line, message)], hint=hint)

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("not found", "put registrants.csv (or registrants.xlsx) in the event "
                   "folder, or give --registrants FILE") from None
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
    columns = header_columns(label, header, header_line, "give --delimiter")
    return RegistrantFile(path=path, text=text, encoding=used, delimiter=delimiter,
                          header=header, columns=columns, default_language=default_language,
                          local_test=local_test,
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


def csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | str]]:
    """(first line, cells) of each record of ``text``, or (first line, what is wrong): for
    other files read as CSV (the attendance report)."""
    return _records(_Lines(text), delimiter)


def neutralise(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(file: IO[str], header: Sequence[str], rows: Iterable[Sequence[object]], *,
              delimiter: str = ",") -> int:
    """Write ``header`` and then ``rows`` to ``file`` (opened with ``newline=""``) as CSV
    that is safe to open in a spreadsheet, every cell through :func:`neutralise`; returns
    the number of rows. The status report's CSV: csv stays in this module."""
    writer = csv.writer(file, delimiter=delimiter)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([neutralise(value) for value in row])
        count += 1
    return count


def _parse_line(line: str, delimiter: str) -> list[str] | None:
    """The cells of one line read on its own, or None when it is not a row by itself."""
    try:
        return next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error:
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
