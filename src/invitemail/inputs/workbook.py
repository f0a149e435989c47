"""Excel workbooks (.xlsx) in and out: the only module that imports a spreadsheet library.

Reading uses python-calamine (Rust): on a 20,000-row sheet it reads every cell in 0.14 s
where openpyxl in read-only mode takes 1.6 s (``bench/sheets.py``). It holds the sheet's
cells in memory while they are read (about 60 MiB for 100,000 rows of six columns), so the
file is bounded before it gets there:

- the file is read once into memory (at most :data:`MAX_FILE`) and every part of the zip is
  decompressed here first, as a stream, counting bytes: a part that inflates beyond
  :data:`MAX_PART`, a total beyond :data:`MAX_UNCOMPRESSED`, or a part that inflates more
  than :data:`MAX_RATIO` times (a zip bomb) is refused before the library sees the bytes;
  zipfile stops at each part's declared size and checks its CRC, so a part that lies about
  its size is refused too;
- a sheet with more than :data:`MAX_ROWS` rows or :data:`MAX_COLUMNS` columns is refused;
- a cell of :data:`MAX_CELL` characters or more makes its row unusable
  (:attr:`SheetRow.problem`), as a huge cell does in a CSV file: that is Excel's own limit,
  and python-calamine cuts a longer text off there, so such a cell is not what the file
  holds.

Cells are text as a coordinator sees them in Excel: a whole number without ``.0`` (phone
numbers, IDs), dates as ISO 8601, a formula as the value Excel saved with it, an empty cell
as ``""``. Blank rows are left out and trailing empty cells dropped; columns keep their
place (``cells[0]`` is column A).

Writing (``status --report FILE.xlsx``) uses openpyxl in write-only mode, streamed into a
file that files.py puts in place without following a link.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from invitemail.errors import InvitemailError, SheetPlace
from invitemail.outputs.files import OutputFolder

MAX_FILE = 100 * 1024 * 1024  # the .xlsx itself; 100,000 registrants are about 4 MiB
MAX_PART = 128 * 1024 * 1024  # one part of the zip, decompressed (a sheet's XML)
MAX_UNCOMPRESSED = 256 * 1024 * 1024  # all parts together, decompressed
MAX_RATIO = 100  # decompressed/compressed for a part over 1 MiB; sheets are 5-20 times
MAX_ROWS = 500_000
MAX_COLUMNS = 1_000
MAX_CELL = 32_767  # characters: Excel's own limit, where python-calamine cuts a cell off

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and any Office file with a password
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")  # the stream an encrypted .xlsx holds
_SAVE_AS = "in Excel choose File > Save As > Excel Workbook (.xlsx)"


class WorkbookError(InvitemailError):
    """A workbook (or one of its sheets) that cannot be read: what, where and what to do."""

    def __init__(self, path: Path | str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint=hint)
        self.path = str(path)


@dataclass(frozen=True)
class SheetRow:
    """One row of a sheet that has something in it."""

    label: str  # where, as a coordinator reads it: "registrants.xlsx: Ark1!7"
    cells: list[str]  # cell values as text; cells[0] is column A
    number: int = 0  # the row's number in the sheet (7)
    problem: str = ""  # why the row cannot be used (a cell too large); "" when it can


@dataclass(frozen=True)
class Sheet:
    """A sheet opened for reading: where it is, and its rows on demand."""

    path: Path
    name: str
    names: tuple[str, ...]  # every sheet of the workbook, in order
    place: SheetPlace  # "registrants.xlsx: Ark1"; problems at a row read "...!7"
    rows_estimate: int  # the sheet's height (its last row's number)
    first: SheetRow | None  # the first row with something in it (a header), None: empty
    _data: bytes

    def rows(self) -> Iterator[SheetRow]:
        """Each row with something in it, in order."""
        import python_calamine

        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(self._data))
        try:
            sheet = book.get_sheet_by_name(self.name)
            yield from _rows(sheet, self.place)
        finally:
            book.close()


def read_sheet(path: Path, sheet: str | None = None) -> Iterator[SheetRow]:
    """The rows of ``sheet`` (by default the first sheet Excel shows) of the workbook at
    ``path``. Raises :class:`WorkbookError` when the file or the sheet cannot be read."""
    return open_sheet(path, sheet).rows()


def open_sheet(path: Path, sheet: str | None = None) -> Sheet:
    """Check the workbook at ``path`` and find ``sheet`` in it (case as Excel ignores it);
    the rows are read when asked for, as often as asked. Raises :class:`WorkbookError`."""
    import python_calamine

    data = _read(path)
    _check_zip(path, data)
    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except python_calamine.PasswordError:
        raise _encrypted(path) from None
    except python_calamine.CalamineError as err:
        raise WorkbookError(path, f"cannot be read as a workbook ({err})",
                            hint=f"open it in Excel and save it again ({_SAVE_AS})") from None
    try:
        names = tuple(book.sheet_names)
        name = _find_sheet(path, book, names, sheet)
        try:
            found = book.get_sheet_by_name(name)
        except python_calamine.CalamineError as err:
            raise WorkbookError(path, f"sheet {name!r} cannot be read ({err})",
                                hint=f"open it in Excel and save it again ({_SAVE_AS})"
                                ) from None
        height, width = found.height, found.width
        end_row, end_column = found.end or (0, 0)
        place = SheetPlace(f"{path}: {name}")
        too_large = end_row + 1 > MAX_ROWS or width > MAX_COLUMNS
        first = None if too_large else next(_rows(found, place), None)
    finally:
        book.close()
    if too_large:
        raise WorkbookError(place, f"has {end_row + 1:,} rows and {end_column + 1:,} columns; "
                            f"at most {MAX_ROWS:,} rows and {MAX_COLUMNS:,} columns are read",
                            hint="delete what is below or right of the list (Ctrl+End in "
                            "Excel shows the last cell in use), or split the list")
    return Sheet(path=path, name=name, names=names, place=place,
                 rows_estimate=end_row + 1 if height else 0, first=first, _data=data)


def cell_text(value: object) -> str:
    """A cell's value as Excel shows it, as text."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))  # 4512345678.0 -> "4512345678": a phone, an ID
        return repr(value)  # the shortest text that reads back as the same number
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.second else "minutes")
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds" if value.second else "minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# -- reading ------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise WorkbookError(path, "not found", hint="check the name, or give --registrants "
                            "FILE") from None
    except IsADirectoryError:
        raise WorkbookError(path, "is a folder", hint="give the workbook's file name") from None
    except OSError as err:
        raise WorkbookError(path, f"cannot be read: {err.strerror or err}") from None
    if len(data) > MAX_FILE:
        raise WorkbookError(path, f"is larger than {MAX_FILE // 2**20} MiB: too large for a "
                            "registrant list", hint="save just the list's sheet as .xlsx, or "
                            "as CSV UTF-8")
    if data.startswith(_OLE):
        if _ENCRYPTED in data:
            raise _encrypted(path)
        raise WorkbookError(path, "is an old Excel 97-2003 workbook (.xls), which is not read",
                            hint=f"{_SAVE_AS}, then use that file")
    if not data.startswith(_ZIP):
        what = "is empty" if not data.strip() else "is not an Excel workbook (.xlsx)"
        raise WorkbookError(path, what, hint=f"{_SAVE_AS}; a CSV file must be named .csv")
    return data


