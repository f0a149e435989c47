"""The worker processes that build messages for a long list: they never see the SMTP
password, and they do not outlive the run that started them, however it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.event import EventBuilder
from support.relay import Script, SmtpServer

PASSWORD = "smtp-secret-worker-7e2b"  # must never be in a worker's environment
USER = "arrangementer"
ROWS = 1200  # more than parallel.MIN_ROWS: `send` builds the messages on worker processes


def _event(folder: Path, server: SmtpServer) -> Path:
    rows = [(f"Deltager {i}", f"user{i}@example.org", "da") for i in range(ROWS)]
    return EventBuilder(rows=rows).relay(
        {"host": "127.0.0.1", "port": server.port, "security": "none", "username": USER,
         "allow_insecure_auth": True, "timeout": 30},
        {"concurrency": 2}).write(folder).folder


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init, which may be slow)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def sending(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], set[int]]]:
    """A `send` of 1,200 messages in a child process, against a relay that holds its reply
    to every message: the run is under way, with its workers started. Yields the process
    and its descendants (the fork server and the workers)."""
    with SmtpServer(script=Script(reply_delay=60.0), auth=(USER, PASSWORD)) as server:
        folder = _event(tmp_path / "event", server)
        env = {**os.environ, "INVITEMAIL_WORKERS": "2", "INVITEMAIL_SMTP_PASSWORD": PASSWORD}
        process = subprocess.Popen([sys.executable, "-m", "invitemail", "send", str(folder),
                                    "--yes"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        found: set[int] = set()
        try:
            _wait_for(lambda: server.handler.messages_seen >= 1)  # logged in, sending
            _wait_for(lambda: len(_descendants(process.pid)) >= 3)  # server and 2 workers
            found = _descendants(process.pid)
            yield process, found
        finally:
            process.kill()
            process.wait()
            for pid in found:  # whatever a failed test left behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_workers_never_have_the_smtp_password_in_their_environment(
        sending: tuple[subprocess.Popen[bytes], set[int]]) -> None:
    """/proc/PID/environ is what the process was started with: the CLI takes the password
    out of its environment before the fork server (whose children the workers are) starts."""
    _, processes = sending
    for pid in processes:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"INVITEMAIL_WORKERS=2" in environ  # the environment was read at all
        assert PASSWORD.encode() not in environ and b"INVITEMAIL_SMTP_PASSWORD" not in environ


def test_workers_exit_when_the_run_is_killed(
        sending: tuple[subprocess.Popen[bytes], set[int]]) -> None:
    process, processes = sending
    assert all(_running(pid) for pid in processes)
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in processes if _running(pid)] == []
