"""`invitemail init`: a ready event folder to edit, never overwriting anything."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from pathlib import Path

from invitemail.config import EVENT_FILE, REGISTRANTS_FILE
from invitemail.errors import InvitemailError
from invitemail.render import builtin_template_dir

EVENT_TOML = """\
# The event: everything invitemail needs besides the registrant list.
# Times are local to `timezone`. The SMTP password is never written here: invitemail reads it
# from the environment variable INVITEMAIL_SMTP_PASSWORD, or asks for it.

[event]
title = "Mit webinar"
description = "Et webinar om ..."          # optional
start = {start}           # local time in `timezone`
duration = 60                              # minutes
timezone = "Europe/Copenhagen"             # IANA name
language = "da"                            # default language: "da" or "en"
uid = "{uid}"   # calendar identity: keep it
sequence = 0                               # raise it when the time or link changes

[meeting]
platform = "Zoom"
id = "842 1234 5678"
password = "Kx7pQ9"
join_url = "https://zoom.us/j/84212345678?pwd=abc123"
web_join_url = "https://zoom.us/wc/join/84212345678"    # optional: join in a browser
waiting_room = true
recorded = false

[sender]
from = "Arrangementer <arrangementer@example.org>"
reply_to = "arrangementer@example.org"     # optional

[support]
phone = "33 95 97 00"
hours = {{ da = "hverdage kl. 9.00-16.00", en = "weekdays 9:00-16:00" }}
email = "kontakt@example.org"

[privacy]
policy_url = "https://example.org/privatliv/webinarer"

[smtp]
host = "smtp.example.org"
port = 587
security = "starttls"                      # "starttls" | "tls" | "none"
username = "arrangementer@example.org"     # optional
timeout = 30                               # seconds
# ca_file = "private-ca.pem"               # optional: trust this CA for the relay's certificate
allow_insecure_auth = false                # AUTH without TLS only when true

[sending]
concurrency = 4                            # SMTP connections at once
rate = "10/s"                              # optional cap: "N/s", "N/min" or "N/h"
max_attempts = 5                           # per registrant, for temporary failures
max_consecutive_failures = 20              # stop when the relay refuses this many in a row
"""

REGISTRANTS_CSV = """\
Navn,E-mail,Sprog
Karen Blixen,karen.blixen@example.org,da
Niels Bohr,niels.bohr@example.org,en
"""


def create_event(folder: Path, *, templates: bool = False,
                 now: dt.datetime | None = None) -> list[Path]:
    """Write a new event folder; refuse if any file it would write exists already."""
    now = now or dt.datetime.now(dt.UTC)
    start = (now + dt.timedelta(days=14)).replace(hour=14, minute=0, second=0, microsecond=0)
    files: dict[Path, str] = {
        folder / EVENT_FILE: EVENT_TOML.format(
            start=start.strftime("%Y-%m-%dT%H:%M:%S"),
            uid=f"webinar-{start:%Y-%m-%d}-{secrets.token_hex(4)}@example.org"),
        folder / REGISTRANTS_FILE: REGISTRANTS_CSV,
    }
    copies: dict[Path, Path] = {}
    if templates:
        source = builtin_template_dir()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                copies[folder / "templates" / path.relative_to(source)] = path
    existing = [p for p in [*files, *copies] if p.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise InvitemailError(f"{shown}: already exists; init never overwrites",
                              hint="choose a new folder, or move the existing files away")
    if folder.exists() and not folder.is_dir():
        raise InvitemailError(f"{folder}: exists and is not a folder")
    written: list[Path] = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for target, path in copies.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
    return written
