"""A valid event folder on disk: event.toml with every key product.md lists, and registrants.csv.

Test files import these as ``from support.event import ...`` (see support/__init__.py).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

from support.relay import SmtpServer

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


def rows(count: int, *, start: int = 0) -> list[tuple[str, str, str]]:
    """``count`` registrants user{start}@example.org, ...: Danish names with æ and ø, every
    third one in English."""
    return [(f"Deltager Ærø {i}", f"user{i}@example.org", "da" if i % 3 else "en")
            for i in range(start, start + count)]


def event_for(server: SmtpServer, folder: Path, registrants: Iterable[tuple[str, ...]] = (),
              *, sending: str = "", smtp: dict[str, str] | None = None) -> Path:
    """An event folder whose [smtp] points at ``server``."""
    settings = {"host": '"127.0.0.1"', "port": str(server.port),
                "security": f'"{server.tls}"', "timeout": "5"}
    if server.auth:
        settings["username"] = f'"{server.auth[0]}"'
    if server.tls == "none" and server.auth:
        settings["allow_insecure_auth"] = "true"
    if server.ca_file is not None:
        settings["ca_file"] = f'"{server.ca_file}"'
    settings.update(smtp or {})
    toml = EVENT_TOML.split("[smtp]")[0] + "[smtp]\n" + "".join(
        f"{k} = {v}\n" for k, v in settings.items())
    toml += "\n[sending]\n" + (sending or "concurrency = 4\nmax_attempts = 5\n")
    return write_event(folder, list(registrants) or rows(5), toml=toml)


def set_key(folder: Path, old: str, new: str) -> None:
    toml = (folder / "event.toml").read_text(encoding="utf-8")
    assert old in toml
    (folder / "event.toml").write_text(toml.replace(old, new), encoding="utf-8")
