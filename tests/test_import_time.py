"""What ``invitemail send`` imports before it sends: the libraries a run may never need are
imported where they are used, so nobody puts an eager import back by accident.

- rich draws the bar on a terminal; a send whose output goes to a pipe or a log writes
  plain lines and never needs any of it (rich.progress is not imported with the send path
  either).
- difflib suggests a name for a misspelt section or key; a good event.toml never needs it.
- invitemail.send.status (with the due and report modules it loads) words the rows line for a
  list with invalid rows and the status command; a send of a good list never needs it.
- icalendar writes the calendar part: a send with nothing left to send (everyone already has
  the message) checks every registrant's message but builds none, and never needs it.

(email-validator and babel are imported at first use too, but the check before the first
message needs them on every run, so they are not held to it here.)

Each test runs a real process and reads the modules it imported from ``python -X
importtime`` (every module, in the order imported).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.event import event_for, rows
from support.relay import SmtpServer

# What the send command's process imports before it starts sending.
SEND_PATH = ("invitemail.cli", "invitemail.cli.send", "invitemail.send.plan", "invitemail.campaign",
             "invitemail.send.transport", "invitemail.outputs.progress",
             "invitemail.send.pipeline", "invitemail.send.smtp_adapter")

# Imported where they are used, never with the send path's modules.
NOT_ON_IMPORT = ("rich.progress", "difflib")
# Imported by a send only for a list with invalid rows.
STATUS = ("invitemail.send.status", "invitemail.send.due")
# Imported for the first calendar built, never before.
CALENDAR = ("icalendar",)


def imported(args: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime ARGS``: the finished process and every module it imported."""
    env = {key: value for key, value in os.environ.items()  # rich's "it is a terminal"
           if key not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["PYTHONIOENCODING"] = "utf-8"
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    names = {match.group(1) for match in
             re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", done.stderr, re.MULTILINE)}
    assert "invitemail" in names, done.stderr[-2000:]  # the probe itself works
    return done, names


def below(names: set[str], packages: tuple[str, ...]) -> list[str]:
    """The names in ``names`` that are one of ``packages`` or inside one."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_importing_the_send_path_leaves_the_lazy_libraries_out() -> None:
    done, names = imported(["-c", "import " + ", ".join(SEND_PATH)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(SEND_PATH) <= names
    assert below(names, NOT_ON_IMPORT + CALENDAR) == []


@pytest.mark.parametrize("count", [1, 7])
def test_a_send_to_a_pipe_never_imports_the_progress_bar_or_the_suggestions(
        smtp_server: SmtpServer, tmp_path: Path, count: int) -> None:
    folder = event_for(smtp_server, tmp_path / "event", rows(count))
    done, names = imported(["-m", "invitemail", "send", str(folder), "--yes"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(smtp_server.transactions) == count  # it did send: the imports ran their course
    assert "icalendar" in names  # the invitations needed it: the probe sees a late import
    assert below(names, NOT_ON_IMPORT + STATUS + ("rich",)) == []


def test_a_send_with_an_invalid_row_imports_the_rows_line_and_says_it(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    invalid = ("Ingen Adresse", "not an address", "da")
    folder = event_for(smtp_server, tmp_path / "event", [*rows(3), invalid])
    done, names = imported(["-m", "invitemail", "send", str(folder), "--yes", "--skip-invalid"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(smtp_server.transactions) == 3
    assert "invitemail.send.status" in names
    assert "4 rows read: 3 registrants, 1 with a problem (never sent)" in done.stdout


def test_a_send_with_nothing_left_to_send_builds_no_message_and_imports_no_calendar(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "event", rows(4, start=20))
    first, _ = imported(["-m", "invitemail", "send", str(folder), "--yes"])
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(smtp_server.transactions) == 4
    again, names = imported(["-m", "invitemail", "send", str(folder), "--yes"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(smtp_server.transactions) == 4  # nobody mailed twice
    assert below(names, CALENDAR + NOT_ON_IMPORT) == []
