"""workbook.py: .xlsx sheets read as a coordinator sees them, bounded, and written safely.

Every workbook here is a real file, written by openpyxl (or by LibreOffice when it is
installed) and read back through python-calamine as invitemail reads it.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import openpyxl
import pytest

from invitemail.errors import Problem, SheetPlace
from invitemail.inputs.workbook import (
    MAX_CELL,
    MAX_COLUMNS,
    MAX_ROWS,
    SheetRow,
    WorkbookError,
    cell_text,
    column_letter,
    read_sheet,
    write_workbook,
)

Book = Callable[..., Path]


@pytest.fixture
def book(tmp_path: Path) -> Book:
    """``book({"Ark1": rows, ...}, name=...)``: a workbook with those sheets, in order; a row
    is a list of values, or a dict of cell name -> value for cells placed anywhere."""

    def write(sheets: dict[str, Sequence[object]], *, name: str = "registrants.xlsx",
              hidden: Sequence[str] = ()) -> Path:
        workbook = openpyxl.Workbook()
        workbook.remove(workbook.active)
        for title, rows in sheets.items():
            sheet = workbook.create_sheet(title)
            if title in hidden:
                sheet.sheet_state = "hidden"
            for row in rows:
                if isinstance(row, dict):
                    for cell, value in row.items():
                        sheet[cell] = value
                else:
                    assert isinstance(row, list | tuple)
                    sheet.append(list(row))
        path = tmp_path / name
        workbook.save(path)
        return path

    return write


def rows(path: Path, sheet: str | None = None) -> list[tuple[str, list[str]]]:
    return [(row.label, row.cells) for row in read_sheet(path, sheet)]


def error(path: Path, sheet: str | None = None) -> WorkbookError:
    with pytest.raises(WorkbookError) as info:
        list(read_sheet(path, sheet))
    return info.value


# -- values as Excel shows them -----------------------------------------------------------


def test_read_sheet_gives_numbers_dates_and_booleans_as_a_coordinator_reads_them(
        book: Book) -> None:
    path = book({"Ark1": [
        ["Telefon", "Medlemsnr", "Beløb", "Tilmeldt", "Tid", "Start", "Aktiv", "Stor"],
        [4512345678, 100234, 1.5, dt.date(2030, 1, 2), dt.datetime(2030, 1, 2, 9, 30),
         dt.time(14, 5), True, 1e22],
        [-7, 0, 0.1, dt.datetime(2030, 1, 2), dt.datetime(2030, 1, 2, 9, 30, 15),
         dt.time(8, 0, 30), False, 2.5e-7],
    ]})

    assert rows(path)[1:] == [
        (f"{path}: Ark1!2", ["4512345678", "100234", "1.5", "2030-01-02", "2030-01-02 09:30",
                             "14:05", "TRUE", "1e+22"]),
        (f"{path}: Ark1!3", ["-7", "0", "0.1", "2030-01-02", "2030-01-02 09:30:15",
                             "08:00:30", "FALSE", "2.5e-07"]),
    ]


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), ("", ""), ("  Søren ", "  Søren "), (12.0, "12"), (-0.0, "0"),
    (4512345678.0, "4512345678"), (3.25, "3.25"), (1 / 3, "0.3333333333333333"),
    (True, "TRUE"), (dt.date(2030, 12, 31), "2030-12-31"),
    (dt.datetime(2030, 12, 31, 23, 59), "2030-12-31 23:59"), (dt.time(0, 0), "00:00"),
    (dt.timedelta(hours=1, minutes=30), "1:30:00"),
])
def test_cell_text(value: object, text: str) -> None:
    assert cell_text(value) == text


def test_read_sheet_gives_a_formula_by_the_value_saved_with_it(book: Book,
                                                               tmp_path: Path) -> None:
    # openpyxl saves formulas without a value, as a program that cannot calculate does;
    # Excel and LibreOffice save the value too: give the first cell one, as they would.
    path = book({"Ark1": [["Navn", "E-mail", "Sum", "Uden værdi"],
                          ["Søren", '=LOWER("SOREN@EXAMPLE.ORG")', "=2+3", "=A2&B2"]]})
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    sheet = sheet.replace('<c r="B2"><f>LOWER("SOREN@EXAMPLE.ORG")</f><v /></c>',
                          '<c r="B2" t="str"><f>LOWER("SOREN@EXAMPLE.ORG")</f>'
                          '<v>soren@example.org</v></c>')
    sheet = sheet.replace('<c r="C2"><f>2+3</f><v /></c>', '<c r="C2"><f>2+3</f><v>5</v></c>')
    assert sheet.count("<v>") == 2  # both cells were found and given their values
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    saved = tmp_path / "saved.xlsx"
    with zipfile.ZipFile(saved, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)

    assert rows(saved)[1] == (f"{saved}: Ark1!2", ["Søren", "soren@example.org", "5"])


def test_read_sheet_skips_blank_rows_and_trailing_empty_cells_and_keeps_columns_in_place(
        book: Book) -> None:
    path = book({"Ark1": [
        {"B3": "Navn", "C3": "E-mail"},
        {"B5": "Søren", "C5": "soren@example.org", "D5": "", "F5": None},
        {"B7": "  "},  # only a space: blank
        {"C8": "karen@example.org"},
        {"B30": None},  # formatted but empty, far below
    ]})

    assert rows(path) == [
        (f"{path}: Ark1!3", ["", "Navn", "E-mail"]),
        (f"{path}: Ark1!5", ["", "Søren", "soren@example.org"]),
        (f"{path}: Ark1!8", ["", "", "karen@example.org"]),
    ]


def test_read_sheet_row_carries_its_number_and_a_problem_position(book: Book) -> None:
    path = book({"Ark1": [["E-mail"], ["a@example.org"]]})

    row = list(read_sheet(path))[1]

    assert row == SheetRow(f"{path}: Ark1!2", ["a@example.org"], 2)
    place = SheetPlace(f"{path}: Ark1")
    assert str(Problem(place, row.number, "x")) == f"{row.label}: x"
    assert str(Problem(str(path), 2, "x")) == f"{path}:2: x"  # a text file keeps file:line


# -- which sheet --------------------------------------------------------------------------


def test_read_sheet_reads_the_first_sheet_excel_shows(book: Book) -> None:
    path = book({"Skjult": [["gammel"]], "Tilmeldte": [["E-mail"]], "Ark3": [["x"]]},
                hidden=["Skjult"])

    assert rows(path) == [(f"{path}: Tilmeldte!1", ["E-mail"])]


def test_read_sheet_finds_a_named_sheet_whatever_its_case(book: Book) -> None:
    path = book({"Ark1": [["a"]], "Tilmeldte Maj": [["b"]]})

    assert rows(path, "Tilmeldte Maj") == [(f"{path}: Tilmeldte Maj!1", ["b"])]
    assert rows(path, "tilmeldte maj") == [(f"{path}: Tilmeldte Maj!1", ["b"])]


def test_read_sheet_missing_sheet_lists_the_sheets(book: Book) -> None:
    path = book({"Ark1": [["a"]], "Tilmeldte": [["b"]]})

    err = error(path, "Deltagere")

    assert str(err) == f"{path}: has no sheet 'Deltagere'; its sheets are 'Ark1', 'Tilmeldte'"
    assert err.hint == "give one of them with --sheet NAME"


# -- files that are no workbook -----------------------------------------------------------

SAVE_AS = "in Excel choose File > Save As > Excel Workbook (.xlsx)"


@pytest.mark.parametrize(("data", "message", "hint"), [
    (b"Navn,E-mail\nS,s@example.org\n", "is not an Excel workbook (.xlsx)",
     f"{SAVE_AS}; a CSV file must be named .csv"),
    (b"", "is empty", f"{SAVE_AS}; a CSV file must be named .csv"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "Workbook".encode("utf-16-le"),
     "is an old Excel 97-2003 workbook (.xls), which is not read", f"{SAVE_AS}, then use "
     "that file"),
    # An Office file with a password is a compound file holding an "EncryptedPackage".
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptedPackage".encode("utf-16-le"),
     "is protected with a password, so it cannot be read", "in Excel choose File > Info > "
     "Protect Workbook > Encrypt with Password, clear the password, and save"),
    (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml", "is damaged: it is not a complete "
     ".xlsx file", f"download or copy it again, or open it in Excel and save it again "
     f"({SAVE_AS})"),
], ids=["csv-text", "empty", "xls", "encrypted", "cut-short"])
def test_read_sheet_refuses_what_is_not_a_workbook(tmp_path: Path, data: bytes, message: str,
                                                   hint: str) -> None:
    path = tmp_path / "registrants.xlsx"
    path.write_bytes(data)

    err = error(path)

    assert (str(err), err.hint) == (f"{path}: {message}", hint)


@pytest.mark.parametrize(("parts", "kind"), [
    ({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
     "an OpenDocument spreadsheet (.ods)"),
    ({"word/document.xml": b"<x/>"}, "a zip file, not an Excel workbook"),
    ({"photo.jpg": b"\xff\xd8"}, "a zip file, not an Excel workbook"),
])
def test_read_sheet_refuses_a_zip_that_is_not_a_workbook(tmp_path: Path, parts: dict[str, bytes],
                                                         kind: str) -> None:
    path = tmp_path / "registrants.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)

    assert str(error(path)) == f"{path}: is {kind}"


def test_read_sheet_refuses_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    assert str(error(tmp_path / "nope.xlsx")) == f"{tmp_path / 'nope.xlsx'}: not found"
    (tmp_path / "folder.xlsx").mkdir()
    assert str(error(tmp_path / "folder.xlsx")) == f"{tmp_path / 'folder.xlsx'}: is a folder"


# -- bounds -------------------------------------------------------------------------------


def bomb(path: Path, book_path: Path, extra: dict[str, int]) -> Path:
    """``book_path``'s parts plus parts of zeros (name -> decompressed size), compressed."""
    with zipfile.ZipFile(book_path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
        for name, size in extra.items():
            archive.writestr(name, bytes(size))
    return path


@pytest.mark.parametrize("extra", [
    {"xl/worksheets/sheet1.xml.pad": 64 * 2**20},  # one part 1,000 times its size
    {"xl/media/image1.png": 3 * 2**20},  # small, but still far beyond a picture's ratio
    {f"xl/media/pad{i}.bin": 2**20 for i in range(260)},  # many parts, 260 MiB together
], ids=["one-part", "a-picture", "many-parts"])
def test_read_sheet_refuses_a_zip_bomb_before_reading_it(book: Book, tmp_path: Path,
                                                         extra: dict[str, int]) -> None:
    path = bomb(tmp_path / "bomb.xlsx", book({"Ark1": [["E-mail"]]}, name="ok.xlsx"), extra)
    assert path.stat().st_size < 2 * 2**20

    err = error(path)

    assert re.fullmatch(rf"{re.escape(str(path))}: inflates far beyond its size when opened "
                        r"\(its part '[^']+' alone does\): a damaged or hostile file, not read",
                        str(err)), str(err)


def test_read_sheet_refuses_a_part_that_lies_about_its_size(book: Book, tmp_path: Path) -> None:
    # The central directory says 1 KiB; the part inflates to 8 MiB: read as far as said,
    # then the checksum does not match.
    source = book({"Ark1": [["E-mail"]]}, name="ok.xlsx")
    path = bomb(tmp_path / "liar.xlsx", source, {"xl/pad.bin": 8 * 2**20})
    data = bytearray(path.read_bytes())
    size = (8 * 2**20).to_bytes(4, "little")
    assert data.count(size) == 2  # the local header and the central directory
    data[:] = data.replace(size, (1024).to_bytes(4, "little"))
    path.write_bytes(bytes(data))

    assert str(error(path)) == f"{path}: is damaged: it is not a complete .xlsx file"


def test_read_sheet_refuses_a_sheet_beyond_the_row_or_column_cap(book: Book) -> None:
    far_down = book({"Ark1": [{"A1": "E-mail", f"A{MAX_ROWS + 1}": "x"}]}, name="down.xlsx")
    far_right = book({"Ark1": [{"A1": "E-mail", f"{column_letter(MAX_COLUMNS)}1": "x"}]},
                     name="right.xlsx")

    down, right = error(far_down), error(far_right)

    assert str(down) == (f"{far_down}: Ark1: has {MAX_ROWS + 1:,} rows and 1 columns; at most "
                         f"{MAX_ROWS:,} rows and {MAX_COLUMNS:,} columns are read")
    assert str(right) == (f"{far_right}: Ark1: has 1 rows and {MAX_COLUMNS + 1:,} columns; at "
                          f"most {MAX_ROWS:,} rows and {MAX_COLUMNS:,} columns are read")
    assert down.hint is not None and "Ctrl+End" in down.hint


def test_read_sheet_marks_a_row_with_a_huge_cell(book: Book) -> None:
    # Excel stops at 32,767 characters and the reader cuts a longer cell off there: a cell
    # that long is not the file's (a crafted file) and its row is not used.
    path = book({"Ark1": [["E-mail", "Note"], ["a@example.org", "x" * 200_000],
                          ["b@example.org", "y" * (MAX_CELL - 1)],
                          ["c@example.org", "", "z" * MAX_CELL]]})

    first, second, third = list(read_sheet(path))[1:]

    assert first.problem == ("the cell in column B holds 32,767 characters or more, Excel's "
                             "limit: it is cut off, and not a value a list holds")
    assert second.problem == "" and len(second.cells[1]) == MAX_CELL - 1
    assert third.problem.startswith("the cell in column C holds 32,767 characters or more")


def test_column_letter() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 51, 701, 702, 16383)] == [
        "A", "Z", "AA", "AZ", "ZZ", "AAA", "XFD"]


