"""A coordinator's safety rails in event.toml: every problem in one `check`, init's
placeholders refused at `check` and `send`, init's uid following the date until the first
message is sent."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from invitemail.outputs.placeholders import PLACEHOLDERS, Placeholder
from support.cli import run_cli
from support.event import EventBuilder, EventToml, Raw, Value, edit_event, set_key
from support.mail import vevent_of
from support.relay import SmtpServer


def test_check_reports_every_event_toml_problem_at_once(tmp_path: Path) -> None:
    # As reported: a bad `from` and a bad `reply_to`; the second run used to find the second.
    event = (EventBuilder().set("sender", "from", "arrangementer(at)example.org")
             .set("sender", "reply_to", "svar@").write(tmp_path))
    folder = event.folder
    run = run_cli("check", folder)
    assert run.exit_code == 1, run.output
    path = folder / "event.toml"
    bad_from = event.line("sender", "from")
    bad_reply_to = event.line("sender", "reply_to")
    assert (f"{path}:{bad_from}: sender.from: 'arrangementer(at)example.org' is not a valid "
            "address") in run.stderr
    assert f"{path}:{bad_reply_to}: sender.reply_to: 'svar@' is not a valid address" \
        in run.stderr
    assert "2 problems found." in run.stderr
    assert "Traceback" not in run.output


# Several problems across sections and kinds, each with its own line and the wording a
# single problem has.
@dataclass(frozen=True)
class Misspelt:
    """The key written as ``key``, its value kept."""

    key: str


PROBLEMS: list[tuple[str, str, Value | Misspelt, str]] = [
    ("event", "duration", 0, "event.duration: must be from 1 to 1440, not 0"),
    ("event", "timezone", "Europe/Kobenhavn",
     "event.timezone: 'Europe/Kobenhavn' is not a known time zone"),
    ("event", "language", "de", "event.language: 'de' is not supported"),
    ("meeting", "password", Misspelt("pasword"), "meeting.pasword: unknown key"),
    ("meeting", "waiting_room", "yes",
     "meeting.waiting_room: must be true or false, not text 'yes'"),
    ("support", "email", "kontakt", "support.email: 'kontakt' is not a valid address"),
    ("smtp", "port", 70000, "smtp.port: must be from 1 to 65535, not 70000"),
    ("sending", "rate", "fast", "sending.rate: 'fast' is not a rate"),
]


@pytest.mark.parametrize("count", [2, 3, len(PROBLEMS)])
def test_check_lists_each_problem_in_file_order(tmp_path: Path, count: int) -> None:
    chosen = PROBLEMS[-count:]
    builder = EventBuilder()
    written = []  # the key as written, for its line
    for section, key, new, _ in chosen:
        if isinstance(new, Misspelt):
            builder.toml.rename(section, key, new.key)
            written.append((section, new.key))
        else:
            builder.set(section, key, new)
            written.append((section, key))
    event = builder.write(tmp_path)
    folder = event.folder
    run = run_cli("check", folder)
    assert run.exit_code == 1, run.output
    path = folder / "event.toml"
    lines = [line.removeprefix("Error: ") for line in run.stderr.splitlines()]
    found = [next(i for i, line in enumerate(lines)
                  if line.startswith(f"{path}:{event.line(section, key)}: {expected}"))
             for (section, key), (_, _, _, expected) in zip(written, chosen, strict=True)]
    assert found == sorted(found)
    assert f"{count} problems found." in run.stderr
    # The misspelt key is one problem (with its suggestion), not also "password is missing".
    assert "meeting.password: is missing" not in run.stderr


# -- init's placeholders ----------------------------------------------------------------------


def to_relay(folder: Path, server: SmtpServer) -> None:
    """Point a folder from init at ``server`` (plaintext, no login), as a coordinator would."""
    with edit_event(folder) as toml:
        toml.set("smtp", "host", "127.0.0.1").set("smtp", "port", server.port)
        toml.set("smtp", "security", "none").drop("smtp", "username")


def test_a_folder_straight_from_init_does_not_pass_check_nor_send(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    folder = tmp_path / "webinar"
    assert run_cli("init", folder).exit_code == 0
    to_relay(folder, smtp_server)
    toml = EventToml.read(folder / "event.toml")
    path = folder / "event.toml"

    check = run_cli("check", folder)

    assert check.exit_code == 1, check.output
    assert "No problems found" not in check.output
    for placeholder in PLACEHOLDERS:
        line = toml.line(placeholder.section, placeholder.key)
        assert f"{path}:{line}: [{placeholder.section}] {placeholder.key} is still init's " \
            in check.stderr
    title = toml.line("event", "title")
    assert (f"{path}:{title}: [event] title is still init's placeholder 'Mit webinar': write "
            "your event's title") in check.stderr
    start = toml.value("event", "start")
    assert f": [event] start is still init's placeholder date {start[:10]} 14:00" \
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
    event = EventBuilder().set(placeholder.section, placeholder.key,
                               placeholder.value).write(tmp_path)
    folder = event.folder

    check = run_cli("check", folder)

    assert check.exit_code == 1, check.output
    line = event.line(placeholder.section, placeholder.key)
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
    event = (EventBuilder().set("event", "start", Raw(start)).set("event", "uid", uid)
             .write(tmp_path))
    folder = event.folder

    check = run_cli("check", folder)

    message = (f"{folder / 'event.toml'}:{event.line('event', 'start')}: [event] start is still "
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
    with edit_event(folder) as toml:
        for placeholder in PLACEHOLDERS:
            toml.set(placeholder.section, placeholder.key, OWN[placeholder.key])
        toml.set("event", "start", Raw(start))
    uid = re.fullmatch(r'"(webinar-\d{4}-\d\d-\d\d-[0-9a-f]{8}@example\.org)"',
                       toml.value("event", "uid"))
    assert uid is not None
    return uid.group(1)


def set_start(folder: Path, start: str) -> None:
    set_key(folder, "event", "start", Raw(start))


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
    line = EventToml.read(folder / "event.toml").line("event", "uid")

    check = run_cli("check", folder)

    assert check.exit_code == 0, check.output
    assert (f"{folder / 'event.toml'}:{line}: warning: event.uid: follows the new date: "
            f"{followed} (init wrote it for {written[8:18]})") in check.stderr
    assert run_cli("send", folder, "--yes").exit_code == 0
    assert uids_received(smtp_server) == {followed}

    # Sent: the uid stays, whatever the date does now, and still in the same journal.
    set_start(folder, "2032-06-01T10:00:00")
    set_key(folder, "event", "sequence", 1)
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

    own = EventBuilder().set("event", "start", dt.datetime(2031, 3, 3, 14, 0)).write(
        tmp_path / "own").folder
    check = run_cli("check", own)
    assert check.exit_code == 0, check.output
    assert "event.uid" not in check.stderr
