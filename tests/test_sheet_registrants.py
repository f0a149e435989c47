"""Registrants from an .xlsx sheet, and `status --report` as a workbook or for Danish Excel.

The same header names, checks, duplicates and counts as a CSV list, with each problem at
``registrants.xlsx: Ark1!7`` where CSV has ``registrants.csv:7``. Every workbook is a real
file written by openpyxl; sends go to a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import openpyxl
import pytest

from invitemail import pool as parallel
from invitemail.campaign import Campaign
from invitemail.inputs.registrants import Scan, open_registrants, unique_registrants
from support.cli import run_cli
from support.event import NOW, EventBuilder, write_event
from support.relay import SmtpServer

Rows = Sequence[Sequence[object]]


def write_book(path: Path, sheets: dict[str, Rows]) -> Path:
    """A workbook with ``sheets``, in order; a text starting with = is text, not a formula
    (as Excel keeps "'=..." typed in a cell)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
            for cell in sheet[sheet.max_row]:
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"
    book.save(path)
    return path


def sheet_event(folder: Path, sheets: dict[str, Rows], *,
                builder: EventBuilder | None = None) -> Path:
    """An event folder whose list is registrants.xlsx with ``sheets`` (no registrants.csv)."""
    (builder or EventBuilder()).write(folder)
    (folder / "registrants.csv").unlink()
    write_book(folder / "registrants.xlsx", sheets)
    return folder


def relay_event(server: SmtpServer) -> EventBuilder:
    """An event sending to ``server``, with a uid of its own: a module fixture shares the
    session's record of sent messages (ledger.py) with other modules' events."""
    return EventBuilder().set("event", "uid", "sheets-2030-12-10@example.org").relay(
        {"host": "127.0.0.1", "port": server.port, "security": "none"})


DANISH = [
    ["Fornavn", "Efternavn", "E-mail", "Sprog", "Telefon", "Tilmeldt", "Medlemsnr"],
    ["Søren", "Kierkegaard", "soren@example.org", "da", 4512345678, dt.date(2030, 11, 1),
     100234],
    ["Karen", "Blixen", "karen@example.org", "engelsk", None, dt.datetime(2030, 11, 2, 9, 30),
     None],
    [None, None, None, None, None, None, None],
    ["Hans", "Andersen", "hans(at)example.org", "da", None, None, None],
    ["Søren", "K.", "SOREN@example.org", "da", None, None, None],
    ["Ib", "Spang", "ib@example.org", "fransk", None, None, None],
]


def test_check_reads_a_danish_sheet_with_problems_at_sheet_and_row(tmp_path: Path) -> None:
    folder = sheet_event(tmp_path / "event", {"Ark1": DANISH})
    book = folder / "registrants.xlsx"

    run = run_cli("check", folder)

    assert run.exit_code == 1, run.output
    assert run.stderr.splitlines()[:3] == [
        f"{book}: Ark1!5: 'hans(at)example.org' is not a valid address: An email address "
        "must have an @-sign.",
        f"{book}: Ark1!6: warning: SOREN@example.org is a duplicate of row 2; it gets one "
        "message",
        f"{book}: Ark1!7: language 'fransk' is not supported; use da or en",
    ]
    assert run.stdout.splitlines()[:2] == [
        f"{book}: Ark1: 2 registrants (languages: da, en), 1 duplicate skipped; 2 invitation "
        "messages built",
        "5 rows read: 2 registrants, 1 duplicate, 2 with problems (never sent)"]


def test_sheet_cells_reach_the_registrant_as_text(tmp_path: Path) -> None:
    path = write_book(tmp_path / "list.xlsx", {"Ark1": DANISH[:3]})
    scan = Scan()

    soren, karen = unique_registrants(open_registrants(path), scan)

    assert (soren.line, soren.name, soren.language) == (2, "Søren Kierkegaard", "da")
    assert soren.fields["telefon"] == "4512345678"
    assert soren.fields["tilmeldt"] == "2030-11-01"
    assert soren.fields["medlemsnr"] == "100234"
    assert (karen.line, karen.language, karen.fields["tilmeldt"], karen.fields["telefon"]) == (
        3, "en", "2030-11-02 09:30", "")
    assert scan.problems == [] and (scan.rows, scan.valid) == (2, 2)


