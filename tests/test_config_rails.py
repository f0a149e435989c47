"""A coordinator's safety rails in event.toml: every problem in one `check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import EVENT_TOML, run_cli, write_event


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
    return toml.splitlines().index(text) + 1


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
