"""Issue 11, class 9: rows that share an address and disagree about the personal join link.

The first row used to win with only a warning, so whoever registered someone else's address
first (in any case) chose the name and the personal join link that person received. Now
rows that share an address and differ in the link are an error naming both lines, and
``--skip-invalid`` sends neither; rows that differ only in the name stay a warning, and the
first one wins. Real files, the CLI, a real SMTP server on loopback.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest

from support.cli import run_cli
from support.registrant_lists import lines, recipients, relay_event, send
from support.relay import SmtpServer

CSV = "{event}/registrants.csv"
HEADER = "Navn,E-mail,Sprog,Join URL\n"
LINK_A = "https://zoom.us/w/84212345678?tk=anna-real"
LINK_B = "https://zoom.us/w/84212345678?tk=mallory"
KAREN = f"Karen Blixen,karen@example.org,en,{LINK_A.replace('anna-real', 'karen')}\n"
NIELS = "Niels Bohr,niels@example.org,da,\n"


def conflict(line: int, address: str, other: int) -> str:
    return (f"{CSV}:{line}: {address} is also on line {other}, with another personal join "
            "link: keep the row with the right link and delete the other (neither gets a "
            "message until then)")


def duplicate(line: int, address: str, first: int) -> str:
    return f"{CSV}:{line}: warning: {address} is a duplicate of line {first}; it gets one message"


def join_links(server: SmtpServer) -> dict[str, str]:
    """Each recipient's display name and the join link in the text part."""
    found = {}
    for transaction in server.transactions:
        message = message_from_bytes(transaction.data, policy=policy.default)
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        link = next(word for word in text.split() if word.startswith("https://zoom.us/"))
        found[message["To"].addresses[0].display_name] = link
    return found


# (rows 2.., the problems and warnings, who gets a message)
CASES = {
    "different-case-different-links": (
        [f"Mallory,ANNA@example.org,da,{LINK_B}\n", KAREN, f"Anna Holm,anna@Example.org,da,"
                                                           f"{LINK_A}\n", NIELS],
        [conflict(2, "anna@example.org", 4), conflict(4, "anna@example.org", 2)],
        ["karen@example.org", "niels@example.org"]),
    "a-link-and-no-link": (
        [f"Anna Holm,anna@example.org,da,{LINK_A}\n", KAREN, "Mallory,Anna@example.org,da,\n",
         NIELS],
        [conflict(2, "anna@example.org", 4), conflict(4, "Anna@example.org", 2)],
        ["karen@example.org", "niels@example.org"]),
    "three-rows-two-links": (
        [f"Anna Holm,anna@example.org,da,{LINK_A}\n", f"A. Holm,ANNA@example.org,da,{LINK_A}\n",
         KAREN, f"Mallory,Anna@example.org,da,{LINK_B}\n", NIELS],
        [conflict(2, "anna@example.org", 5), duplicate(3, "ANNA@example.org", 2),
         conflict(5, "Anna@example.org", 2)],
        ["karen@example.org", "niels@example.org"]),
    "three-rows-three-links": (
        [f"Anna Holm,anna@example.org,da,{LINK_A}\n", f"Mallory,ANNA@example.org,da,{LINK_B}\n",
         f"Eve,Anna@example.org,da,{LINK_B.replace('mallory', 'eve')}\n", KAREN, NIELS],
        [conflict(2, "anna@example.org", 3), conflict(3, "ANNA@example.org", 2),
         conflict(4, "Anna@example.org", 2)],
        ["karen@example.org", "niels@example.org"]),
}


