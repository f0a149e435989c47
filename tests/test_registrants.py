"""registrants.csv: the exports people really have, and every problem as ``file:line``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from invitemail.campaign import Campaign
from invitemail.errors import ProblemsError
from invitemail.inputs.registrants import Registrant, Scan, open_registrants, unique_registrants
from support.event import NOW, write_event

WriteCsv = Callable[..., Path]


@pytest.fixture
def write_csv(tmp_path: Path) -> WriteCsv:
    """Write ``text`` as registrants.csv in ``encoding`` (``newline`` turns each \\n into it)."""

    def write(text: str, *, encoding: str = "utf-8", newline: str = "\n") -> Path:
        path = tmp_path / "registrants.csv"
        path.write_bytes(text.replace("\n", newline).encode(encoding))
        return path

    return write


def read(path: Path, **options: str) -> tuple[list[Registrant], list[str]]:
    """The unique registrants, and every problem and warning as the user reads it."""
    scan = Scan()
    registrants = list(unique_registrants(open_registrants(path, **options), scan))
    return registrants, [str(problem) for problem in scan.problems]


def read_error(path: Path, **options: str) -> ProblemsError:
    """The error for a file that cannot be used at all."""
    with pytest.raises(ProblemsError) as info:
        open_registrants(path, **options)
    return info.value


# -- headers --------------------------------------------------------------------------------


def test_open_registrants_reads_danish_headers(write_csv: WriteCsv) -> None:
    path = write_csv("Navn;E-mail;Sprog\nSøren Kierkegaard;soren@example.org;da\n"
                     "Karen Blixen;karen@example.org;en\n")

    registrants, problems = read(path)

    assert [(r.line, r.name, r.email, r.language) for r in registrants] == [
        (2, "Søren Kierkegaard", "soren@example.org", "da"),
        (3, "Karen Blixen", "karen@example.org", "en"),
    ]
    assert problems == []


def test_open_registrants_joins_fornavn_and_efternavn(write_csv: WriteCsv) -> None:
    path = write_csv("Fornavn;Efternavn;E-mail\nSøren;Kierkegaard;soren@example.org\n")

    [registrant], _ = read(path)

    assert (registrant.first_name, registrant.last_name) == ("Søren", "Kierkegaard")
    assert registrant.name == "Søren Kierkegaard"


def test_open_registrants_reads_zoom_registration_export(write_csv: WriteCsv) -> None:
    path = write_csv(
        "First Name,Last Name,Email,Registration Time,Approval Status,Join URL\n"
        "Søren,Kierkegaard,soren@example.org,2030-11-01 10:00,approved,"
        "https://zoom.us/w/84212345678?tk=abc\n")

    [registrant], problems = read(path)

    assert registrant.name == "Søren Kierkegaard"
    assert registrant.email == "soren@example.org"
    assert registrant.join_url == "https://zoom.us/w/84212345678?tk=abc"
    assert registrant.fields["approval_status"] == "approved"
    assert problems == []


def test_open_registrants_reads_english_headers(write_csv: WriteCsv) -> None:
    path = write_csv("Name,Email Address,Language,Time Zone\n"
                     "Karen Blixen,karen@example.org,English,America/New_York\n")

    [registrant], _ = read(path)

    assert (registrant.name, registrant.email) == ("Karen Blixen", "karen@example.org")
    assert (registrant.language, registrant.timezone) == ("en", "America/New_York")


def test_open_registrants_ignores_case_and_spaces_in_headers(write_csv: WriteCsv) -> None:
    path = write_csv(" NAVN , e-MAIL \nSøren , soren@example.org \n")

    [registrant], _ = read(path)

    assert (registrant.name, registrant.email) == ("Søren", "soren@example.org")


def test_open_registrants_extra_columns_reach_fields_by_key(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail,Organisation,Medlems nr.\nSøren,soren@example.org,Djøf,1234\n")

    [registrant], _ = read(path)

    assert registrant.fields["organisation"] == "Djøf"
    assert registrant.fields["medlems_nr"] == "1234"
    context = registrant.as_context()
    assert (context["organisation"], context["email"]) == ("Djøf", "soren@example.org")


def test_open_registrants_two_columns_for_one_thing_are_an_error(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,Name,E-mail\nSøren,Søren,soren@example.org\n")

    err = read_error(path)

    assert [str(p) for p in err.problems] == [
        f"{path}:1: column 'Name' (column 2) means the same as 'Navn' (column 1); keep one"]


def test_open_registrants_without_email_column(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,Telefon\nSøren,33 95 97 00\n")

    err = read_error(path)

    assert str(err) == f"{path}:1: has no email column (the header has 'Navn', 'Telefon')"
    assert err.hint == ("name the column with the addresses Email or E-mail; if the header looks "
                        "run together, give --delimiter")


def test_open_registrants_blank_lines_above_the_header_are_skipped(write_csv: WriteCsv) -> None:
    path = write_csv("\n\nNavn;E-mail\nSøren;soren@example.org\nKaren;karen\n")

    registrants, problems = read(path)

    assert [(r.line, r.email) for r in registrants] == [(4, "soren@example.org")]
    assert problems == [f"{path}:5: 'karen' is not a valid address: An email address must have "
                        "an @-sign."]


# -- format: delimiters, encodings, line ends ------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_open_registrants_detects_the_delimiter(write_csv: WriteCsv, delimiter: str) -> None:
    path = write_csv(delimiter.join(["Navn", "E-mail", "Sprog"]) + "\n"
                     + delimiter.join(['"Blixen, Karen"', "karen@example.org", "en"]) + "\n")

    source = open_registrants(path)
    [registrant], _ = read(path)

    assert source.delimiter == delimiter
    assert (registrant.name, registrant.email) == ("Blixen, Karen", "karen@example.org")


def test_open_registrants_delimiter_option_overrides_detection(write_csv: WriteCsv) -> None:
    # As many commas as semicolons in the header: detection picks the comma.
    path = write_csv("Navn, fuldt;E-mail\nKierkegaard, Søren;soren@example.org\n")

    [registrant], _ = read(path, delimiter=";")

    assert (registrant.fields["navn_fuldt"], registrant.email) == ("Kierkegaard, Søren",
                                                                   "soren@example.org")


def test_open_registrants_reads_utf8_with_bom(write_csv: WriteCsv) -> None:
    path = write_csv("\ufeffE-mail;Navn\nsoren@example.org;Søren Ærø\n")

    source = open_registrants(path)
    [registrant], _ = read(path)

    assert source.encoding == "utf-8-sig"
    assert source.header[0] == "E-mail"
    assert registrant.name == "Søren Ærø"


def test_open_registrants_reads_excel_cp1252(write_csv: WriteCsv) -> None:
    path = write_csv("Navn;E-mail;Afdeling\nSøren Ærø Åse;soren@example.org;Økonomi\n",
                     encoding="cp1252")

    source = open_registrants(path)
    [registrant], problems = read(path)

    assert source.encoding == "cp1252"
    assert registrant.name == "Søren Ærø Åse"
    assert registrant.fields["afdeling"] == "Økonomi"
    assert problems == []


def test_open_registrants_non_ascii_before_the_at_sign_is_refused(write_csv: WriteCsv) -> None:
    path = write_csv("Navn;E-mail\nSøren;søren@example.org\n", encoding="cp1252")

    registrants, problems = read(path)

    assert registrants == []
    assert problems == [f"{path}:2: 'søren@example.org' is not a valid address: "
                        "Internationalized characters before the @-sign are not supported: 'ø'."]


def test_open_registrants_encoding_option_overrides_detection(write_csv: WriteCsv) -> None:
    path = write_csv("Navn;E-mail\nSøren;soren@example.org\n", encoding="cp1252")

    err = read_error(path, encoding="utf-8")

    assert str(err) == f"{path}:2: is not valid utf-8: byte 0xf8 cannot be read"
    assert err.hint == "give the right --encoding"


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_open_registrants_reads_lf_and_crlf_alike(write_csv: WriteCsv, newline: str) -> None:
    path = write_csv('Navn;E-mail\nSøren;soren@example.org\n"Karen\nBlixen";karen@example.org\n'
                     "Niels;niels@example.org\n", newline=newline)

    registrants, problems = read(path)

    assert [(r.line, r.name) for r in registrants] == [(2, "Søren"), (5, "Niels")]
    assert registrants[1].email == "niels@example.org"
    assert problems == [f"{path}:3: the name contains a line break; it would reach the To: header"]


# -- whole-file problems ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "  ,  \n"], ids=["no-bytes", "blank-lines",
                                                                 "blank-cells"])
def test_open_registrants_empty_file(write_csv: WriteCsv, text: str) -> None:
    path = write_csv(text)

    err = read_error(path)

    assert [str(p) for p in err.problems] == [f"{path}: is empty"]
    assert err.hint == "export the registrant list with a header row such as Name,Email"


def test_open_registrants_header_only_has_no_registrants(write_csv: WriteCsv) -> None:
    path = write_csv("Navn;E-mail\n")

    assert read(path) == ([], [])


def test_campaign_check_reports_a_header_without_registrants(tmp_path: Path) -> None:
    folder = write_event(tmp_path, rows=[])

    report = Campaign.open(folder, now=NOW).check()

    assert [str(p) for p in report.errors] == [
        f"{folder / 'registrants.csv'}: has a header but no registrants"]
    assert not report.ok


def test_open_registrants_refuses_an_excel_workbook(write_csv: WriteCsv, tmp_path: Path) -> None:
    path = tmp_path / "registrants.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml")

    err = read_error(path)

    assert [str(p) for p in err.problems] == [f"{path}: is an Excel workbook, not a CSV file"]
    assert err.hint == "in Excel choose File > Save As > CSV UTF-8, then use that file"


def test_open_registrants_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "registrants.csv"

    err = read_error(path)

    assert [str(p) for p in err.problems] == [f"{path}: not found"]
    assert err.hint == ("put registrants.csv (or registrants.xlsx) in the event folder, or give "
                        "--registrants FILE")


# -- rows -----------------------------------------------------------------------------------


def test_unique_registrants_duplicate_address_differing_in_case(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail\nKaren,Karen.Blixen@Example.org\nNiels,niels@example.org\n"
                     "Karen B.,karen.blixen@example.org\n")
    scan = Scan()

    registrants = list(unique_registrants(open_registrants(path), scan))

    assert [(r.line, r.name) for r in registrants] == [(2, "Karen"), (3, "Niels")]
    assert [str(p) for p in scan.problems] == [
        f"{path}:4: warning: karen.blixen@example.org is a duplicate of line 2; it gets one "
        "message"]
    assert (scan.valid, scan.duplicates, scan.errors) == (2, 1, [])


def test_open_registrants_invalid_address_names_file_and_line(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail\nSøren,soren(at)example.org\nKaren,\nNiels,niels@example.org\n")

    registrants, problems = read(path)

    assert [r.email for r in registrants] == ["niels@example.org"]
    assert problems == [
        f"{path}:2: 'soren(at)example.org' is not a valid address: An email address must have "
        "an @-sign.",
        f"{path}:3: the address is empty",
    ]


def test_open_registrants_international_domain_is_sent_as_ascii(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail\nSøren,soren@bølle.dk\n")

    [registrant], _ = read(path)

    assert registrant.email == "soren@xn--blle-gra.dk"


@pytest.mark.parametrize(("row", "problem"), [
    ('"Søren\nKierkegaard",soren@example.org,,',
     "the name contains a line break; it would reach the To: header"),
    ('Søren,"soren@example.org\nBcc: alle@example.org",,',
     "the address contains a line break"),
    (',soren@example.org,"Søren\nK.",Kierkegaard',
     "the first name contains a line break; it would reach the To: header"),
], ids=["name", "address", "first-name"])
def test_open_registrants_line_break_in_a_header_value(write_csv: WriteCsv, row: str,
                                                       problem: str) -> None:
    path = write_csv(f"Navn,E-mail,Fornavn,Efternavn\n{row}\nNiels,niels@example.org,,\n")

    registrants, problems = read(path)

    assert problems == [f"{path}:2: {problem}"]
    assert [(r.line, r.email) for r in registrants] == [(4, "niels@example.org")]


def test_open_registrants_too_few_and_too_many_cells(write_csv: WriteCsv) -> None:
    path = write_csv("Navn;E-mail;Sprog\nSøren;soren@example.org\n"
                     "Karen;karen@example.org;en;ekstra\nNiels;niels@example.org;da\n")

    registrants, problems = read(path)

    assert problems == [
        f"{path}:2: has 2 cells, the header has 3: too few; is a delimiter or quote missing?",
        f"{path}:3: has 4 cells, the header has 3: too many; is a delimiter or quote missing?",
    ]
    assert [r.line for r in registrants] == [4]


def test_open_registrants_unclosed_quote(write_csv: WriteCsv) -> None:
    path = write_csv('Navn,E-mail\nNiels,niels@example.org\n"Søren,soren@example.org\n'
                     "Karen,karen@example.org\n")

    registrants, problems = read(path)

    # The row after the broken one is read on its own (it used to vanish into the quote).
    assert [r.line for r in registrants] == [2, 4]
    assert problems == [f'{path}:3: a quoted cell starts here and is never closed: a " is missing']


def test_open_registrants_reports_every_bad_row_at_once(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail,Sprog\nA,a@example,da\nB,b@example.org,tysk\n"
                     "C,c@example.org,en\nD,,da\n")

    registrants, problems = read(path)

    assert [r.line for r in registrants] == [4]
    assert [p.split(": ")[0] for p in problems] == [f"{path}:2", f"{path}:3", f"{path}:5"]


def test_open_registrants_skips_blank_rows_and_warns_about_a_repeated_header(
    write_csv: WriteCsv,
) -> None:
    path = write_csv("Navn,E-mail\nSøren,soren@example.org\n,\n\nNavn,E-mail\n"
                     "Karen,karen@example.org\n")

    registrants, problems = read(path)

    assert [r.line for r in registrants] == [2, 6]
    assert problems == [f"{path}:5: warning: repeats the header row"]


# -- language, join link, time zone ----------------------------------------------------------


@pytest.mark.parametrize(("written", "language"), [
    ("da", "da"), ("DA", "da"), ("dansk", "da"), ("en", "en"), ("English", "en"),
    ("en-GB", "en"), ("en_US", "en"), ("", "en"),
])
def test_open_registrants_language_aliases(write_csv: WriteCsv, written: str,
                                           language: str) -> None:
    path = write_csv(f"E-mail,Sprog\nsoren@example.org,{written}\n")

    [registrant], _ = read(path, default_language="en")

    assert registrant.language == language


def test_open_registrants_unknown_language(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail,Sprog\nSøren,soren@example.org,tysk\n")

    registrants, problems = read(path)

    assert registrants == []
    assert problems == [f"{path}:2: language 'tysk' is not supported; use da or en"]


def test_open_registrants_personal_join_url_and_language(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail,Sprog,Join URL\n"
                     "Søren,soren@example.org,da,https://zoom.us/w/1?tk=soren\n"
                     "Karen,karen@example.org,en,\n")

    registrants, _ = read(path)

    assert [(r.language, r.join_url) for r in registrants] == [
        ("da", "https://zoom.us/w/1?tk=soren"), ("en", "")]


def test_open_registrants_non_https_join_link_is_a_warning(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail,Join URL\nSøren,soren@example.org,http://zoom.us/w/1?tk=a\n")

    [registrant], problems = read(path)

    assert registrant.join_url == "http://zoom.us/w/1?tk=a"
    assert problems == [f"{path}:2: warning: join link http://zoom.us/w/1?tk=a is not https"]


@pytest.mark.parametrize("link", ["zoom.us/w/1", "https://", "https://zoom.us/w/1 x",
                                  "https://zoom.us/w/1\tx", "https://zoom.us/w/1\nx"])
def test_open_registrants_invalid_join_link(write_csv: WriteCsv, link: str) -> None:
    path = write_csv(f'Navn;E-mail;Join URL\nSøren;soren@example.org;"{link}"\n')

    registrants, problems = read(path)

    assert registrants == []
    assert problems == [f"{path}:2: join link {link!r} is not a web address"]


def test_open_registrants_unknown_time_zone(write_csv: WriteCsv) -> None:
    path = write_csv("Navn,E-mail,Tidszone\nSøren,soren@example.org,Europe/Aarhus\n")

    registrants, problems = read(path)

    assert registrants == []
    assert problems == [f"{path}:2: time zone 'Europe/Aarhus' is not known; use an IANA name "
                        'such as "America/New_York"']


def test_registrant_file_rows_can_be_read_twice(write_csv: WriteCsv) -> None:
    source = open_registrants(write_csv("Navn,E-mail\nSøren,soren@example.org\n"))

    assert list(source.rows()) == list(source.rows())
