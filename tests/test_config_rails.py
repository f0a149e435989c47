"""A coordinator's safety rails in event.toml: every problem in one `check`, init's
placeholders refused at `check` and `send`, init's uid following the date until the first
message is sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from invitemail.outputs.placeholders import PLACEHOLDERS, Placeholder
from support.cli import run_cli
from support.event import EVENT_TOML, write_event
from support.mail import vevent_of
from support.relay import SmtpServer


def test_check_reports_every_event_toml_problem_at_once(tmp_path: Path) -> None:
    # As reported: a bad `from` and a bad `reply_to`; the second run used to find the second.
    toml = (EVENT_TOML
            .replace('from = "Djøf Arrangementer <arrangementer@example.org>"',
                     'from = "arrangementer(at)example.org"')
            .replace('reply_to = "svar@example.org"', 'reply_to = "svar@"'))
    folder = write_event(tmp_path, toml=toml)
    run = run_cli("check", folder)
    assert run.exit_code == 1, run.output
    path = folder / "event.toml"
    bad_from = line_of(toml, 'from = "arrangementer(at)example.org"')
    bad_reply_to = line_of(toml, 'reply_to = "svar@"')
    assert (f"{path}:{bad_from}: sender.from: 'arrangementer(at)example.org' is not a valid "
            "address") in run.stderr
    assert f"{path}:{bad_reply_to}: sender.reply_to: 'svar@' is not a valid address" \
        in run.stderr
    assert "2 problems found." in run.stderr
    assert "Traceback" not in run.output


# Several problems across sections and kinds, each with its own line and the wording a
# single problem has.
PROBLEMS = [
    ('duration = 60', 'duration = 0', "event.duration: must be from 1 to 1440, not 0"),
    ('timezone = "Europe/Copenhagen"', 'timezone = "Europe/Kobenhavn"',
     "event.timezone: 'Europe/Kobenhavn' is not a known time zone"),
    ('language = "da"', 'language = "de"', "event.language: 'de' is not supported"),
    ('password = "Kx7pQ9"', 'pasword = "Kx7pQ9"', "meeting.pasword: unknown key"),
    ('waiting_room = true', 'waiting_room = "yes"',
     "meeting.waiting_room: must be true or false, not text 'yes'"),
    ('email = "kontakt@example.org"', 'email = "kontakt"',
     "support.email: 'kontakt' is not a valid address"),
    ('port = 2525', 'port = 70000', "smtp.port: must be from 1 to 65535, not 70000"),
    ('rate = "10/s"', 'rate = "fast"', "sending.rate: 'fast' is not a rate"),
]


def line_of(toml: str, text: str) -> int:
    return next(number for number, line in enumerate(toml.splitlines(), start=1)
                if line.startswith(text))


@pytest.mark.parametrize("count", [2, 3, len(PROBLEMS)])
def test_check_lists_each_problem_in_file_order(tmp_path: Path, count: int) -> None:
    chosen = PROBLEMS[-count:]
    toml = EVENT_TOML
    for old, new, _ in chosen:
        assert old in toml
        toml = toml.replace(old, new)
    folder = write_event(tmp_path, toml=toml)
    run = run_cli("check", folder)
    assert run.exit_code == 1, run.output
    path = folder / "event.toml"
    lines = [line.removeprefix("Error: ") for line in run.stderr.splitlines()]
    found = [next(i for i, line in enumerate(lines)
                  if line.startswith(f"{path}:{line_of(toml, new)}: {expected}"))
             for _, new, expected in chosen]
    assert found == sorted(found)
    assert f"{count} problems found." in run.stderr
    # The misspelt key is one problem (with its suggestion), not also "password is missing".
    assert "meeting.password: is missing" not in run.stderr


# -- init's placeholders ----------------------------------------------------------------------


def to_relay(folder: Path, server: SmtpServer) -> None:
    """Point a folder from init at ``server`` (plaintext, no login), as a coordinator would."""
    path = folder / "event.toml"
    toml = path.read_text(encoding="utf-8")
    toml = (toml.replace('host = "smtp.example.org"', 'host = "127.0.0.1"')
            .replace("port = 587", f"port = {server.port}")
            .replace('security = "starttls"', 'security = "none"', 1))
    toml = re.sub(r"^username = .*\n", "", toml, flags=re.M)
    path.write_text(toml, encoding="utf-8")


def test_a_folder_straight_from_init_does_not_pass_check_nor_send(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    folder = tmp_path / "webinar"
    assert run_cli("init", folder).exit_code == 0
    to_relay(folder, smtp_server)
    toml = (folder / "event.toml").read_text(encoding="utf-8")
    path = folder / "event.toml"

    check = run_cli("check", folder)

    assert check.exit_code == 1, check.output
    assert "No problems found" not in check.output
    for placeholder in PLACEHOLDERS:
        line = next(number for number, text in enumerate(toml.splitlines(), start=1)
                    if text.startswith(f"{placeholder.key} = "))
        assert f"{path}:{line}: [{placeholder.section}] {placeholder.key} is still init's " \
            in check.stderr
    title = line_of(toml, "title = ")
    assert (f"{path}:{title}: [event] title is still init's placeholder 'Mit webinar': write "
            "your event's title") in check.stderr
    start = re.search(r"^start = (\S+)", toml, flags=re.M)
    assert start is not None
    assert f": [event] start is still init's placeholder date {start.group(1)[:10]} 14:00" \
        in check.stderr
    assert "skift-mig" not in check.output  # the password is never repeated

    for options in ([], ["--skip-invalid"]):
        send = run_cli("send", folder, "--yes", *options)
        assert send.exit_code == 1, send.output
        assert "[event] title is still init's placeholder" in send.stderr
    assert smtp_server.transactions == []


@pytest.mark.parametrize("placeholder", PLACEHOLDERS, ids=lambda p: f"{p.section}.{p.key}")
def test_each_placeholder_left_alone_is_a_problem_naming_its_key(
        tmp_path: Path, placeholder: Placeholder) -> None:
    toml, count = re.subn(rf'^{placeholder.key} = "[^"]*"',
                          f'{placeholder.key} = "{placeholder.value}"', EVENT_TOML,
                          flags=re.M)
    assert count == 1
    folder = write_event(tmp_path, toml=toml)

    check = run_cli("check", folder)

    assert check.exit_code == 1, check.output
    line = line_of(toml, f"{placeholder.key} = ")
    shown = ("example password" if placeholder.secret
             else f"placeholder {placeholder.value!r}")
    assert (f"{folder / 'event.toml'}:{line}: [{placeholder.section}] {placeholder.key} is "
            f"still init's {shown}: {placeholder.todo}\n") in check.stderr
    assert "1 problem to fix before sending." in check.stderr
    if placeholder.secret:
        assert placeholder.value not in check.output


@pytest.mark.parametrize(("start", "uid", "left"), [
    ("2030-12-10T14:00:00", "webinar-2030-12-10-0123abcd@example.org", True),
    ("2031-02-28T14:00:00", "webinar-2031-02-28-ffffffff@example.org", True),
    ("2030-12-10T15:00:00", "webinar-2030-12-10-0123abcd@example.org", False),  # time set
    ("2030-12-10T14:00:00", "webinar-2030-12-10@example.org", False),  # uid of one's own
    ("2030-12-10T14:00:00", "persondata-2030-12-10@example.org", False),
])
def test_init_default_date_is_a_problem_while_uid_has_inits_form(
        tmp_path: Path, start: str, uid: str, left: bool) -> None:
    toml = (EVENT_TOML.replace("start = 2030-12-10T14:00:00", f"start = {start}")
            .replace('uid = "persondata-2030-12-10@example.org"', f'uid = "{uid}"'))
    folder = write_event(tmp_path, toml=toml)

    check = run_cli("check", folder)

    message = (f"{folder / 'event.toml'}:{line_of(toml, 'start = ')}: [event] start is still "
               f"init's placeholder date {start[:10]} 14:00: write your event's date and time")
    assert (message in check.stderr) == left, check.output
    assert check.exit_code == (1 if left else 0), check.output


# -- init's uid follows the date until the first message is sent -----------------------------

OWN = {"title": "Persondata", "description": "Om persondata.", "id": "987 6543 2100",
       "password": "hemmeligt", "join_url": "https://zoom.us/j/98765432100",
       "web_join_url": "https://zoom.us/wc/join/98765432100",
       "from": "Djøf <arrangementer@example.org>"}


def init_filled_in(folder: Path, server: SmtpServer, start: str) -> str:
    """A folder from init with every placeholder replaced and ``start`` set; its uid."""
    assert run_cli("init", folder).exit_code == 0
    to_relay(folder, server)
    path = folder / "event.toml"
    toml = path.read_text(encoding="utf-8")
    for placeholder in PLACEHOLDERS:
        toml = toml.replace(f'{placeholder.key} = "{placeholder.value}"',
                            f'{placeholder.key} = "{OWN[placeholder.key]}"')
    toml = re.sub(r"^start = \S+", f"start = {start}", toml, flags=re.M)
    path.write_text(toml, encoding="utf-8")
    uid = re.search(r'^uid = "(webinar-\d{4}-\d\d-\d\d-[0-9a-f]{8}@example\.org)"', toml,
                    flags=re.M)
    assert uid is not None
    return uid.group(1)


def set_start(folder: Path, start: str) -> None:
    path = folder / "event.toml"
    toml = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"^start = \S+", f"start = {start}", toml, flags=re.M),
                    encoding="utf-8")


def uids_received(server: SmtpServer) -> set[str]:
    """The event's uid in every message received (each registrant's UID is a key, "-", and
    the event's uid)."""
    return {str(vevent_of(t.data)[1]["UID"]).split("-", 1)[1] for t in server.transactions}


