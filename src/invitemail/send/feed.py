"""The envelopes waiting for a connection: a bounded buffer between one producer (the
caller's iterator) and the run's workers.

It behaves as an ``asyncio.Queue`` with ``maxsize`` would for one producer, with one
difference: the producer is woken when the buffer is down to half (``low``), not each time
a worker takes an envelope. With eight connections at loopback speed, a queue wakes the
producer (a future, a turn of the loop) for every message; the feed once in ``size - low``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Feed(Generic[T]):
    """A bounded first-in first-out buffer for one producer and any number of workers."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a feed holds at least one item")
        self._items: deque[T] = deque()
        self._size = size
        self._low = size // 2
        self._getters: deque[asyncio.Future[None]] = deque()
        self._room: asyncio.Future[None] | None = None  # the producer waits on it

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    async def put(self, item: T) -> None:
        """Add ``item``; wait first while the buffer is full, until it is down to ``low``."""
        while len(self._items) >= self._size:
            room = self._room = asyncio.get_running_loop().create_future()
            try:
                await room
            finally:
                self._room = None
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Add ``item`` now, full or not (the run's halt puts its end markers this way)."""
        self._items.append(item)
        self._wake_getter()

    async def get(self) -> T:
        """The oldest item; wait for one if there is none."""
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif not getter.cancelled():  # woken, then cancelled: pass the turn on
                    self._wake_getter()
                raise
        return self.get_nowait()

    def get_nowait(self) -> T:
        """The oldest item (IndexError when there is none)."""
        item = self._items.popleft()
        room = self._room
        if room is not None and len(self._items) <= self._low and not room.done():
            room.set_result(None)
        return item

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return
