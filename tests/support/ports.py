"""A loopback port for a server a test or the bench starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (nobody listens on it until someone
    binds it: a test may also use it as a port where nothing answers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
