"""A measured child process: its wall clock, its own peak RSS, and when the sink saw its first
and last message."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import CHILD_TIMEOUT, note
from sink import Sink


@dataclass
class Child:
    """One measured child process."""

    returncode: int
    seconds: float
    peak_rss_mb: float
    log: Path
    send_seconds: float | None = None  # first to last message accepted by the sink
    send_messages: int = 0  # messages accepted in that span

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


# The measured command runs under this launcher, a fresh small process: a child's peak RSS
# (ru_maxrss) on Linux starts from its parent's RSS at the fork, and the bench's own process
# holds thousands of built messages. The launcher's child inherits only the launcher's few MB.
LAUNCHER = """\
import os, sys, time
result, command = sys.argv[1], sys.argv[2:]
began = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    except OSError as err:
        print(f"cannot run {command[0]}: {err}", file=sys.stderr)
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - began
with open(result, "w") as file:
    file.write(f"{os.waitstatus_to_exitcode(status)} {seconds!r} {usage.ru_maxrss}\\n")
"""


def run_child(command: Sequence[str | Path], *, log: Path, sink: Sink | None = None,
              cwd: Path | None = None, env: dict[str, str] | None = None) -> Child:
    """Run ``command`` to completion: its wall clock and its own peak RSS (measured by
    :data:`LAUNCHER`), and, watching the sink's counter, when the first and the last message
    arrived."""
    base = sink.count() if sink is not None else 0
    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    result = log.with_suffix(".rusage")
    result.unlink(missing_ok=True)
    with log.open("wb") as out:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(result), *map(str, command)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            start_new_session=True)
        try:
            while True:
                done = process.poll() is not None
                now = time.perf_counter()
                if sink is not None:
                    seen = sink.count()
                    if seen > base:
                        if first is None:
                            first = (now, seen)
                        if last is None or seen > last[1]:
                            last = (now, seen)
                if done:
                    break
                if now - began > CHILD_TIMEOUT:
                    note(f"{command[0]} ran longer than {CHILD_TIMEOUT:.0f} s: killed")
                    os.killpg(process.pid, signal.SIGKILL)
                time.sleep(0.02)
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        wall = time.perf_counter() - began
    try:
        code, seconds, maxrss = result.read_text().split()
        child = Child(int(code), float(seconds), int(maxrss) / 1024, log)
    except (OSError, ValueError):
        child = Child(process.returncode or -1, wall, 0.0, log)
    if first is not None and last is not None and last[0] > first[0]:
        child.send_seconds = last[0] - first[0]
        child.send_messages = last[1] - first[1]
    return child

