"""Secrets stay secret (issue 7): the SMTP password and the meeting password, set to unique
markers, are searched for in everything every command prints and every file it writes.

- The SMTP password (INVITEMAIL_SMTP_PASSWORD) appears nowhere: not in progress output,
  errors, ``--debug`` tracebacks, the journal (and its -wal/-shm), the report, the .eml files
  or the gallery; not even base64-encoded as AUTH sends it.
- The meeting password appears only in message content: the message ``preview`` prints, the
  .eml files, and the gallery's pages under ``preview --out``. Nowhere else.
- ``.invitemail/`` is created 0700 and the journal 0600.

Every command runs, failing ones included (a relay that refuses the login with 535, a
template that does not render, init over an existing folder), with and without ``--debug``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cli import Run, run_cli
from support.event import EventBuilder
from support.relay import SmtpServer

SMTP_SECRET = "smtp-secret-Qv7Zr2Lx"
MEETING_SECRET = "mtg-secret-J8wPn3Ke"
USER = "arrangementer"
PASSWORD_ENV = "INVITEMAIL_SMTP_PASSWORD"

# The SMTP password as AUTH PLAIN and AUTH LOGIN put it on the wire.
SMTP_FORMS = [SMTP_SECRET.encode(), base64.b64encode(SMTP_SECRET.encode()),
              base64.b64encode(f"\0{USER}\0{SMTP_SECRET}".encode())]


def event_for(folder: Path, server: SmtpServer, *, template: str | None = None) -> Path:
    """A valid event with the meeting password marker, sending through ``server``."""
    # Each folder is an event of its own (one event's folders share its record of what was
    # sent, and `status` would rightly say the others' journals are missing).
    builder = EventBuilder().set("meeting", "password", MEETING_SECRET)
    builder.set("event", "uid", f"{folder.name}@example.org")
    builder.toml.replace_section("smtp", {
        "host": "127.0.0.1", "port": server.port, "security": server.tls, "username": USER,
        "timeout": 5, "ca_file": str(server.ca_file)})
    builder.toml.replace_section("sending", {})
    if template is not None:
        builder.files["templates/da/invitation.txt"] = template
    return builder.write(folder).folder


@dataclass(frozen=True)
class Step:
    label: str
    run: Run
    prints_messages: bool  # preview without --out: the message itself is the output


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Step], set[Path]]]:
    """Every command, run over event folders set up with both markers. Yields the folder,
    the steps, and the files the test itself wrote (everything else the tool wrote)."""
    tmp_path = tmp_path_factory.mktemp("secrets")
    with pytest.MonkeyPatch.context() as monkeypatch, \
            SmtpServer(tls="starttls", auth=(USER, SMTP_SECRET)) as accepting, \
            SmtpServer(tls="starttls", auth=(USER, "another-password")) as refusing:
        monkeypatch.setenv(PASSWORD_ENV, SMTP_SECRET)
        with contextlib.ExitStack() as stack:
            yield run_every_command(tmp_path, accepting, refusing, stack)


def run_every_command(tmp_path: Path, accepting: SmtpServer, refusing: SmtpServer,
                      stack: contextlib.ExitStack) -> tuple[Path, list[Step], set[Path]]:
    good = event_for(tmp_path / "good", accepting)
    refused = event_for(tmp_path / "refused", refusing)
    broken = event_for(tmp_path / "broken", accepting,
                       template="Kære {{ registrant.name }}\n{{ meeting.pasword }}\n")
    ours = set(snapshot(tmp_path))

    steps: list[Step] = []

    def run(*args: str | Path, expect: int, prints_messages: bool = False) -> None:
        # Each command starts with the password in its environment, as a new process does
        # (the CLI takes it out as it starts); the fixture's monkeypatch removes it after.
        os.environ[PASSWORD_ENV] = SMTP_SECRET
        result = run_cli(*args)
        label = " ".join(str(a) for a in args)
        assert result.exit_code == expect, (label, result.output)
        steps.append(Step(label, result, prints_messages))

    for debug in ([], ["--debug"]):
        tag = "debug-" if debug else ""

        run(*debug, "init", tmp_path / f"{tag}new", expect=0)
        run(*debug, "init", tmp_path / f"{tag}new", expect=1)  # refuses to overwrite
        run(*debug, "status", good, expect=0)  # nothing sent yet
        run(*debug, "check", good, expect=0)
        run(*debug, "check", good, "--lint", expect=0)
        run(*debug, "preview", good, "--limit", "2", expect=0, prints_messages=True)
        run(*debug, "preview", good, "--out", tmp_path / f"{tag}gallery", expect=0)
        run(*debug, "preview", good, "--out", tmp_path / f"{tag}gallery", expect=1)  # not empty
        run(*debug, "send", good, "--dry-run", expect=0)
        run(*debug, "send", good, "--yes", "--test-to", "me@example.org", expect=0)
        run(*debug, "send", good, "--yes", expect=0)
        if not debug:
            # A reader that stays open keeps the journal's -wal and -shm files on disk (the
            # last connection to close removes them), so they are searched too.
            keeper = stack.enter_context(contextlib.closing(
                sqlite3.connect(good / ".invitemail" / "journal.sqlite")))
            keeper.execute("SELECT count(*) FROM deliveries").fetchall()
        run(*debug, "status", good, expect=0)
        run(*debug, "status", good, "--report", tmp_path / f"{tag}report.csv", expect=0)
        run(*debug, "send", refused, "--yes", expect=1)  # 535
        run(*debug, "status", refused, "--report", tmp_path / f"{tag}refused.csv", expect=0)
        run(*debug, "check", broken, expect=1)
        run(*debug, "send", broken, "--yes", expect=1)
        run(*debug, "preview", broken, expect=1)
    # Two test copies (with and without --debug), then the two registrants once.
    assert sorted(t.rcpt_tos[0] for t in accepting.transactions) == [
        "karen@example.org", "me@example.org", "me@example.org", "soren@example.org"]
    assert refusing.transactions == []
    return tmp_path, steps, ours


def message_content(path: Path, root: Path) -> bool:
    """A file that is message content: an .eml, or a page of a preview gallery."""
    relative = path.relative_to(root)
    return path.suffix == ".eml" or (relative.parts[0].endswith("gallery")
                                     and path.suffix == ".html")


def test_secrets_never_leave_the_messages(world: tuple[Path, list[Step], set[Path]]) -> None:
    root, steps, ours = world
    for step in steps:
        for form in SMTP_FORMS:
            assert form.decode() not in step.run.output, step.label
        assert MEETING_SECRET not in step.run.stderr, step.label
        if not step.prints_messages:
            assert MEETING_SECRET not in step.run.stdout, step.label
    # The markers are where they should be, so the searches below can find them.
    assert any(MEETING_SECRET in step.run.stdout for step in steps if step.prints_messages)

    written = {path: data for path, data in snapshot(root).items() if path not in ours}
    kinds = {path.suffix for path in written} | {path.name[-4:] for path in written}
    assert {".eml", ".html", ".csv", ".sqlite", ".toml", "-wal", "-shm"} <= kinds, kinds
    for path, data in written.items():
        for form in SMTP_FORMS:
            assert form not in data, path
        if not message_content(path, root):
            assert MEETING_SECRET.encode() not in data, path
    assert any(MEETING_SECRET.encode() in data for path, data in written.items()
               if path.suffix == ".eml")


def test_journal_folder_and_files_are_private(
        world: tuple[Path, list[Step], set[Path]]) -> None:
    root, _, _ = world
    folders = sorted(root.glob("*/.invitemail"))
    assert [f.parent.name for f in folders] == ["good", "refused"]
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        files = sorted(folder.iterdir())
        assert folder / "journal.sqlite" in files
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_journal_is_private_even_with_a_permissive_umask(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    builder = EventBuilder().drop("sending")
    builder.toml.replace_section("smtp", {"host": "127.0.0.1", "port": smtp_server.port,
                                          "security": "none"})
    event = builder.write(tmp_path / "e").folder
    old = os.umask(0)
    try:
        assert run_cli("send", event, "--yes").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((event / ".invitemail").stat().st_mode) == 0o700
    for path in (event / ".invitemail").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize("template", ["{{ meeting[meeting.password] }}\n",
                                      "{% include meeting.password %}\n"])
def test_a_template_error_never_quotes_the_meeting_password(
        tmp_path: Path, smtp_server: SmtpServer, template: str) -> None:
    event = event_for(tmp_path / "e", smtp_server, template=template)

    run = run_cli("check", event)

    assert run.exit_code == 1
    assert MEETING_SECRET not in run.output