# -- a workbook saved by LibreOffice ------------------------------------------------------


# tests/workbooks/libreoffice-tilmeldte.xlsx was saved by LibreOffice Calc 7.4 from this CSV
# (comma, double quote, UTF-8, formulas evaluated):
#   Navn,E-mail,Telefon,Sum
#   Søren Ærø,soren@example.org,4512345678,=2+3
#   Karen,karen@example.org,004540000000,=C3*0
# with: soffice --headless
#   --infilter=CSV:44,34,76,1,,1030,false,true,false,false,false,-1,true
#   --convert-to xlsx tilmeldte.csv
LIBREOFFICE_BOOK = Path(__file__).parent / "workbooks" / "libreoffice-tilmeldte.xlsx"


def test_read_sheet_reads_a_workbook_libreoffice_saved(tmp_path: Path) -> None:
    path = tmp_path / "tilmeldte.xlsx"
    path.write_bytes(LIBREOFFICE_BOOK.read_bytes())

    assert rows(path) == [
        (f"{path}: tilmeldte!1", ["Navn", "E-mail", "Telefon", "Sum"]),
        (f"{path}: tilmeldte!2", ["Søren Ærø", "soren@example.org", "4512345678", "5"]),
        (f"{path}: tilmeldte!3", ["Karen", "karen@example.org", "4540000000", "0"]),
    ]


