"""Issue 2's bad inputs, end to end through the CLI: a short error naming the file and line (or
the key), exit code 1, nothing sent and no traceback. Plus init, --help and preview.

The event's [smtp] points at a real SMTP server on loopback, so "nothing sent" is checked
where it matters: the server saw no connection at all.
"""

from __future__ import annotations

import email
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest

from invitemail.cli import main
from invitemail.outputs.placeholders import PLACEHOLDERS
from support.cli import Run, run_cli
from support.event import EventBuilder, Raw, edit_event, event_line, set_key
from support.relay import SmtpServer

CHECK = ("check",)
DRY_RUN = ("send", "--dry-run", "--yes")
SEND = ("send", "--yes")


@pytest.fixture
def event(tmp_path: Path, smtp_server: SmtpServer) -> Path:
    """A valid event folder (a da and an en registrant) whose relay is ``smtp_server``."""
    return EventBuilder().plain_relay(smtp_server.port).write(tmp_path / "webinar").folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def assert_clean_failure(run: Run, *messages: str) -> None:
    """Exit 1, each message on stderr, no traceback."""
    assert run.exit_code == 1, run.output
    for message in messages:
        assert message in run.stderr
    assert "Traceback" not in run.output


# -- issue 2's bad inputs ---------------------------------------------------------------------

Spoil = Callable[[Path], None]


def no_event_toml(event: Path) -> None:
    (event / "event.toml").unlink()


def misspelt_key(event: Path) -> None:
    with edit_event(event) as toml:
        toml.rename("meeting", "password", "pasword")


def bad_time_zone(event: Path) -> None:
    set_key(event, "event", "timezone", "Europe/Copenhagn")


def invalid_date(event: Path) -> None:
    set_key(event, "event", "start", "2030-13-45")


def no_email_column(event: Path) -> None:
    (event / "registrants.csv").write_text("Navn;Telefon\nSøren;33 95 97 00\n", encoding="utf-8")


def invalid_address(event: Path) -> None:
    edit(event / "registrants.csv", "soren@example.org", "soren(at)example.org")


def line_break_in_name(event: Path) -> None:
    edit(event / "registrants.csv", "Karen Blixen", '"Karen\nBlixen"')


def undefined_template_variable(event: Path) -> None:
    override = event / "templates" / "da" / "invitation.subject.txt"
    override.parent.mkdir(parents=True)
    override.write_text("Invitation til {{ registrant.nosuch }}\n", encoding="utf-8")


def too_few_and_too_many_cells(event: Path) -> None:
    (event / "registrants.csv").write_text(
        "Navn;E-mail;Sprog\nSøren;soren@example.org\nKaren;karen@example.org;en;x\n",
        encoding="utf-8")


def empty_registrants(event: Path) -> None:
    (event / "registrants.csv").write_bytes(b"")


def at(section: str, key: str) -> str:
    """Where stderr names ``section.key`` of the event's event.toml ({event} is the folder)."""
    return f"{{event}}/event.toml:{event_line(section, key)}"


