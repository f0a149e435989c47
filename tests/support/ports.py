"""A loopback port for a server a test or the bench starts, and waiting for it to answer."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (nobody listens on it until someone
    binds it: a test may also use it as a port where nothing answers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_smtp(port: int, timeout: float = 10.0, *, every: float = 0.05) -> bool:
    """Whether an SMTP server greets (220) on 127.0.0.1:``port`` within ``timeout`` seconds,
    asking every ``every`` seconds; the probe says QUIT and goes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(512).startswith(b"220"):
                    conn.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
