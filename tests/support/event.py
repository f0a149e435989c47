"""Small shared helpers: a valid event folder on disk, and the CLI run in-process.

Test files import these as ``from support.event import ...`` (see support/__init__.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from click.testing import CliRunner

from invitemail.cli import main

# A clock for tests that build messages: the event below is in the future from here, and the
# CLI (which uses the real clock) still sees it in the future for years.
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

# Every key product.md lists. Tests refer to these line numbers in expected messages:
# change a line in place rather than inserting one.
EVENT_TOML = """\
[event]
title = "Persondata i praksis"
description = "Et webinar om persondata."
start = 2030-12-10T14:00:00
duration = 60
timezone = "Europe/Copenhagen"
language = "da"
uid = "persondata-2030-12-10@example.org"
sequence = 0

[meeting]
platform = "Zoom"
id = "842 1234 5678"
password = "Kx7pQ9"
join_url = "https://zoom.us/j/84212345678?pwd=abc123"
web_join_url = "https://zoom.us/wc/join/84212345678"
waiting_room = true
recorded = true

[sender]
from = "Djøf Arrangementer <arrangementer@example.org>"
reply_to = "svar@example.org"

[support]
phone = "33 95 97 00"
hours = { da = "hverdage kl. 9.00-16.00", en = "weekdays 9:00-16:00" }
email = "kontakt@example.org"

[privacy]
policy_url = "https://example.org/privatliv/webinarer"

[smtp]
host = "smtp.example.org"
port = 2525
security = "starttls"
username = "arrangementer@example.org"
timeout = 30
allow_insecure_auth = false

[sending]
concurrency = 4
rate = "10/s"
max_attempts = 5
max_consecutive_failures = 20
"""

HEADER = ("Navn", "E-mail", "Sprog")
ROWS: tuple[tuple[str, ...], ...] = (
    ("Søren Kierkegaard", "soren@example.org", "da"),
    ("Karen Blixen", "karen@example.org", "en"),
)


def write_event(folder: Path, rows: Iterable[Sequence[str]] = ROWS, *,
                header: Sequence[str] = HEADER, toml: str = EVENT_TOML) -> Path:
    """Write event.toml and registrants.csv (UTF-8, ``,``) into ``folder``; return it.

    ``toml`` is the whole event.toml: pass ``EVENT_TOML.replace(old, new)`` to change a key.
    Rows are written with ``csv.writer``, so a value with a comma or a line break is quoted.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "event.toml").write_text(toml, encoding="utf-8")
    with (folder / "registrants.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return folder


class Run(NamedTuple):
    """What a CLI run left behind."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together, for "never a traceback" checks."""
        return self.stdout + self.stderr


def run_cli(*args: str | Path) -> Run:
    """Run ``invitemail ARGS`` in-process, stdout and stderr apart (click 8.2+ keeps them so)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # An exception the CLI let through: show the traceback a user would have seen.
        stderr += "".join(traceback.format_exception(result.exception))
    return Run(result.exit_code, result.stdout, stderr)