# -- writing ------------------------------------------------------------------------------


def test_write_workbook_writes_text_never_a_formula(tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    values = ["=HYPERLINK(\"http://x.example\",\"klik\")", "+45 12 34", "-2+3", "@SUM(A1)",
              "=1+2@example.org", "plain", "tab\tinside", "bell\x07", None]

    count = write_workbook(path, ["value", "n"], [[v, i] for i, v in enumerate(values)],
                           widths=[30, 5])

    assert count == len(values)
    with zipfile.ZipFile(path) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml  # no cell is a formula
    sheet = openpyxl.load_workbook(path).active
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["A"].width == 30
    assert [c.value for c in sheet[1]] == ["value", "n"] and sheet["A1"].font.bold
    read = [(row[0].value, row[0].data_type, row[0].quotePrefix, row[1].value)
            for row in sheet.iter_rows(min_row=2)]
    assert read == [
        (values[0], "s", True, 0), (values[1], "s", True, 1), (values[2], "s", True, 2),
        (values[3], "s", True, 3), (values[4], "s", True, 4), ("plain", "s", False, 5),
        ("tab\tinside", "s", False, 6), ("bell\ufffd", "s", False, 7), (None, "n", False, 8)]


def test_write_workbook_replaces_a_link_at_its_name(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    path = tmp_path / "report.xlsx"
    path.symlink_to(target)

    write_workbook(path, ["a"], [["b"]])

    assert target.read_text() == "keep me"
    assert not path.is_symlink() and zipfile.is_zipfile(path)
    assert (path.stat().st_mode & 0o777) == 0o600


def test_read_sheet_reads_back_what_write_workbook_wrote(tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    write_workbook(path, ["email", "line"], [["=a@example.org", 2], ["b@example.org", 3]],
                   sheet="Report")

    assert rows(path) == [(f"{path}: Report!1", ["email", "line"]),
                          (f"{path}: Report!2", ["=a@example.org", "2"]),
                          (f"{path}: Report!3", ["b@example.org", "3"])]