# Each case: how to spoil the event, and what stderr must say ({event} is the folder).
BAD_INPUTS = [
    pytest.param(no_event_toml, ["Error: {event}/event.toml: not found"], id="no-event-toml"),
    pytest.param(misspelt_key, [f"Error: {at('meeting', 'password')}: meeting.pasword: unknown key",
                                "Hint: did you mean 'password'?"], id="misspelt-key"),
    pytest.param(bad_time_zone, [f"Error: {at('event', 'timezone')}: event.timezone: "
                                 "'Europe/Copenhagn' is not a known time zone"],
                 id="bad-time-zone"),
    pytest.param(invalid_date, [f"Error: {at('event', 'start')}: event.start: '2030-13-45' is not "
                                "a date and time"], id="invalid-date"),
    pytest.param(no_email_column, ["Error: {event}/registrants.csv:1: has no email column (the "
                                   "header has 'Navn', 'Telefon')"], id="no-email-column"),
    pytest.param(invalid_address, ["{event}/registrants.csv:2: 'soren(at)example.org' is not a "
                                   "valid address: An email address must have an @-sign."],
                 id="invalid-address"),
    pytest.param(line_break_in_name, ["{event}/registrants.csv:3: the name contains a line "
                                      "break; it would reach the To: header"],
                 id="line-break-in-name"),
    pytest.param(undefined_template_variable, [
        "Error: {event}/templates/da/invitation.subject.txt:1: ", "nosuch",
        " (rendering for {event}/registrants.csv:2)"], id="undefined-template-variable"),
    pytest.param(too_few_and_too_many_cells, [
        "{event}/registrants.csv:2: has 2 cells, the header has 3: too few",
        "{event}/registrants.csv:3: has 4 cells, the header has 3: too many"],
        id="too-few-and-too-many-cells"),
    pytest.param(empty_registrants, ["Error: {event}/registrants.csv: is empty"],
                 id="empty-registrants"),
]


@pytest.mark.parametrize("command", [CHECK, DRY_RUN, SEND], ids=" ".join)
@pytest.mark.parametrize(("spoil", "messages"), BAD_INPUTS)
def test_cli_bad_input_is_a_short_error_and_nothing_is_sent(
    event: Path, smtp_server: SmtpServer, command: tuple[str, ...], spoil: Spoil,
    messages: list[str],
) -> None:
    spoil(event)

    run = run_cli(*command, event)

    assert_clean_failure(run, *(m.replace("{event}", str(event)) for m in messages))
    assert smtp_server.connections == 0
    assert not (event / ".invitemail").exists()


def test_cli_send_valid_event_reaches_the_server(event: Path, smtp_server: SmtpServer) -> None:
    # The control for the test above: the same folder, unspoilt, does send.
    run = run_cli(*SEND, event)

    assert run.exit_code == 0, run.output
    assert dict(smtp_server.received()) == {"soren@example.org": 1, "karen@example.org": 1}


def test_cli_send_reports_each_bad_row_once(event: Path) -> None:
    invalid_address(event)

    run = run_cli(*DRY_RUN, event)

    assert run.stderr.count("registrants.csv:2: 'soren(at)example.org'") == 1


def test_cli_check_reads_a_cp1252_file(event: Path) -> None:
    (event / "registrants.csv").write_bytes(
        "Navn;E-mail;Sprog\r\nSøren Ærø Åse;soren@example.org;da\r\n".encode("cp1252"))

    check = run_cli(*CHECK, event)
    preview = run_cli("preview", event)

    assert check.exit_code == 0, check.output
    assert check.stdout == (f"{event}/registrants.csv: 1 registrant (languages: da); "
                            "1 invitation message built\n1 row read: 1 registrant\n"
                            "No problems found. Nothing was sent.\n")
    assert "To: Søren Ærø Åse <soren@example.org>\n" in preview.stdout


@pytest.mark.parametrize("command", [CHECK, DRY_RUN], ids=" ".join)
def test_cli_join_link_that_is_not_https_is_a_warning(
    event: Path, smtp_server: SmtpServer, command: tuple[str, ...],
) -> None:
    set_key(event, "meeting", "join_url", "http://zoom.us/j/84212345678?pwd=abc123")

    run = run_cli(*command, event)

    assert run.exit_code == 0, run.output
    assert run.stderr == (f"{event}/event.toml:{event_line('meeting', 'join_url')}: warning: "
                          "meeting.join_url: "
                          "http://zoom.us/j/84212345678?pwd=abc123 is not https; registrants' "
                          "browsers may warn\n")
    assert smtp_server.connections == 0


def test_cli_personal_join_link_that_is_not_https_is_a_warning(event: Path) -> None:
    (event / "registrants.csv").write_text(
        "Navn,E-mail,Join URL\nSøren,soren@example.org,http://zoom.us/w/1?tk=a\n",
        encoding="utf-8")

    run = run_cli(*CHECK, event)

    assert run.exit_code == 0, run.output
    assert run.stderr == (f"{event}/registrants.csv:2: warning: join link "
                          "http://zoom.us/w/1?tk=a is not https\n")


