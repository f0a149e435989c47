"""The transport driven directly, in the test's own event loop: numbered envelopes, hooks
that record every outcome and check the transport's promises, and ``send`` to a test relay.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

from invitemail.inputs.config import Sending, Smtp
from invitemail.send.transport import DeliveryReport, Envelope, Outcome, State, deliver
from support.relay import FakeClock, SmtpServer

SENDER = "arrangementer@example.org"


class Journal:
    """Hooks that record everything and check the transport's promises as they happen."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.outcomes: dict[str, Outcome] = {}
        self.finished_at: list[float] = []
        self.handed_over: list[tuple[str, int]] = []
        self.retries: list[tuple[str, str, int, float]] = []
        self.on_finished: Any = None
        self.on_retrying: Any = None

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        assert envelope.key not in self.outcomes
        self.handed_over.append((envelope.key, attempt))

    def finished(self, outcome: Outcome) -> None:
        assert outcome.key not in self.outcomes, f"{outcome.key} finished twice"
        self.outcomes[outcome.key] = outcome
        self.finished_at.append(self.clock())
        if self.on_finished is not None:
            self.on_finished(outcome)

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        assert envelope.key not in self.outcomes
        self.retries.append((envelope.key, reply, attempt, delay))
        if self.on_retrying is not None:
            self.on_retrying(envelope)

    def states(self) -> dict[State, int]:
        counts: dict[State, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.state] = counts.get(outcome.state, 0) + 1
        return counts


def address(number: int) -> str:
    return f"registrant{number:05d}@example.org"


def message(recipient: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: Invitation\r\n\r\n"
            "Hello,\r\n.a line that starts with a dot\r\nBye\r\n").encode()


def envelopes(count: int, start: int = 0) -> Iterator[Envelope]:
    for number in range(start, start + count):
        recipient = address(number)
        yield Envelope(key=recipient, sender=SENDER, recipient=recipient, data=message(recipient))


async def send(server: SmtpServer, items: Any, *, sending: Sending | None = None,
               password: str | None = None, stop: asyncio.Event | None = None,
               smtp: Smtp | None = None, journal: Journal | None = None,
               clock: FakeClock | None = None) -> tuple[DeliveryReport, Journal]:
    clock = clock or FakeClock()
    journal = journal or Journal(clock)
    report = await deliver(
        items,
        smtp=smtp or server.smtp_settings(),
        sending=sending or Sending(concurrency=4),
        password=password,
        hooks=journal,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
        stop=stop,
        local_hostname="client.test",
    )
    return report, journal


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
