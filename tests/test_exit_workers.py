"""Worker pools end with the command, before the interpreter's exit hooks run.

concurrent.futures' own exit hook writes to each pool's wakeup pipe without the pool's lock;
a pool still shutting down then (one whose campaign was let go just before the end, which
shuts it down without waiting) closes that pipe under the hook's feet, and the run ended on a
"Bad file descriptor" traceback about once in 20 sends of 10,000 messages. Each child below
runs a command through the CLI's wrapper, and reports, from a hook that runs just before
concurrent.futures' own, any pool thread still running: the race's precondition, seen every
time rather than once in 20.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.event import write_event

CHILD = '''
import sys
import threading
from pathlib import Path

import click
import concurrent.futures.process  # its exit hook first: the one below then runs before it

from invitemail.campaign import Campaign
from invitemail.cli import handle_errors
from invitemail.errors import InvitemailError
from invitemail.registrants import unique_registrants


def still_running() -> None:
    for thread in threading.enumerate():
        if type(thread).__name__ == "_ExecutorManagerThread" and thread.is_alive():
            sys.stderr.write("a worker pool was still shutting down at exit\\n")


threading._register_atexit(still_running)


@click.command()
@click.argument("event", type=click.Path(path_type=Path))
@click.argument("take", type=int)
@click.argument("end")
@handle_errors
def build(event: Path, take: int, end: str) -> None:
    campaign = Campaign.open(event)
    campaign.start_workers()
    for n, _ in enumerate(campaign.messages(unique_registrants(campaign.source)), 1):
        if n >= take:
            break
    if end == "error":
        raise InvitemailError("stopped on purpose")
    if end == "interrupt":
        raise KeyboardInterrupt


if __name__ == "__main__":
    sys.setswitchinterval(1e-6)  # switch threads often: the race, when there is one, shows
    build()
'''

ROWS = 1100  # the workers start for 1,000 rows and more


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [(f"Deltager {i}", f"deltager{i}@example.org", "da") for i in range(ROWS)]
    return write_event(tmp_path_factory.mktemp("exit") / "event", rows)


@pytest.mark.parametrize(("take", "end", "code"), [
    (ROWS, "normal", 0),  # every message built: the pool is idle at the end
    (3, "normal", 0),  # stopped early: chunks queued and running on the workers
    (200, "error", 1),  # an error mid-way: its message and exit code, nothing else
    (50, "interrupt", 3),  # Ctrl-C: the partial exit code, nothing else
])
def test_workers_are_gone_before_the_exit_hooks_run(
        event: Path, tmp_path: Path, take: int, end: str, code: int) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {**os.environ, "INVITEMAIL_WORKERS": "2"}
    for _ in range(2):  # twice: a run is about a second
        done = subprocess.run([sys.executable, str(script), str(event), str(take), end],
                              env=env, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in done.stderr
        assert "still shutting down" not in done.stderr, done.stderr
        assert done.returncode == code, done.stderr
