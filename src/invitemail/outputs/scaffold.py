"""`invitemail init`: a ready event folder to edit, never overwriting anything.

Nothing is written when any file it would write exists already, and a link at one of those
names counts as existing (a dangling one too); each file is also linked into place only if
its name is still free (files.py). event.toml (the meeting password) and registrants.csv
(personal data) are 0600 whatever the umask; the copied templates at most 0644; the folders
it creates 0700. The event folder, or a folder below it, being a link is refused.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from invitemail.errors import InvitemailError
from invitemail.inputs.config import EVENT_FILE, REGISTRANTS_FILE
from invitemail.outputs.files import AlreadyExists, OutputFolder, refuse_linked_folders
from invitemail.outputs.placeholders import init_start, init_uid, value
from invitemail.render.renderer import builtin_template_dir

EVENT_TOML = """\
# The event: everything invitemail needs besides the registrant list.
# Times are local to `timezone`. The SMTP password is never written here: invitemail reads it
# from the environment variable INVITEMAIL_SMTP_PASSWORD, or asks for it.

[event]
title = "{title}"
description = "{description}"  # optional
start = {start}           # local time in `timezone`
duration = 60                              # minutes
timezone = "Europe/Copenhagen"             # IANA name
language = "da"                            # default language: "da" or "en"
uid = "{uid}"   # calendar identity: kept once sent
sequence = 0                               # raise it when the time or link changes

[meeting]
platform = "Zoom"
id = "{meeting_id}"
password = "{password}"
join_url = "{join_url}"
web_join_url = "{web_join_url}"    # optional: join in a browser
waiting_room = true
recorded = false

[sender]
from = "{sender}"
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
    start = init_start(now)
    files: dict[Path, str] = {
        folder / EVENT_FILE: EVENT_TOML.format(
            start=start.strftime("%Y-%m-%dT%H:%M:%S"),
            uid=init_uid(start.date(), secrets.token_hex(4)),
            title=value("event", "title"), description=value("event", "description"),
            meeting_id=value("meeting", "id"), password=value("meeting", "password"),
            join_url=value("meeting", "join_url"),
            web_join_url=value("meeting", "web_join_url"),
            sender=value("sender", "from")),
        folder / REGISTRANTS_FILE: REGISTRANTS_CSV,
    }
    copies: dict[Path, Path] = {}
    if templates:
        source = builtin_template_dir()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                copies[folder / "templates" / path.relative_to(source)] = path
    # The folder and every folder below it that the files go to: none may be a link.
    refuse_linked_folders(sorted({folder, *(
        folder / inner for target in copies for inner in target.relative_to(folder).parents)}))
    # lexists: a link at a name is in the way even when it points nowhere.
    existing = [p for p in [*files, *copies] if os.path.lexists(p)]
    if existing:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise InvitemailError(f"{shown}: already exists; init never overwrites",
                              hint="choose a new folder, or move the existing files away")
    written: list[Path] = []
    with OutputFolder.create(folder) as out:
        for path, text in files.items():
            written.append(_create(out, path, text.encode("utf-8"), private=True))
        for target, path in copies.items():
            with out.folder(target.parent.relative_to(folder)) as inner:
                written.append(_create(inner, target, path.read_bytes(), private=False))
    return written


def _create(out: OutputFolder, path: Path, data: bytes, *, private: bool) -> Path:
    try:
        return out.write(path.name, data, private=private, replace=False)
    except AlreadyExists:  # it appeared since the check in create_event
        raise InvitemailError(f"{path}: already exists; init never overwrites",
                              hint="choose a new folder, or move the existing files away"
                              ) from None
