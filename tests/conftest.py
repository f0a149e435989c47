"""Shared fixtures. The servers themselves live in support/relay.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from support.relay import SmtpServer

# The property tests draw the same examples on every run, so a run's result does not
# depend on luck; HYPOTHESIS_PROFILE=explore draws new ones (run it now and then).
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(autouse=True, scope="session")
def session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Never the user's data folder, not even in a module or session fixture (they are set up
    before the per-test one below)."""
    folder = tmp_path_factory.mktemp("session-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INVITEMAIL_DATA_DIR", str(folder))
        patch.setenv("INVITEMAIL_CONFIG_DIR", str(folder / "config"))
        yield folder


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory,
             monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets a data folder of its own for the record of sent messages (ledger.py),
    never the user's; the CLI's subprocesses inherit it through the environment."""
    folder = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("INVITEMAIL_DATA_DIR", str(folder))
    # The user's config folder (OAuth2 logins, oauth.py) too.
    monkeypatch.setenv("INVITEMAIL_CONFIG_DIR", str(folder / "config"))
    return folder


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plaintext recording SMTP server without faults, in a thread of its own."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def start_smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """``start_smtp_server(script=Script(...), tls="starttls", auth=(u, p))``: a threaded
    server with those options, stopped at the end of the test."""
    servers: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        server = SmtpServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
