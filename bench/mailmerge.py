"""(b) mailmerge 2.3.0: installed once into bench/.cache/, and a job equivalent to
invitemail's (the same people, a template that makes the same kind of message)."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

from common import CACHE, MAILMERGE, BenchError, note
from people import Events


def mailmerge_bin() -> Path:
    """mailmerge 2.3.0 in its own virtual environment under bench/.cache/ (installed once)."""
    venv = CACHE / "mailmerge-2.3.0"
    binary = venv / "bin" / "mailmerge"
    if binary.exists():
        version = subprocess.run([binary, "--version"], capture_output=True, text=True)
        if "2.3.0" in version.stdout + version.stderr:
            return binary
    note(f"installing {MAILMERGE} into {venv} (once)")
    shutil.rmtree(venv, ignore_errors=True)
    CACHE.mkdir(exist_ok=True)
    for command in ([sys.executable, "-m", "venv", venv],
                    [venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                     "--disable-pip-version-check", MAILMERGE]):
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"could not install {MAILMERGE}: {' '.join(map(str, command))}"
                             f"\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return binary

def mailmerge_folder(events: Events, count: int, port: int) -> Path:
    """An equivalent mailmerge job: the same people, and a template that makes the same
    kind of message: To/From/Reply-To/Subject, a text and an HTML part with invitemail's
    own content (the name filled in by mailmerge), and the calendar as an attachment."""
    from email import message_from_bytes, policy

    from invitemail.campaign import Campaign
    from invitemail.inputs.registrants import Registrant

    events.made += 1
    folder = events.work / f"mailmerge-{events.made:02d}-{count}"
    folder.mkdir()
    probe = events.fresh(1, port)
    campaign = Campaign.open(probe, now=dt.datetime.now(dt.UTC))
    shutil.rmtree(probe)
    sender = campaign.config.sender
    sentinel = "Zzname Placeholder"
    parts: dict[str, dict[str, str]] = {}
    subjects: dict[str, str] = {}
    calendar = b""
    for language in ("da", "en"):
        built = campaign.build(Registrant(
            line=2, email="probe@example.org", name=sentinel, first_name="", last_name="",
            language=language, join_url="", timezone="", fields={}))
        message = message_from_bytes(built.data, policy=policy.default)
        subjects[language] = built.subject
        parts[language] = {}
        for subtype in ("plain", "html"):
            body = message.get_body(preferencelist=(subtype,))
            assert body is not None
            text = body.get_content().replace("\r\n", "\n")
            # Static text is raw for mailmerge's Jinja; only the name is a variable.
            parts[language][subtype] = "{% raw %}" + text.replace(
                sentinel, "{% endraw %}{{name}}{% raw %}") + "{% endraw %}"
        payload = next(p for p in message.walk()
                       if p.get_content_type() == "text/calendar").get_payload(decode=True)
        assert isinstance(payload, bytes)
        calendar = payload
    (folder / "invite.ics").write_bytes(calendar)
    reply_to = sender.reply_to.address if sender.reply_to else sender.address

    def by_language(key: str) -> str:
        return (f'{{% if language == "da" %}}{parts["da"][key]}{{% else %}}'
                f"{parts['en'][key]}{{% endif %}}")

    template = f"""\
TO: "{{{{name}}}}" <{{{{email}}}}>
FROM: {sender.name} <{sender.address}>
REPLY-TO: {reply_to}
SUBJECT: {{% if language == "da" %}}{subjects["da"]}{{% else %}}{subjects["en"]}{{% endif %}}
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alternative"
ATTACHMENT: invite.ics

--alternative
Content-Type: text/plain; charset=utf-8

{by_language("plain")}
--alternative
Content-Type: text/html; charset=utf-8

{by_language("html")}
--alternative--
"""
    (folder / "mailmerge_template.txt").write_text(template, encoding="utf-8")
    with (folder / "mailmerge_database.csv").open("w", encoding="utf-8",
                                                  newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("email", "name", "language", "organisation"))
        writer.writerows((p.email, p.name, p.language, p.organisation)
                         for p in events.people[:count])
    # mailmerge 2.3.0's server configuration: no `security` key means a plain SMTP
    # connection without login; ratelimit 0 is unlimited.
    (folder / "mailmerge_server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n",
        encoding="utf-8")
    return folder
