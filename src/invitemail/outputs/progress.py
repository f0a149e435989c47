"""Progress while sending: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # rich.progress is imported by the bar alone: a pipe or a log never needs it
    from rich.console import Console
    from rich.progress import TaskID


class BarProgress:
    """A rich progress bar: sent, failed, retrying, rate and ETA."""

    def __init__(self, console: Console, template: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn(f"[bold]{template}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeRemainingColumn(), console=console,
            transient=False)
        self.task: TaskID | None = None
        self.counts = {"sent": 0, "failed": 0, "uncertain": 0, "retrying": 0}
        self.began = time.monotonic()

    def _detail(self) -> str:
        elapsed = max(time.monotonic() - self.began, 1e-6)
        c = self.counts
        return (f"sent {c['sent']}  failed {c['failed']}  uncertain {c['uncertain']}  "
                f"retries {c['retrying']}  {c['sent'] / elapsed:.1f}/s")

    def started(self, total: int) -> None:
        self.began = time.monotonic()
        self.task = self.bar.add_task("send", total=total, detail=self._detail())

    def finished(self, key: str, state: str, reply: str) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1
        if self.task is not None:
            self.bar.update(self.task, advance=1, detail=self._detail())

    def retrying(self, key: str, reply: str, delay: float) -> None:
        self.counts["retrying"] += 1
        if self.task is not None:
            self.bar.update(self.task, detail=self._detail())


class LineProgress:
    """A plain line every few seconds, for logs and pipes."""

    def __init__(self, stream: IO[str], *, every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock
        self.total = 0
        self.done = 0
        self.counts = {"sent": 0, "failed": 0, "uncertain": 0, "retrying": 0}
        self.began = self.last = clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.began, 1e-6)
        c = self.counts
        return (f"progress: {self.done}/{self.total} done, sent {c['sent']}, failed "
                f"{c['failed']}, uncertain {c['uncertain']}, retries {c['retrying']}, "
                f"{c['sent'] / elapsed:.1f}/s")

    def _maybe_print(self) -> None:
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def started(self, total: int) -> None:
        self.total = total
        self.began = self.last = self.clock()
        print(f"sending {total} message{'s' if total != 1 else ''}", file=self.stream,
              flush=True)

    def finished(self, key: str, state: str, reply: str) -> None:
        self.done += 1
        self.counts[state] = self.counts.get(state, 0) + 1
        self._maybe_print()

    def retrying(self, key: str, reply: str, delay: float) -> None:
        self.counts["retrying"] += 1
        self._maybe_print()


@contextmanager
def make_progress(console: Console | None, template: str
                  ) -> Iterator[BarProgress | LineProgress]:
    """A bar on a terminal; plain lines on ``console``'s stream, or on standard output when
    there is no console (not a terminal: see cli.shared.terminal_console)."""
    if console is not None and console.is_terminal:
        bar = BarProgress(console, template)
        with bar.bar:
            yield bar
    else:
        yield LineProgress(console.file if console is not None else sys.stdout)