def _encrypted(path: Path) -> WorkbookError:
    return WorkbookError(path, "is protected with a password, so it cannot be read",
                         hint="in Excel choose File > Info > Protect Workbook > Encrypt with "
                         "Password, clear the password, and save")


def _check_zip(path: Path, data: bytes) -> None:
    """Refuse a zip that is damaged, is no workbook, or inflates too far (see the module)."""
    damaged = WorkbookError(path, "is damaged: it is not a complete .xlsx file",
                            hint="download or copy it again, or open it in Excel and "
                            f"save it again ({_SAVE_AS})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise damaged from None
    with archive:
        names = set(archive.namelist())
        if "xl/workbook.xml" not in names and "xl/workbook.bin" not in names:
            kind = ("an OpenDocument spreadsheet (.ods)" if "content.xml" in names
                    else "a zip file, not an Excel workbook")
            raise WorkbookError(path, f"is {kind}", hint=f"{_SAVE_AS}, then use that file")
        total = 0
        for info in archive.infolist():
            size = 0
            try:
                with archive.open(info) as part:
                    while chunk := part.read(1024 * 1024):
                        size += len(chunk)
                        total += len(chunk)
                        if size > MAX_PART or total > MAX_UNCOMPRESSED or (
                                size > 1024 * 1024 and size > MAX_RATIO * max(
                                    info.compress_size, 1)):
                            raise _bomb(path, info.filename)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError,
                    EOFError, NotImplementedError, RuntimeError):
                # A bad CRC, a part cut short, an unknown compression, a password.
                raise damaged from None