@pytest.mark.parametrize("start", ["2030-12-10T15:00:00", "2031-01-01T09:30:00",
                                   "2029-02-28T14:00:00"])
def test_init_uid_follows_a_changed_date_until_the_first_send(
        tmp_path: Path, smtp_server: SmtpServer, start: str) -> None:
    folder = tmp_path / "webinar"
    written = init_filled_in(folder, smtp_server, start)
    followed = re.sub(r"\d{4}-\d\d-\d\d", start[:10], written, count=1)
    assert followed != written
    line = line_of((folder / "event.toml").read_text(encoding="utf-8"), "uid = ")

    check = run_cli("check", folder)

    assert check.exit_code == 0, check.output
    assert (f"{folder / 'event.toml'}:{line}: warning: event.uid: follows the new date: "
            f"{followed} (init wrote it for {written[8:18]})") in check.stderr
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert uids_received(smtp_server) == {followed}

    # Sent: the uid stays, whatever the date does now, and still in the same journal.
    set_start(folder, "2032-06-01T10:00:00")
    (folder / "event.toml").write_text((folder / "event.toml").read_text(encoding="utf-8")
                                       .replace("sequence = 0", "sequence = 1", 1),
                                       encoding="utf-8")
    again = run_cli("check", folder, "--template", "update")
    assert again.exit_code == 0, again.output
    assert f"event.uid: is {followed} as in the messages already begun" in again.stderr
    assert "follows the new date" not in again.stderr
    assert run_cli("send", folder, "--yes", "--template", "update").exit_code == 0
    assert len(smtp_server.transactions) == 4  # the invitation and the update, to two
    assert uids_received(smtp_server) == {followed}
    assert run_cli("status", folder).exit_code == 0


def test_init_uid_on_its_own_date_and_a_uid_of_ones_own_do_not_change(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    folder = tmp_path / "webinar"
    written = init_filled_in(folder, smtp_server, "2030-12-10T15:00:00")
    set_start(folder, f"{written[8:18]}T15:00:00")  # init's date, another time
    check = run_cli("check", folder)
    assert check.exit_code == 0, check.output
    assert "event.uid" not in check.stderr

    own = write_event(tmp_path / "own", toml=EVENT_TOML.replace(
        "start = 2030-12-10T14:00:00", "start = 2031-03-03T14:00:00"))
    check = run_cli("check", own)
    assert check.exit_code == 0, check.output
    assert "event.uid" not in check.stderr