def test_a_zoom_registration_export_sheet(tmp_path: Path) -> None:
    path = write_book(tmp_path / "zoom.xlsx", {"Registrants": [
        ["First Name", "Last Name", "Email", "Registration Time", "Approval Status",
         "Join URL"],
        ["Søren", "Kierkegaard", "soren@example.org", dt.datetime(2030, 11, 1, 10, 0),
         "approved", "https://zoom.us/w/84212345678?tk=abc"],
        ["Karen", "Blixen", "karen@example.org", dt.datetime(2030, 11, 1, 10, 5, 12),
         "approved", "http://zoom.us/w/84212345678?tk=def"],
    ]})
    scan = Scan()

    soren, karen = unique_registrants(open_registrants(path), scan)

    assert (soren.name, soren.join_url) == ("Søren Kierkegaard",
                                            "https://zoom.us/w/84212345678?tk=abc")
    assert soren.fields["registration_time"] == "2030-11-01 10:00"
    assert karen.fields["registration_time"] == "2030-11-01 10:05:12"
    assert soren.fields["approval_status"] == "approved"
    assert [str(p) for p in scan.problems] == [
        f"{path}: Registrants!3: warning: join link http://zoom.us/w/84212345678?tk=def is "
        "not https"]


def test_rows_with_different_join_links_for_one_address_are_each_a_problem(
        tmp_path: Path) -> None:
    path = write_book(tmp_path / "list.xlsx", {"Ark1": [
        ["E-mail", "Join URL"], ["a@example.org", "https://zoom.us/w/1?tk=a"],
        ["b@example.org", ""], ["A@example.org", "https://zoom.us/w/1?tk=b"]]})
    scan = Scan()

    assert [r.email for r in unique_registrants(open_registrants(path), scan)] == [
        "a@example.org", "b@example.org"]
    assert [str(p).split(" with another")[0] for p in scan.problems] == [
        f"{path}: Ark1!4: A@example.org is also on row 2,",
        f"{path}: Ark1!2: a@example.org is also on row 4,"]
    assert scan.addresses == ["b@example.org"]


@pytest.mark.parametrize(("rows", "expected"), [
    ([["Navn", "Adresse"], ["Søren", "soren@example.org"]],
     "{book}: Ark1!1: has no email column (the header has 'Navn', 'Adresse')"),
    ([["E-mail", "Navn", "Mail"], ["soren@example.org", "Søren", "x"]],
     "{book}: Ark1!1: column 'Mail' (column 3) means the same as 'E-mail' (column 1); "
     "keep one"),
    ([], "{book}: Ark1: is empty"),
], ids=["no-email", "two-emails", "empty"])
def test_a_sheet_whose_header_cannot_be_used(tmp_path: Path, rows: Rows,
                                             expected: str) -> None:
    folder = sheet_event(tmp_path / "event", {"Ark1": rows})

    run = run_cli("check", folder)

    assert run.exit_code == 1
    assert run.stderr.splitlines()[0] == "Error: " + expected.format(
        book=folder / "registrants.xlsx")
    assert "Traceback" not in run.output


def test_a_value_beyond_the_header_is_a_problem_of_its_row(tmp_path: Path) -> None:
    path = write_book(tmp_path / "list.xlsx", {"Ark1": [
        ["Navn", "E-mail"], ["Søren", "soren@example.org", None, "  "],
        ["Karen", "karen@example.org", None, "VIP"]]})
    scan = Scan()

    [soren] = unique_registrants(open_registrants(path), scan)

    assert soren.email == "soren@example.org"
    assert [str(p) for p in scan.problems] == [
        f"{path}: Ark1!3: has 'VIP' in column D, which has no header: name the column in the "
        "header row, or delete the value"]


def test_a_huge_cell_makes_its_row_a_problem(tmp_path: Path) -> None:
    path = write_book(tmp_path / "list.xlsx", {"Ark1": [
        ["Navn", "E-mail", "Note"], ["Søren", "soren@example.org", "x" * 100_000],
        ["Karen", "karen@example.org", "kort"]]})
    scan = Scan()

    [karen] = unique_registrants(open_registrants(path), scan)

    assert karen.email == "karen@example.org"
    assert [str(p) for p in scan.problems] == [
        f"{path}: Ark1!2: the cell in column C holds 32,767 characters or more, Excel's limit: "
        "it is cut off, and not a value a list holds"]
    assert scan.invalid == 1


# -- which file, which sheet --------------------------------------------------------------


def test_the_event_folder_s_registrants_xlsx_is_the_list_when_there_is_no_csv(
        tmp_path: Path) -> None:
    folder = sheet_event(tmp_path / "event", {"Ark1": DANISH[:3]})

    run = run_cli("check", folder)

    assert run.exit_code == 0, run.output
    assert run.stdout.startswith(f"{folder / 'registrants.xlsx'}: Ark1: 2 registrants")


