"""Assertions and reports several test files share: what the journal and the relay hold."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from invitemail.journal.store import Journal, State
from support.relay import SmtpServer


def journal_states(folder: Path, template: str = "invitation") -> dict[str, State]:
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:
        return {row.address: row.state for row in journal.rows(template)}


def assert_exactly_once(server: SmtpServer, addresses: Iterable[str]) -> None:
    received = server.received()
    wanted = list(addresses)
    assert {a: received[a] for a in wanted} == dict.fromkeys(wanted, 1)
    assert sum(received.values()) == len(wanted)


def show_when_verbose(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
                      lines: list[str]) -> None:
    """Print ``lines`` to the terminal, past the capture, when pytest runs with ``-v``."""
    if request.config.getoption("verbose") > 0:
        with capsys.disabled():
            print("\n" + "\n".join(lines))
