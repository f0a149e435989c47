"""Issue 11, class 6: the encoding is decided on evidence, never by falling back.

A UTF-8 file with one stray byte used to be read as cp1252 whole, so every æ, ø and å went
out as ``Ã¦``, ``Ã¸``, ``Ã¥`` and `check` said nothing. Now a file that is UTF-8 but for a
few bytes is UTF-8: the rows with those bytes are named (and skippable), every other row
reads as written; a real Excel cp1252 file is still cp1252; names garbled before they
reached the file get a warning. Real files, the CLI, a real SMTP server on loopback.
"""

from __future__ import annotations

import codecs
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from support.cli import run_cli
from support.registrant_lists import lines, recipients, relay_event, send
from support.relay import SmtpServer

CSV = "{event}/registrants.csv"
PEOPLE = [("Søren Kierkegaard", "soren@example.org", "da"), ("Åse Ærø", "ase@example.org", "da"),
          ("Karen Blixen", "karen@example.org", "en"), ("Jørgen Østergård", "jorgen@example.org",
                                                        "da")]


def utf8_rows(people: list[tuple[str, str, str]] = PEOPLE) -> bytes:
    return "".join(f"{n},{a},{lang}\n" for n, a, lang in people).encode("utf-8")


HEADER = b"Navn,E-mail,Sprog\n"


def not_utf8(line: int, shown: str, byte: str = "0xF8") -> str:
    return (f"{CSV}:{line}: is not UTF-8 here ({byte} in {shown!r}), though the rest of the "
            "file is: retype this row's letters, or export the list again as CSV UTF-8")


def display_names(server: SmtpServer) -> dict[str, str]:
    """Each recipient's display name in To:, as the message carries it."""
    names = {}
    for transaction in server.transactions:
        message = message_from_bytes(transaction.data, policy=policy.default)
        mailbox = message["To"].addresses[0]
        names[mailbox.addr_spec] = mailbox.display_name
    return names


EVERYONE = {address: name for name, address, _ in PEOPLE}


# (the file's bytes, the problems, who gets a message)
MOSTLY_UTF8 = {
    "one-bad-byte": (HEADER + utf8_rows() + b"S\xf8ren Mallory,mallory@example.org,da\n",
                     [not_utf8(6, "S\ufffdren Mallory")]),
    "bad-bytes-in-two-rows": (
        HEADER + utf8_rows(PEOPLE[:2]) + b"\xc6bel\xf8,aebel@example.org,da\n"
        + utf8_rows(PEOPLE[2:]) + b"Bo,bo@example.org,da,\n" + b"Malene,m\xe5@example.org,da\n",
        [not_utf8(4, "\ufffdbel\ufffd", "0xC6, 0xF8"),
         f"{CSV}:7: has 4 cells, the header has 3: too many; is a delimiter or quote missing?",
         not_utf8(8, "m\ufffd@example.org", "0xE5")]),
    "truncated-letter-at-the-end": (HEADER + utf8_rows() + b"Bj\xc3",
                                    [f"{CSV}:6: has 1 cells, the header has 3: too few; is a "
                                     "delimiter or quote missing?"]),
    "truncated-letter-at-the-end-of-a-row": (
        HEADER + utf8_rows() + b"Bo,bo@example.org,\xc3",
        [not_utf8(6, "\ufffd", "0xC3")]),
    "bom-and-a-bad-byte": (codecs.BOM_UTF8 + HEADER + utf8_rows()
                           + b"Bo \xd8stergaard,bo@example.org,da\n",
                           [not_utf8(6, "Bo \ufffdstergaard", "0xD8")]),
    "cp1252-row-pasted-into-crlf-utf8": (
        (HEADER + utf8_rows()).replace(b"\n", b"\r\n") + "Åse Ærø,x@example.org,da\r\n".encode(
            "cp1252"),
        [not_utf8(6, "\ufffdse \ufffdr\ufffd", "0xC5, 0xC6, 0xF8")]),
}


@pytest.mark.parametrize(("data", "problems"), MOSTLY_UTF8.values(), ids=MOSTLY_UTF8)
def test_a_utf8_file_with_a_few_bad_bytes_names_those_rows_and_reads_the_rest_as_utf8(
        smtp_server: SmtpServer, tmp_path: Path, data: bytes, problems: list[str]) -> None:
    event = relay_event(tmp_path / "e", smtp_server, data)

    check = run_cli("check", event)
    sent = send(event, "--skip-invalid")

    assert check.exit_code == 1
    count = len(problems)
    assert lines(check.stderr, event) == [
        *problems, f"{count} problem{'s' if count > 1 else ''} to fix before sending."]
    assert sent.exit_code == 0, sent.output
    assert lines(sent.stderr, event) == problems
    # Everyone else's name is as written: no "SÃ¸ren".
    assert display_names(smtp_server) == EVERYONE


