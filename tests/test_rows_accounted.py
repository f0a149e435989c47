"""Issue 11, class 5: nobody is dropped silently.

Each row of the file is sent, skipped with a problem on its own line, or a duplicate. A
malformed row used to end the reading (csv stopped at it), so with ``--skip-invalid`` every
row after it vanished without a word; a row whose values made a custom template fail
blocked the whole send. Real files, the CLI, a real SMTP server on loopback.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.errors import ProblemsError
from invitemail.inputs.registrants import Scan, open_registrants, unique_registrants
from support.cli import run_cli
from support.registrant_lists import lines, recipients, relay_event, send
from support.relay import SmtpServer

HEADER = "Navn,E-mail,Sprog\n"
GOOD = ["Søren Kierkegaard,soren@example.org,da\n", "Karen Blixen,karen@example.org,en\n",
        "Niels Bohr,niels@example.org,da\n", "Tove Ditlevsen,tove@example.org,da\n",
        '"Blicher, Steen Steensen",steen@example.org,en\n']
ADDRESSES = sorted(["soren@example.org", "karen@example.org", "niels@example.org",
                    "tove@example.org", "steen@example.org"])
CSV = "{event}/registrants.csv"
UNCLOSED = 'a quoted cell starts here and is never closed: a " is missing'


def with_bad_row(bad: str, at: int) -> str:
    """The five good rows with ``bad`` as row ``at`` (0: the first after the header)."""
    return HEADER + "".join([*GOOD[:at], bad, *GOOD[at:]])


# (a malformed row, where it goes, the line it is on, what is said about it)
MALFORMED = {
    "stray-quote-after-closing-quote": ('"Mallory"x,m@evil.example,da\n', 1, 3,
                                        'text follows the closing " of a quoted cell: inside a '
                                        'quoted cell, write a " as ""'),
    "unclosed-quote-in-the-middle": ('"Mallory,m@evil.example,da\n', 1, 3, UNCLOSED),
    "unclosed-quote-in-the-last-cell": ('Mallory,m@evil.example,"da\n', 2, 4, UNCLOSED),
    "unclosed-quote-before-a-quoted-row": ('"Mallory,m@evil.example,da\n', 4, 6, UNCLOSED),
    "unclosed-quote-at-the-end": ('"Mallory,m@evil.example,da\n', 5, 7, UNCLOSED),
    "nul": ("Mal\x00lory,m@evil.example,da\n", 2, 4,
            "contains a NUL character; delete it, or export the list again"),
    "too-many-cells": ("Mallory,m@evil.example,da,extra\n", 3, 5,
                       "has 4 cells, the header has 3: too many; is a delimiter or quote "
                       "missing?"),
    "bare-cr": ("Mallory\r Evil,m@evil.example,da\n", 1, 3,
                "a carriage return (CR) in the middle of the row breaks it in two; delete it"),
    "bare-cr-before-a-delimiter": ("Mallory,m@evil.example\r,da\n", 0, 2,
                                   "a carriage return (CR) in the middle of the row breaks it "
                                   "in two; delete it"),
}


@pytest.mark.parametrize(("bad", "at", "line", "problem"), MALFORMED.values(), ids=MALFORMED)
def test_a_malformed_row_is_that_row_only(smtp_server: SmtpServer, tmp_path: Path, bad: str,
                                          at: int, line: int, problem: str) -> None:
    event = relay_event(tmp_path / "e", smtp_server, with_bad_row(bad, at))

    check = run_cli("check", event)
    sent = send(event, "--skip-invalid")
    status = run_cli("status", event)

    assert check.exit_code == 1, check.output
    assert lines(check.stderr, event) == [f"{CSV}:{line}: {problem}",
                                          "1 problem to fix before sending."]
    assert "6 rows read: 5 registrants, 1 with a problem (never sent)" in check.stdout
    assert sent.exit_code == 0, sent.output
    assert lines(sent.stderr, event) == [f"{CSV}:{line}: {problem}"]
    assert "Sent 5 messages, 0 failed, 0 uncertain" in sent.stdout
    assert recipients(smtp_server) == ADDRESSES
    assert lines(status.stdout, event) == [
        "{event}: template 'invitation', 5 registrants: 5 sent",
        f"{CSV}: 6 rows read: 5 registrants, 1 with a problem (never sent)"]


def test_without_skip_invalid_a_malformed_row_stops_the_send(smtp_server: SmtpServer,
                                                            tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        with_bad_row('"Mallory"x,m@evil.example,da\n', 1))

    sent = send(event)

    assert sent.exit_code == 1
    assert lines(sent.stderr, event)[-1] == ("Hint: fix these rows (or give --skip-invalid to "
                                             "send to the valid ones); nothing was sent")
    assert smtp_server.connections == 0


def test_every_malformed_row_at_once_and_every_good_row_sent(smtp_server: SmtpServer,
                                                            tmp_path: Path) -> None:
    text = (HEADER + GOOD[0] + '"Mallory"x,m@evil.example,da\n' + GOOD[1]
            + '"Eve,eve@evil.example,da\n' + GOOD[2] + "Trudy,t@evil.example,da,x\n" + GOOD[3]
            + GOOD[4] + '"Oscar,o@evil.example,en')  # no newline at the very end
    event = relay_event(tmp_path / "e", smtp_server, text)

    sent = send(event, "--skip-invalid")

    assert lines(sent.stderr, event) == [
        f'{CSV}:3: text follows the closing " of a quoted cell: inside a quoted cell, write a '
        '" as ""',
        f"{CSV}:5: {UNCLOSED}",
        f"{CSV}:7: has 4 cells, the header has 3: too many; is a delimiter or quote missing?",
        f"{CSV}:10: {UNCLOSED}"]
    assert "9 rows read: 5 registrants, 4 with problems (never sent)" in sent.stdout
    assert recipients(smtp_server) == ADDRESSES


def test_quoted_cells_over_several_lines_are_one_row(smtp_server: SmtpServer,
                                                     tmp_path: Path) -> None:
    # Notes over several lines, with commas, an address, a quoted word and CRLF inside:
    # none of their lines is a whole row, so each note stays in its row.
    text = ("Navn,E-mail,Sprog,Note\r\n"
            'Søren,soren@example.org,da,"Kommer sent,\r\nmen kommer"\r\n'
            'Karen,karen@example.org,en,"one, two, three, four\nfive"\n'
            'Niels,niels@example.org,da,"skriv til info@example.org\n""tak""\n\nhilsen"\n'
            "Tove,tove(at)example.org,da,\n"  # line 10: proves the lines were counted right
            "Steen,steen@example.org,en,\n")
    event = relay_event(tmp_path / "e", smtp_server, text)

    sent = send(event, "--skip-invalid")

    assert lines(sent.stderr, event) == [
        f"{CSV}:10: 'tove(at)example.org' is not a valid address: An email address must have "
        "an @-sign."]
    assert "Sent 4 messages" in sent.stdout
    assert recipients(smtp_server) == sorted(["soren@example.org", "karen@example.org",
                                              "niels@example.org", "steen@example.org"])


def test_rows_pasted_with_a_bare_cr_between_them_are_each_read(smtp_server: SmtpServer,
                                                               tmp_path: Path) -> None:
    text = HEADER + GOOD[0].rstrip("\n") + "\r" + GOOD[1] + GOOD[2]
    event = relay_event(tmp_path / "e", smtp_server, text)

    sent = send(event)

    assert sent.exit_code == 0, sent.output
    assert "3 rows read" not in sent.stdout  # nothing left out, nothing to say
    assert recipients(smtp_server) == sorted(["soren@example.org", "karen@example.org",
                                              "niels@example.org"])


def test_status_counts_rows_the_journal_has_not_seen_yet(smtp_server: SmtpServer,
                                                          tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server,
                        with_bad_row('"Mallory"x,m@evil.example,da\n', 1))
    before = run_cli("status", event)
    assert send(event, "--skip-invalid").exit_code == 0
    csv_file = event / "registrants.csv"
    csv_file.write_text(with_bad_row("Mallory,m@evil.example,da\n", 1), encoding="utf-8")

    fixed = run_cli("status", event)
    assert send(event).exit_code == 0
    done = run_cli("status", event)
    csv_file.unlink()
    gone = run_cli("status", event)

    assert lines(before.stdout, event) == [
        "{event}: nothing has been sent for this event yet (no journal).",
        f"{CSV}: 6 rows read: 5 registrants, 1 with a problem (never sent)"]
    assert lines(fixed.stdout, event) == [
        "{event}: template 'invitation', 5 registrants: 5 sent",
        f"{CSV}: 6 rows read: 6 registrants (1 not in the journal yet)"]
    assert lines(done.stdout, event) == [
        "{event}: template 'invitation', 6 registrants: 6 sent",
        f"{CSV}: 6 rows read: 6 registrants"]
    assert gone.exit_code == 0
    assert lines(gone.stdout, event) == ["{event}: template 'invitation', 6 registrants: 6 sent"]
    assert lines(gone.stderr, event) == [
        f"warning: {CSV}: not found; the counts are the journal's only"]
    assert recipients(smtp_server) == sorted([*ADDRESSES, "m@evil.example"])


# -- a row whose values make the template fail ----------------------------------------------

SEATS = "Pladser pr. person: {{ 100 // registrant.seats|int }}\n"


def seats_event(folder: Path, server: SmtpServer, seats: list[tuple[str, str, str]],
                da: str = SEATS, en: str = SEATS) -> Path:
    rows = "".join(f"{name},{address},{language},{count}\n"
                   for name, address, language, count in
                   [(n, f"{n.lower()}@example.org", lang, c) for n, lang, c in seats])
    event = relay_event(folder, server, "Navn,E-mail,Sprog,Seats\n" + rows)
    for language, text in (("da", da), ("en", en)):
        (event / "templates" / language).mkdir(parents=True, exist_ok=True)
        (event / "templates" / language / "invitation.txt").write_text(text, encoding="utf-8")
    return event


ZERO = ("the template failed for this row: {event}/templates/da/invitation.txt:1: "
        "ZeroDivisionError: integer division or modulo by zero")


def test_a_row_whose_values_make_the_template_fail_is_that_row_s_problem(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    event = seats_event(tmp_path / "e", smtp_server,
                        [("Anna", "da", "4"), ("Bo", "da", "0"), ("Carl", "en", "5"),
                         ("Dorte", "da", "2")])

    check = run_cli("check", event)
    refused = send(event)
    assert smtp_server.connections == 0
    sent = send(event, "--skip-invalid")
    again = send(event, "--skip-invalid")
    status = run_cli("status", event)

    assert check.exit_code == 1
    assert lines(check.stderr, event) == [f"{CSV}:3: {ZERO}", "1 problem to fix before sending."]
    assert lines(check.stdout, event)[:2] == [
        f"{CSV}: 3 registrants (languages: da, en); 3 invitation messages built",
        "4 rows read: 3 registrants, 1 with a problem (never sent)"]
    assert refused.exit_code == 1
    assert sent.exit_code == 0, sent.output
    assert lines(sent.stderr, event) == [f"{CSV}:3: {ZERO}"]
    assert "Sent 3 messages, 0 failed, 0 uncertain" in sent.stdout
    assert recipients(smtp_server) == ["anna@example.org", "carl@example.org",
                                       "dorte@example.org"]
    message = message_from_bytes(smtp_server.transactions[0].data, policy=policy.default)
    body = message.get_body(("plain",))
    assert body is not None and "Pladser pr. person: 25" in body.get_content()
    assert again.exit_code == 0 and "Sent 0 messages" in again.stdout  # nothing left pending
    assert lines(status.stdout, event)[0] == "{event}: template 'invitation', 3 registrants: 3 sent"


def test_a_template_that_fails_for_every_row_is_still_a_template_error(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    event = seats_event(tmp_path / "e", smtp_server, [("Anna", "da", "0"), ("Bo", "en", "0")])

    sent = send(event, "--skip-invalid")

    assert sent.exit_code == 1
    assert lines(sent.stderr, event)[0] == (
        "Error: {event}/templates/da/invitation.txt:1: ZeroDivisionError: integer division or "
        f"modulo by zero (rendering for {CSV}:2)")
    assert smtp_server.connections == 0


def test_a_language_whose_template_fails_for_every_row_is_a_template_error(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    # The Danish template is broken; the English one renders. Sending the English rows only
    # would be a quiet way to leave every Danish registrant out.
    event = seats_event(tmp_path / "e", smtp_server,
                        [("Anna", "da", "4"), ("Bo", "en", "4"), ("Carl", "da", "5")],
                        da="{{ registrant.seats|int // 0 }}\n")

    sent = send(event, "--skip-invalid")

    assert sent.exit_code == 1
    assert lines(sent.stderr, event)[0].startswith(
        "Error: {event}/templates/da/invitation.txt:1: ZeroDivisionError")
    assert smtp_server.connections == 0


def test_a_failing_row_is_left_out_when_workers_build_the_messages(
        smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    seats = [(f"P{i}", "da" if i % 3 else "en", "0" if i == 700 else "3") for i in range(1100)]
    event = seats_event(tmp_path / "e", smtp_server, seats)

    dry = run_cli("send", event, "--dry-run", "--skip-invalid")

    assert dry.exit_code == 0, dry.output
    assert lines(dry.stderr, event) == [f"{CSV}:702: {ZERO}"]
    assert "Dry run: 1099 messages would be sent" in dry.stdout


# -- any mix of good and malformed rows ------------------------------------------------------

BAD_ROWS = ['"Mallory"x,m{n}@evil.example,da,', '"Mallory,m{n}@evil.example,da,',
            'Mallory,m{n}@evil.example,da,"note', "Mal\x00lory,m{n}@evil.example,da,",
            "Mallory,m{n}@evil.example,da,,extra", "Mallory\r Evil,m{n}@evil.example,da,",
            "Mallory,m{n}@evil.example\r,da,"]
good_name = st.text(alphabet="abcæøå ÆØÅ'.-", min_size=1, max_size=12).filter(str.strip)
good_row = st.tuples(good_name, st.booleans(), st.sampled_from(["", "a note", "1, 2, 3"]))
any_row = st.one_of(good_row.map(lambda row: ("good", row)),
                    st.sampled_from(BAD_ROWS).map(lambda row: ("bad", row)))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(any_row, min_size=1, max_size=12), crlf=st.booleans(),
       end_newline=st.booleans())
def test_every_good_row_is_read_at_its_line_and_every_row_is_counted(
        tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, object]], crlf: bool,
        end_newline: bool) -> None:
    """Whatever the malformed rows around it, a good row (one line, a whole row by itself)
    is read at its own line; a problem is only ever on a malformed row's line; and the
    counts add up to the number of rows."""
    lines_out, good, bad = ["Navn,E-mail,Sprog,Note"], {}, set()
    for n, (kind, row) in enumerate(rows):
        line = n + 2
        if kind == "good":
            assert isinstance(row, tuple)
            name, quoted, note = row
            cells = [f'"{name}"' if quoted else name.replace('"', ""), f"p{n}@example.org",
                     "da", f'"{note}"' if "," in note else note]
            good[f"p{n}@example.org"] = line
            lines_out.append(",".join(cells))
        else:
            assert isinstance(row, str)
            bad.add(line)
            lines_out.append(row.format(n=n))
    newline = "\r\n" if crlf else "\n"
    path = tmp_path_factory.mktemp("rows") / "registrants.csv"
    path.write_bytes((newline.join(lines_out) + (newline if end_newline else "")).encode())
    scan = Scan()
    nul_rows = sum(1 for line in lines_out if "\x00" in line)
    if 2 * nul_rows >= len(rows):  # NULs in half the rows: not a text file at all
        with pytest.raises(ProblemsError, match="contains NUL bytes: it is not a text file"):
            open_registrants(path)
        return

    registrants = list(unique_registrants(open_registrants(path), scan))

    assert {r.email: r.line for r in registrants} == good
    assert {p.line for p in scan.problems} <= bad
    assert (bad and scan.errors) or not bad  # a malformed row never goes unmentioned
    assert scan.rows == scan.valid + scan.duplicates + scan.invalid + scan.ignored
    assert scan.valid == len(good) and scan.duplicates == 0 and scan.ignored == 0
