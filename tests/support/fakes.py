"""Fakes the library is handed instead of a terminal: a progress that remembers."""

from __future__ import annotations


class Quiet:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.finished_states: list[str] = []
        self.retries = 0

    def started(self, total: int) -> None:
        self.total = total

    def finished(self, key: str, state: str, reply: str) -> None:
        self.finished_states.append(state)

    def retrying(self, key: str, reply: str, delay: float) -> None:
        self.retries += 1