def test_without_skip_invalid_a_bad_byte_stops_the_send(smtp_server: SmtpServer,
                                                        tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        HEADER + utf8_rows() + b"S\xf8ren Mallory,mallory@example.org,da\n")

    sent = send(event)

    assert sent.exit_code == 1
    assert lines(sent.stderr, event)[0] == "Error: " + not_utf8(6, "S\ufffdren Mallory")
    assert smtp_server.connections == 0


CP1252 = {
    "excel-semicolon-crlf": "Navn;E-mail;Sprog\r\nSøren Ærø;soren@example.org;da\r\n"
                            "Åse Østergård;ase@example.org;da\r\nKaren Blixen;karen@example.org;en"
                            "\r\n",
    # "Ø’" is D8 92 in cp1252: a valid UTF-8 sequence by accident. The other letters outweigh it.
    "a-pair-that-happens-to-be-utf8": "Navn,E-mail,Sprog\nSøren Ærø,soren@example.org,da\n"
                                      "JØ’S Åse,ase@example.org,da\nKaren Blixen,"
                                      "karen@example.org,en\n",
    "bom-before-cp1252": "\ufeffNavn;E-mail;Sprog\r\nSøren Ærø;soren@example.org;da\r\n"
                         "Åse Østergård;ase@example.org;da\r\nKaren Blixen;karen@example.org;en"
                         "\r\n",
}


@pytest.mark.parametrize("text", CP1252.values(), ids=CP1252)
def test_a_real_cp1252_file_is_still_read_as_cp1252(smtp_server: SmtpServer, tmp_path: Path,
                                                     text: str) -> None:
    data = text.encode("cp1252") if not text.startswith("\ufeff") else (
        codecs.BOM_UTF8 + text[1:].encode("cp1252"))
    event = relay_event(tmp_path / "e", smtp_server, data)

    sent = send(event)

    assert sent.exit_code == 0, sent.output
    assert sent.stderr == ""
    expected = {}
    for row in text.lstrip("\ufeff").splitlines()[1:]:
        name, address, _ = row.replace(";", ",").split(",")
        expected[address] = name
    assert display_names(smtp_server) == expected


MOJIBAKE = {  # the ids say which letters were garbled
    "o-slash": ("SÃ¸ren Kierkegaard", "Søren Kierkegaard"),
    "ae-and-a-ring": ("Ã†rÃ¸ MÃ¥rtensen", "Ærø Mårtensen"),
    "capital-o-slash-and-a-ring": ("Ã˜stergÃ¥rd Ã…se", "Østergård Åse"),
    "en-dash": ("Karen â€“ Blixen", "Karen – Blixen"),
    "polish": ("PaweÅ‚ Å»ak", "Paweł Żak"),
    "cyrillic": ("Ð˜Ð²Ð°Ð½", "Иван"),
}


@pytest.mark.parametrize(("garbled", "meant"), MOJIBAKE.values(), ids=MOJIBAKE)
def test_check_warns_about_names_garbled_before_they_reached_the_file(
        smtp_server: SmtpServer, tmp_path: Path, garbled: str, meant: str) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        f"Navn,E-mail,Sprog\nNiels Bohr,niels@example.org,da\n"
                        f"{garbled},x@example.org,da\n")

    check = run_cli("check", event)

    assert check.exit_code == 0, check.output  # a warning: the row may be right after all
    assert lines(check.stderr, event) == [
        f"{CSV}:3: warning: {garbled!r} (column 'Navn') looks garbled: UTF-8 read as "
        f"Windows-1252 somewhere before this file; it probably said {meant!r}; correct it in "
        "the file"]


def test_real_names_are_not_taken_for_garbled_ones(smtp_server: SmtpServer,
                                                   tmp_path: Path) -> None:
    names = ["JOÃO Silva", "Ålborg Ærø Østergård", "Ängström Ölund", "Âge d'or",
             "Björk Guðmundsdóttir", "JØ’S Åse", "Renée O’Hara"]
    event = relay_event(tmp_path / "e", smtp_server, "Navn,E-mail\n" + "".join(
        f"{name},p{i}@example.org\n" for i, name in enumerate(names)))

    check = run_cli("check", event)

    assert check.exit_code == 0, check.output
    assert check.stderr == ""