def test_a_folder_with_both_lists_is_refused(tmp_path: Path) -> None:
    folder = write_event(tmp_path / "event")
    write_book(folder / "registrants.xlsx", {"Ark1": DANISH[:3]})

    run = run_cli("check", folder)
    status = run_cli("status", folder)

    assert run.exit_code == 1
    assert run.stderr == (f"Error: {folder}: has both registrants.csv and registrants.xlsx: "
                          "which one is the list?\nHint: move the one that is not the list "
                          "out of the folder, or give --registrants FILE\n")
    assert status.exit_code == 0
    assert f"warning: {folder}: has both registrants.csv and registrants.xlsx" in status.stderr


def test_sheet_picks_the_list_and_a_missing_sheet_lists_them(tmp_path: Path) -> None:
    folder = sheet_event(tmp_path / "event", {"Noter": [["Husk kaffe"]],
                                              "Tilmeldte": DANISH[:3]})
    book = folder / "registrants.xlsx"

    first = run_cli("check", folder)
    named = run_cli("check", folder, "--sheet", "tilmeldte")
    missing = run_cli("check", folder, "--sheet", "Deltagere")

    assert first.exit_code == 1
    assert first.stderr.startswith(f"Error: {book}: Noter!1: has no email column (the header "
                                   "has 'Husk kaffe')\nHint: name the column with the "
                                   "addresses Email or E-mail; if the header looks run "
                                   "together, check that the names are in cells of their own "
                                   "(or pick the list's sheet with --sheet)\n")
    assert named.exit_code == 0, named.output
    assert named.stdout.startswith(f"{book}: Tilmeldte: 2 registrants")
    assert (missing.exit_code, missing.stderr) == (1, (
        f"Error: {book}: has no sheet 'Deltagere'; its sheets are 'Noter', 'Tilmeldte'\n"
        "Hint: give one of them with --sheet NAME\n"))


@pytest.mark.parametrize(("options", "message"), [
    (("--sheet", "Ark1"), "{csv}: is a CSV file: --sheet applies to .xlsx workbooks only"),
    (("--registrants", "{xlsx}", "--encoding", "cp1252"),
     "{xlsx}: is a workbook: --encoding and --delimiter apply to CSV files only"),
    (("--registrants", "{xlsx}", "--delimiter", ";"),
     "{xlsx}: is a workbook: --encoding and --delimiter apply to CSV files only"),
], ids=["sheet-of-csv", "encoding-of-xlsx", "delimiter-of-xlsx"])
def test_options_for_the_other_kind_of_file_are_refused(tmp_path: Path, options: Sequence[str],
                                                        message: str) -> None:
    folder = write_event(tmp_path / "event")
    xlsx = write_book(tmp_path / "list.xlsx", {"Ark1": DANISH[:3]})
    names = {"csv": folder / "registrants.csv", "xlsx": xlsx}

    run = run_cli("check", folder, *(o.format(**names) for o in options))

    assert run.exit_code == 1
    assert run.stderr.splitlines()[0] == "Error: " + message.format(**names)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("list.xlsx", b"Navn,E-mail\nS,s@example.org\n", "is not an Excel workbook (.xlsx)"),
    ("list.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600),
     "is an old Excel 97-2003 workbook (.xls), which is not read"),
    ("list.ods", None, "is an OpenDocument spreadsheet (.ods)"),
], ids=["csv-named-xlsx", "xls", "ods"])
def test_a_file_that_is_no_workbook_exits_1_with_a_hint(tmp_path: Path, name: str,
                                                        data: bytes | None,
                                                        message: str) -> None:
    folder = write_event(tmp_path / "event")
    path = tmp_path / name
    if data is None:  # an OpenDocument spreadsheet: a zip with content.xml
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
            archive.writestr("content.xml", "<office:document-content/>")
    else:
        path.write_bytes(data)

    run = run_cli("send", folder, "--registrants", path, "--dry-run")

    assert run.exit_code == 1
    assert run.stderr.splitlines()[0] == f"Error: {path}: {message}"
    assert run.stderr.splitlines()[1].startswith(
        "Hint: in Excel choose File > Save As > Excel Workbook (.xlsx)")
    assert "Traceback" not in run.output