def test_cli_check_duplicate_address_is_a_warning(event: Path) -> None:
    edit(event / "registrants.csv", "karen@example.org", "Soren@Example.org")

    run = run_cli(*CHECK, event)

    assert run.exit_code == 0, run.output
    assert run.stderr == (f"{event}/registrants.csv:3: warning: Soren@example.org is a "
                          "duplicate of line 2; it gets one message\n")
    assert run.stdout.startswith(f"{event}/registrants.csv: 1 registrant (languages: da), "
                                 "1 duplicate skipped; 1 invitation message built\n")


# -- init -----------------------------------------------------------------------------------


def test_init_then_check_passes_once_the_placeholders_are_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "webinar"

    init = run_cli("init", folder)
    own = {"title": "Persondata", "description": "Om persondata.", "id": "987 6543 2100",
           "password": "hemmeligt", "join_url": "https://zoom.us/j/98765432100",
           "web_join_url": "https://zoom.us/wc/join/98765432100",
           "from": "Djøf <arrangementer@example.org>"}
    with edit_event(folder) as toml:
        for placeholder in PLACEHOLDERS:
            toml.set(placeholder.section, placeholder.key, own[placeholder.key])
        start = toml.value("event", "start")  # init's date at 14:00: the same day at 15:00
        toml.set("event", "start", Raw(start.replace("T14:00:00", "T15:00:00")))
    check = run_cli("check", folder)

    assert init.exit_code == 0, init.output
    assert sorted(p.name for p in folder.iterdir()) == ["event.toml", "registrants.csv"]
    assert check.exit_code == 0, check.output
    assert check.stdout.endswith("No problems found. Nothing was sent.\n")
    assert check.stderr == ""


def test_init_refuses_to_overwrite_and_leaves_the_files_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "webinar"
    run_cli("init", folder)
    set_key(folder, "event", "title", "Mit eget webinar")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    again = run_cli("init", folder)

    assert_clean_failure(again)
    assert again.stderr == (
        f"Error: {folder / 'event.toml'}, {folder / 'registrants.csv'}: already exists; init "
        "never overwrites\nHint: choose a new folder, or move the existing files away\n")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# -- help and preview -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(main.commands))],
                         ids=lambda c: " ".join(c) or "invitemail")
def test_cli_help_of_each_command(command: list[str]) -> None:
    run = run_cli(*command, "--help")

    assert run.exit_code == 0, run.output
    assert run.stdout.startswith("Usage: ")
    assert run.stderr == ""


def test_preview_prints_the_headers_and_the_password(event: Path) -> None:
    run = run_cli("preview", event)

    assert run.exit_code == 0, run.output
    lines = run.stdout.splitlines()
    assert "From: Djøf Arrangementer <arrangementer@example.org>" in lines
    assert "To: Søren Kierkegaard <soren@example.org>" in lines
    assert any(line.startswith("Subject: Invitation: Persondata i praksis") for line in lines)
    assert "Kx7pQ9" in run.stdout
    assert "karen@example.org" not in run.stdout  # one message unless asked for more


def test_preview_out_writes_one_eml_per_unique_registrant(event: Path, tmp_path: Path) -> None:
    with (event / "registrants.csv").open("a", encoding="utf-8") as file:
        file.write("Søren K.,SOREN@example.org,da\nNiels Bohr,niels@example.org,en\n")
    out = tmp_path / "preview"

    run = run_cli("preview", event, "--out", out)

    assert run.exit_code == 0, run.output
    assert run.stdout.endswith(f"wrote 3 messages to {out}\n")
    recipients = []
    for path in sorted(out.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        recipients.append(str(message["To"]))
    assert recipients == ["Søren Kierkegaard <soren@example.org>",
                          "Karen Blixen <karen@example.org>",
                          "Niels Bohr <niels@example.org>"]
