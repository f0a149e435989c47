"""When a refused message is tried again: the backoff, and the run's queue of retries.

A message that gets a retryable reply (*transient*, *recipient-temporary*, *sender-rate*) is
not waited for by the worker that sent it: it goes into the run's :class:`RetryQueue`, keyed
by the time before which it must not be tried again (on the run's injected clock), and the
worker goes on with the next message over the same connection. :mod:`invitemail.send.transport`
says how the workers take from it.

How long a message waits (:func:`retry_delay`): exponential with "equal jitter", between half
and all of ``base * 2**(attempt-1)``, never more than :data:`BACKOFF_CAP`, so workers that
failed together do not all come back at the same moment. ``base`` depends on the reply:

- *transient* (a generic ``451 4.3.0``, a dropped connection, a timeout before the hand-over):
  :data:`TRANSIENT_BASE` (0.05 s: the first retry after 25-50 ms, then 50-100 ms,
  0.1-0.2 s, 0.2-0.4 s, ...). Such a failure is one relay process or backend stumbling on
  one message, at random: a retry a second later is no likelier to pass than one a few
  hundredths of a second later, and it goes out on whichever connection is free first,
  often another one. At 20% random failures one message in 125 fails three times in a row;
  with seconds between its attempts, that message's chain of retries, not the sending, is
  what a run of a few hundred messages waits for. ``sending.max_attempts`` still bounds
  each message (the chance that a message fails five times at random does not depend on the
  waits). What the waits are for, a relay in trouble that fails *everything* for a while,
  is handled by the whole run backing off (:mod:`invitemail.send.transport` says how), not by
  one message waiting.
- everything else (*recipient-temporary*, e.g. greylisting; *sender-rate*; *concurrency*
  with a single connection): :data:`BACKOFF_BASE` (2 s: 1-2 s, 2-4 s, 4-8 s, ...). A
  greylisting relay wants minutes, a rate-limiting one is slowed down by the shared pace.

A relay's "try again after <time>" is a floor on the delay (the transport applies it).
"""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Generic, TypeVar

from invitemail.send.replies import ReplyClass

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "TRANSIENT_BASE", "RetryQueue", "backoff_delay",
           "retry_delay"]

BACKOFF_BASE: float = 2.0  # seconds before the first retry (before jitter)
TRANSIENT_BASE: float = 0.05  # the same for a transient failure
BACKOFF_CAP: float = 120.0  # no single wait longer than this

T = TypeVar("T")


def backoff_delay(attempt: int, rng: random.Random, *, base: float = BACKOFF_BASE,
                  cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...).

    Exponential with "equal jitter": between half and all of ``base * 2**(attempt-1)``, so
    workers that failed together do not all come back at the same moment.
    """
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def retry_delay(attempt: int, reply_class: ReplyClass, rng: random.Random) -> float:
    """Seconds before a message refused with ``reply_class`` at attempt ``attempt`` is
    tried again (the module docstring says why the bases differ)."""
    base = TRANSIENT_BASE if reply_class is ReplyClass.TRANSIENT else BACKOFF_BASE
    return backoff_delay(attempt, rng, base=base)


class RetryQueue(Generic[T]):
    """Items each waiting for their not-before time; the earliest first, ties in the order
    they came."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, not_before: float, item: T) -> None:
        heapq.heappush(self._heap, (not_before, next(self._order), item))

    def earliest(self) -> float | None:
        """When the next item is due; None when there is none."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> T | None:
        """The earliest item whose time has come, or None."""
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def drain(self) -> list[T]:
        """Every item left, earliest first; the queue is empty afterwards."""
        items = [item for _, _, item in sorted(self._heap)]
        self._heap.clear()
        return items