def test_workers_open_the_same_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list long enough to build on worker processes: each worker opens the named sheet,
    not the first, and nobody is left out or added."""
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    listed = [[f"Deltager {i}", f"deltager{i}@example.org", "da"] for i in range(1100)]
    folder = write_event(tmp_path / "event")
    book = write_book(tmp_path / "list.xlsx", {"Noter": [["Husk kaffe"]],
                                               "Tilmeldte": [["Navn", "E-mail", "Sprog"],
                                                             *listed]})
    campaign = Campaign.open(folder, registrants=book, sheet="Tilmeldte", now=NOW)
    campaign.start_workers()
    assert campaign in parallel._POOLS

    built = [b.recipient for b in campaign.messages(unique_registrants(campaign.source))]

    assert built == [row[1] for row in listed]
    deadline = time.monotonic() + 30
    while len(parallel.worker_pids(campaign)) < 2:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    assert not parallel.broken(campaign)  # a worker that opened "Noter" would fail


# -- sending from a sheet, and the report -------------------------------------------------

REPORT_ROWS = [
    ["Navn", "E-mail", "Sprog"],
    ["Søren", "soren@example.org", "da"],
    ["Formel", "=1+2@example.org", "da"],
    ["Plus", "+4512345678@example.org", "en"],
    ["Minus", "-2+3@example.org", "en"],
]


@pytest.fixture(scope="module")
def sent_from_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An event whose list is a sheet, sent to a real SMTP server."""
    folder = tmp_path_factory.mktemp("sheet") / "event"
    with SmtpServer() as server:
        sheet_event(folder, {"Ark1": REPORT_ROWS}, builder=relay_event(server))
        run = run_cli("send", folder, "--yes")
        recipients = sorted(r for t in server.transactions for r in t.rcpt_tos)
    assert run.exit_code == 0, run.output
    assert recipients == sorted(row[1] for row in REPORT_ROWS[1:])
    return folder


def test_status_counts_the_sheet(sent_from_sheet: Path) -> None:
    run = run_cli("status", sent_from_sheet)

    assert run.exit_code == 0, run.output
    assert (f"{sent_from_sheet / 'registrants.xlsx'}: 4 rows read: 4 registrants"
            in run.stdout), run.stdout


def test_status_report_xlsx_is_a_workbook_with_text_never_formulas(sent_from_sheet: Path,
                                                                   tmp_path: Path) -> None:
    report = tmp_path / "rapport.xlsx"

    run = run_cli("status", sent_from_sheet, "--report", report)

    assert run.exit_code == 0, run.output
    assert run.stdout.endswith(f"wrote 4 rows to {report}\n")
    with zipfile.ZipFile(report) as archive:
        assert b"<f>" not in archive.read("xl/worksheets/sheet1.xml")
    sheet = openpyxl.load_workbook(report).active
    assert sheet.title == "Report" and sheet.freeze_panes == "A2"
    assert [c.value for c in sheet[1]] == ["email", "line", "state", "attempts", "last_reply",
                                           "message_id", "updated_at", "sent_at"]
    assert all(c.font.bold for c in sheet[1])
    assert sheet.column_dimensions["A"].width >= 30
    rows = [[c.value for c in row[:4]] for row in sheet.iter_rows(min_row=2)]
    assert rows == [[row[1], line, "sent", 1] for line, row in enumerate(REPORT_ROWS[1:], 2)]
    formula = sheet["A3"]
    assert (formula.value, formula.data_type, formula.quotePrefix) == (
        "=1+2@example.org", "s", True)
    assert (report.stat().st_mode & 0o777) == 0o600


def test_status_report_csv_for_danish_excel(sent_from_sheet: Path, tmp_path: Path) -> None:
    report = tmp_path / "rapport.csv"

    run = run_cli("status", sent_from_sheet, "--report", report, "--excel")

    assert run.exit_code == 0, run.output
    data = report.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfemail;line;state;attempts;last_reply;")
    rows = list(csv.reader(data.decode("utf-8-sig").splitlines(), delimiter=";"))
    assert [row[:3] for row in rows[1:]] == [
        ["soren@example.org", "2", "sent"], ["'=1+2@example.org", "3", "sent"],
        ["'+4512345678@example.org", "4", "sent"], ["'-2+3@example.org", "5", "sent"]]
    assert all(len(row) == 8 for row in rows)


@pytest.mark.parametrize(("options", "message"), [
    (("--report", "{tmp}/r.xlsx", "--excel"),
     "Error: {tmp}/r.xlsx: --excel is for a .csv report; a workbook opens in columns anyway"),
    (("--excel",), "Error: --excel is for the report: give --report FILE.csv too"),
    (("--report", "{tmp}/r.xls"),
     "Error: {tmp}/r.xls: the report is written as .xlsx or .csv, not .xls"),
], ids=["excel-xlsx", "excel-alone", "xls"])
def test_status_report_options_that_do_not_go_together(sent_from_sheet: Path, tmp_path: Path,
                                                       options: Sequence[str],
                                                       message: str) -> None:
    run = run_cli("status", sent_from_sheet, *(o.format(tmp=tmp_path) for o in options))

    assert run.exit_code == 2
    assert message.format(tmp=tmp_path) in run.stderr
    assert os.listdir(tmp_path) == []
