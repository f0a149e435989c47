"""Shared fixtures. The servers themselves live in smtp_servers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smtp_servers import SmtpServer


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