def test_encoding_option_overrides_the_evidence(smtp_server: SmtpServer,
                                                tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        HEADER + utf8_rows() + b"S\xf8ren Mallory,mallory@example.org,da\n")

    strict = run_cli("check", event, "--encoding", "utf-8")
    latin = run_cli("check", event, "--encoding", "cp1252")

    assert strict.exit_code == 1
    assert lines(strict.stderr, event) == [
        f"Error: {CSV}:6: is not valid utf-8: byte 0xf8 cannot be read",
        "Hint: give the right --encoding"]
    # Read as cp1252 on purpose, the UTF-8 names are garbled, and check says so.
    assert latin.exit_code == 0
    assert lines(latin.stderr, event)[0] == (
        f"{CSV}:2: warning: 'SÃ¸ren Kierkegaard' (column 'Navn') looks garbled: UTF-8 read as "
        "Windows-1252 somewhere before this file; it probably said 'Søren Kierkegaard'; "
        "correct it in the file")
    assert len(latin.stderr.splitlines()) == 3  # Søren, Åse Ærø, Jørgen Østergård


def test_a_bad_byte_in_the_header_is_an_error_for_the_file(smtp_server: SmtpServer,
                                                           tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        b"Navn,E-mail,Sprog,F\xf8dt\nS\xc3\xb8ren,soren@example.org,da,1813\n")

    check = run_cli("check", event)

    assert check.exit_code == 1
    assert lines(check.stderr, event) == [
        f"Error: {CSV}:1: the header row is not UTF-8 (0xF8 in 'F\ufffddt'), though the rest "
        "of the file is",
        "Hint: export the list again as CSV UTF-8, or give --encoding"]


def test_status_counts_the_rows_with_bad_bytes(smtp_server: SmtpServer, tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        HEADER + utf8_rows() + b"S\xf8ren Mallory,mallory@example.org,da\n")
    assert send(event, "--skip-invalid").exit_code == 0

    status = run_cli("status", event)

    assert lines(status.stdout, event) == [
        "{event}: template 'invitation', 4 registrants: 4 sent",
        f"{CSV}: 5 rows read: 4 registrants, 1 with a problem (never sent)"]
    assert sorted(recipients(smtp_server)) == sorted(EVERYONE)


def test_utf8_rows_in_a_file_that_is_mostly_cp1252_are_warned_about(smtp_server: SmtpServer,
                                                                     tmp_path: Path) -> None:
    # Two cp1252 rows full of æøå outweigh one short UTF-8 name: the file is read as
    # cp1252, and the UTF-8 name, garbled by that, is named.
    data = (HEADER + "Søren Ærø Åse,soren@example.org,da\nÆbeløe Østergård,ae@example.org,da\n"
            .encode("cp1252") + "Иван,ivan@example.org,en\n".encode())
    event = relay_event(tmp_path / "e", smtp_server, data)

    check = run_cli("check", event)

    assert check.exit_code == 0, check.output
    assert lines(check.stderr, event) == [
        f"{CSV}:4: warning: 'Ð˜Ð²Ð°Ð½' (column 'Navn') looks garbled: UTF-8 read as "
        "Windows-1252 somewhere before this file; it probably said 'Иван'; correct it in the "
        "file"]


def test_bytes_cp1252_does_not_have_leave_the_utf8_reading(smtp_server: SmtpServer,
                                                           tmp_path: Path) -> None:
    # "Ł" is C5 81 in UTF-8, and 0x81 is no cp1252 character: the file cannot be cp1252, so
    # the rows that are not UTF-8 are named, even though they have more odd bytes.
    data = (HEADER + "Łukasz,lukasz@example.org,en\n".encode()
            + "Søren Ærø Åse,soren@example.org,da\n".encode("cp1252"))
    event = relay_event(tmp_path / "e", smtp_server, data)

    sent = send(event, "--skip-invalid")

    assert lines(sent.stderr, event) == [not_utf8(3, "S\ufffdren \ufffdr\ufffd \ufffdse",
                                                  "0xF8, 0xC6, 0xC5")]
    assert display_names(smtp_server) == {"lukasz@example.org": "Łukasz"}
