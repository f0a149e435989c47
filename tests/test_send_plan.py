"""The send plan used as a library, without the CLI: prepare, look at what it would send,
then run it (or not) against a real SMTP server on 127.0.0.1, and read the journal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invitemail.campaign import Campaign
from invitemail.errors import InvitemailError
from invitemail.inputs.cells import Registrant, registrant_key
from invitemail.journal.folderlock import FolderBusy, FolderLock
from invitemail.journal.store import Journal, State
from invitemail.send.delivery import SendOptions, Skip
from invitemail.send.plan import SendPlan, prepare_send
from support.checks import assert_exactly_once, journal_states
from support.event import NOW, event_for, rows
from support.fakes import Quiet
from support.relay import SmtpServer

BAD_ROW = ("Ingen Adresse", "not-an-address", "da")


def _campaign(folder: Path) -> Campaign:
    return Campaign.open(folder, now=NOW)


def _no_journal_rows(folder: Path) -> bool:
    journal = Journal.open(folder, create=False)
    if journal is None:
        return True
    with journal:
        return not journal.states("invitation")


def test_plan_counts_what_it_would_send_and_the_run_sends_exactly_that(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    people = rows(5)
    folder = event_for(smtp_server, tmp_path / "e", people)

    with prepare_send(_campaign(folder), SendOptions()) as plan:
        # Prepared: checked and counted, nothing sent yet, no row journaled.
        assert (plan.planned, plan.messages) == (5, 5)
        assert plan.checked.ok and not plan.changed() and not plan.variants
        assert smtp_server.connections == 0
        assert _no_journal_rows(folder)
        progress = Quiet()
        result = plan.run(None, progress=progress)

    assert (result.planned, result.sent, result.failed, result.uncertain) == (5, 5, 0, 0)
    assert result.complete and not result.skipped
    assert progress.total == 5 and progress.finished_states == ["sent"] * 5
    assert_exactly_once(smtp_server, [email for _, email, _ in people])
    assert journal_states(folder) == {email: State.SENT for _, email, _ in people}


@pytest.mark.parametrize("first", [1, 2, 4])
def test_plan_after_a_partial_run_counts_only_the_rest_and_skips_the_sent(
        smtp_server: SmtpServer, tmp_path: Path, first: int) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(5))
    with prepare_send(_campaign(folder), SendOptions(limit=first)) as plan:
        assert plan.planned == first
        assert plan.run(None, progress=Quiet()).sent == first

    with prepare_send(_campaign(folder), SendOptions()) as plan:
        assert (plan.planned, plan.messages) == (5 - first, 5)
        result = plan.run(None, progress=Quiet())

    assert result.sent == 5 - first
    assert result.skipped == {Skip.SENT: first}
    assert_exactly_once(smtp_server, [f"user{i}@example.org" for i in range(5)])


def test_a_refused_confirmation_sends_nothing_and_leaves_the_folder_free(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))

    def confirmed(plan: SendPlan) -> bool:
        assert plan.planned == 3  # the question would name 3
        return False  # the coordinator says no

    with prepare_send(_campaign(folder), SendOptions()) as plan:
        with pytest.raises(FolderBusy):  # the plan holds the folder while it waits
            FolderLock.acquire(folder)
        if confirmed(plan):
            plan.run(None, progress=Quiet())

    assert smtp_server.connections == 0 and not smtp_server.transactions
    assert _no_journal_rows(folder)
    FolderLock.acquire(folder).release()  # let go of when the plan closed
    with prepare_send(_campaign(folder), SendOptions()) as again:  # nothing was used up
        assert again.planned == 3


def test_a_dry_run_plan_takes_no_lock_and_connects_to_nothing(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(4))
    with prepare_send(_campaign(folder), SendOptions(dry_run=True, limit=3)) as plan:
        FolderLock.acquire(folder).release()  # a dry run holds nothing
        assert plan.planned == 3
        result = plan.run(None, progress=Quiet())
    assert result.dry_run and result.planned == 3 and result.sent == 0
    assert smtp_server.connections == 0


def test_a_plan_refuses_rows_with_problems_unless_told_to_skip_them(
        smtp_server: SmtpServer, tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e", [*rows(3), BAD_ROW])

    with pytest.raises(InvitemailError) as refused:
        prepare_send(_campaign(folder), SendOptions())
    assert "registrants.csv:5: 'not-an-address' is not a valid address" in str(refused.value)
    assert "--skip-invalid" in (refused.value.hint or "")
    FolderLock.acquire(folder).release()  # the refused plan let go of the folder
    assert smtp_server.connections == 0

    with prepare_send(_campaign(folder), SendOptions(skip_invalid=True)) as plan:
        assert plan.planned == 3 and plan.checked.scan.invalid == 1
        assert plan.run(None, progress=Quiet()).sent == 3
    assert_exactly_once(smtp_server, [f"user{i}@example.org" for i in range(3)])


@pytest.mark.parametrize("sent_as, listed_as", [
    ("Mette.Holm@Example.org", "mette.holm@example.org"),
    ("mette.holm@example.org", "METTE.HOLM@EXAMPLE.ORG"),
    ("M.Holm+Event@Sub.Example.ORG", "m.holm+event@sub.example.org"),
])
def test_the_plan_knows_a_registrant_by_the_address_in_any_case(
        smtp_server: SmtpServer, tmp_path: Path, sent_as: str, listed_as: str) -> None:
    folder = event_for(smtp_server, tmp_path / "e", [("Mette Holm", sent_as, "da")])
    with prepare_send(_campaign(folder), SendOptions()) as plan:
        assert plan.run(None, progress=Quiet()).sent == 1

    listed = event_for(smtp_server, tmp_path / "e", [("Mette Holm", listed_as, "da")])
    with prepare_send(_campaign(listed), SendOptions()) as plan:
        assert plan.planned == 0
        result = plan.run(None, progress=Quiet())
    assert result.sent == 0 and result.skipped == {Skip.SENT: 1} and not result.removed
    assert len(smtp_server.transactions) == 1


@given(st.emails())
def test_registrant_key_is_the_key_of_the_registrant_at_that_address(email: str) -> None:
    registrant = Registrant(line=2, email=email, name="", first_name="", last_name="",
                            language="da", join_url="", timezone="")
    assert registrant.key == registrant_key(email) == email.lower()
    assert registrant_key(email.upper()) == registrant_key(email.lower())


@pytest.mark.parametrize("command", ["--help", "send --help", "status --help", "check --help"])
def test_the_command_line_loads_no_storage_smtp_or_template_library(command: str) -> None:
    """The CLI parses and presents: loading it (and its help) imports no sqlite3, aiosmtplib
    or jinja2, and none of the transport's modules; the commands reach them through the
    library when they run."""
    probe = ("import sys\nfrom invitemail.cli import main\n"
             f"try:\n    main({command.split()!r})\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('sqlite3', 'aiosmtplib', 'jinja2', "
             "'invitemail.send.transport', 'invitemail.journal.store') if m in sys.modules),"
             " file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ}, timeout=60, check=True)
    assert "Usage:" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"