def _bomb(path: Path, part: str) -> WorkbookError:
    return WorkbookError(path, f"inflates far beyond its size when opened (its part {part!r} "
                         "alone does): a damaged or hostile file, not read",
                         hint="if it is your list, open it in Excel and save it again, or "
                         "save it as CSV UTF-8")


def _find_sheet(path: Path, book: object, names: Sequence[str], sheet: str | None) -> str:
    from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

    assert isinstance(book, CalamineWorkbook)
    if sheet is None:
        shown = [m.name for m in book.sheets_metadata
                 if m.visible == SheetVisibleEnum.Visible and m.typ == SheetTypeEnum.WorkSheet]
        if not shown:
            raise WorkbookError(path, "has no sheet to read", hint=f"{_SAVE_AS} with the list "
                                "on its first sheet")
        return shown[0]
    if sheet in names:
        return sheet
    folded = [n for n in names if n.casefold() == sheet.strip().casefold()]
    if folded:
        return folded[0]
    raise WorkbookError(path, f"has no sheet {sheet!r}; its sheets are "
                        + ", ".join(repr(n) for n in names),
                        hint="give one of them with --sheet NAME")


def _rows(sheet: object, place: SheetPlace) -> Iterator[SheetRow]:
    from python_calamine import CalamineSheet

    assert isinstance(sheet, CalamineSheet)
    if not sheet.height:
        return
    (first_row, first_column), (_, last_column) = sheet.start or (0, 0), sheet.end or (0, 0)
    # Rows come from row 1 (python-calamine 0.9 does so) or from the first row in use, and
    # cells from the first column in use or from column A: put each in its place. The first
    # row in use has a value, so an empty first row means the rows come from row 1.
    wide = last_column - first_column + 1
    values_of = iter(sheet.iter_rows())
    first = next(values_of, [])
    top = first_row if any(v not in (None, "") for v in first) else 0
    for number, values in enumerate(itertools.chain([first], values_of), top + 1):
        lead = first_column if len(values) == wide else 0
        cells = [v if type(v) is str else cell_text(v) for v in values]  # text: as it is
        while cells and not cells[-1].strip():
            cells.pop()
        if not cells:
            continue
        cells = [""] * lead + cells
        problem = ""
        large = next((i for i, c in enumerate(cells) if len(c) >= MAX_CELL), None)
        if large is not None:
            problem = (f"the cell in column {column_letter(large)} holds {MAX_CELL:,} "
                       "characters or more, Excel's limit: it is cut off, and not a value a "
                       "list holds")
        yield SheetRow(f"{place}!{number}", cells, number, problem)


def column_letter(index: int) -> str:
    """0 -> "A", 26 -> "AA": a column as Excel names it."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


# -- writing ------------------------------------------------------------------------------

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # not allowed in XML
FORMULA_STARTS = ("=", "+", "-", "@")


def write_workbook(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], *,
                   sheet: str = "Report", widths: Sequence[int] = ()) -> int:
    """Write one sheet to ``path``: ``header`` in bold and frozen, then ``rows``; returns the
    number of rows. Text is always text: a value starting with ``=`` is never a formula (and
    gets Excel's quote prefix, so that editing the cell keeps it text). Numbers stay
    numbers. Written beside ``path`` and renamed onto it (files.py): a link there is
    replaced, never followed. Raises :class:`~invitemail.outputs.files.OutputError`."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    out = book.create_sheet(sheet)
    out.freeze_panes = "A2"
    for index, width in enumerate(widths):
        out.column_dimensions[column_letter(index)].width = width
    bold = Font(bold=True)

    def cell(value: object, font: Font | None = None) -> object:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            value = _ILLEGAL.sub("\ufffd", str(value))
        made = WriteOnlyCell(out, value=value)
        if isinstance(value, str):
            made.data_type = "s"  # openpyxl would take "=..." for a formula
            if value.startswith(FORMULA_STARTS):
                made.quotePrefix = True
        if font is not None:
            made.font = font
        return made

    out.append([cell(name, bold) for name in header])
    count = 0
    for row in rows:
        out.append([cell(value) for value in row])
        count += 1
    with OutputFolder.of_file(path) as folder, \
            folder.stream(path.name, encoding=None) as pending:
        book.save(pending.file)
    return count