@pytest.mark.parametrize(("rows", "problems", "addresses"), CASES.values(), ids=CASES)
def test_rows_that_share_an_address_and_differ_in_the_link_are_an_error_and_neither_is_sent(
        smtp_server: SmtpServer, tmp_path: Path, rows: list[str], problems: list[str],
        addresses: list[str]) -> None:
    event = relay_event(tmp_path / "e", smtp_server, HEADER + "".join(rows))
    errors = sum(1 for p in problems if ": warning: " not in p)

    check = run_cli("check", event)
    refused = send(event)
    assert smtp_server.connections == 0
    sent = send(event, "--skip-invalid")
    status = run_cli("status", event)

    assert check.exit_code == 1
    assert lines(check.stderr, event) == [*problems, f"{errors} problems to fix before sending."]
    assert refused.exit_code == 1
    assert sent.exit_code == 0, sent.output
    assert lines(sent.stderr, event) == problems
    assert recipients(smtp_server) == addresses  # nobody named Anna gets anything
    duplicates = len(problems) - errors
    counted = ", ".join([f"{len(addresses)} registrants",
                         *([f"{duplicates} duplicate"] if duplicates else []),
                         f"{errors} with problems (never sent)"])
    assert lines(status.stdout, event) == [
        f"{{event}}: template 'invitation', {len(addresses)} registrants: {len(addresses)} sent",
        f"{CSV}: {len(rows)} rows read: {counted}"]


# (rows 2.., the warning, who gets which name and link)
SAME_LINK = {
    "same-link-different-names": (
        [f"Anna Holm,anna@example.org,da,{LINK_A}\n", KAREN,
         f"Mallory,Anna@EXAMPLE.org,da,{LINK_A}\n"],
        duplicate(4, "Anna@example.org", 2),
        {"Anna Holm": LINK_A, "Karen Blixen": LINK_A.replace("anna-real", "karen")}),
    "no-links-different-names": (
        ["Anna Holm,anna@example.org,da,\n", KAREN, "Mallory,ANNA@example.org,da,\n"],
        duplicate(4, "ANNA@example.org", 2),
        {"Anna Holm": "https://zoom.us/j/84212345678?pwd=abc123",
         "Karen Blixen": LINK_A.replace("anna-real", "karen")}),
}


@pytest.mark.parametrize(("rows", "warning", "links"), SAME_LINK.values(), ids=SAME_LINK)
def test_rows_that_differ_only_in_the_name_are_a_warning_and_the_first_wins(
        smtp_server: SmtpServer, tmp_path: Path, rows: list[str], warning: str,
        links: dict[str, str]) -> None:
    event = relay_event(tmp_path / "e", smtp_server, HEADER + "".join(rows))

    check = run_cli("check", event)
    sent = send(event)

    assert check.exit_code == 0, check.output
    assert lines(check.stderr, event) == [warning]
    assert "3 rows read: 2 registrants, 1 duplicate" in check.stdout
    assert sent.exit_code == 0, sent.output
    assert join_links(smtp_server) == links


def test_a_test_send_skips_an_address_whose_rows_disagree(smtp_server: SmtpServer,
                                                          tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server, HEADER + "".join([
        f"Mallory,anna@example.org,da,{LINK_B}\n", KAREN,
        f"Anna Holm,ANNA@example.org,da,{LINK_A}\n"]))

    sent = send(event, "--test-to", "coordinator@example.org", "--skip-invalid")

    assert sent.exit_code == 0, sent.output
    assert recipients(smtp_server) == ["coordinator@example.org"]
    assert join_links(smtp_server) == {"Karen Blixen": LINK_A.replace("anna-real", "karen")}


def test_a_rerun_after_skipping_a_conflict_sends_nothing_more(smtp_server: SmtpServer,
                                                              tmp_path: Path) -> None:
    event = relay_event(tmp_path / "e", smtp_server, HEADER + "".join([
        f"Mallory,anna@example.org,da,{LINK_B}\n", KAREN,
        f"Anna Holm,ANNA@example.org,da,{LINK_A}\n", NIELS]))

    first = send(event, "--skip-invalid")
    again = send(event, "--skip-invalid")

    assert first.exit_code == 0 and again.exit_code == 0, again.output
    assert "Sent 0 messages" in again.stdout and "Skipped 2: already sent." in again.stdout
    assert recipients(smtp_server) == ["karen@example.org", "niels@example.org"]
