"""The run's feed of envelopes (send/feed.py) against asyncio.Queue, the buffer it replaced:
the same items, taken in the order they were put, never more than ``size`` waiting, and a
producer woken far less often."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.send.feed import Feed


async def _run(buffer: Feed[int | None] | asyncio.Queue[int | None], items: int,
               workers: int, pauses: list[int], size: int) -> tuple[list[int], int, int]:
    taken: list[int] = []
    most = 0
    wakes = 0

    async def produce() -> None:
        nonlocal wakes
        for item in range(items):
            before = len(taken)
            await buffer.put(item)
            if len(taken) != before:  # it waited for room while workers took items
                wakes += 1
        for _ in range(workers):
            await buffer.put(None)

    async def work(index: int) -> None:
        nonlocal most
        turn = index
        while True:
            item = await buffer.get()
            if item is None:
                return
            taken.append(item)
            most = max(most, buffer.qsize() if isinstance(buffer, asyncio.Queue)
                       else len(buffer))
            for _ in range(pauses[turn % len(pauses)]):  # the transaction's turns
                await asyncio.sleep(0)
            turn += 1

    await asyncio.gather(produce(), *(work(i) for i in range(workers)))
    return taken, most, wakes


@settings(max_examples=60, deadline=None)
@given(items=st.integers(0, 120), workers=st.integers(1, 9), size=st.integers(1, 40),
       pauses=st.lists(st.integers(0, 4), min_size=1, max_size=7))
def test_feed_gives_what_a_queue_gives_in_the_same_order(items: int, workers: int, size: int,
                                                          pauses: list[int]) -> None:
    fed, fed_most, fed_wakes = asyncio.run(_run(Feed(size), items, workers, pauses, size))
    queued, queue_most, queue_wakes = asyncio.run(
        _run(asyncio.Queue(maxsize=size), items, workers, pauses, size))
    assert fed == queued == list(range(items))  # each once, in the order put
    assert fed_most <= size and queue_most <= size
    assert fed_wakes <= queue_wakes


def test_feed_wakes_the_producer_once_per_half_buffer() -> None:
    _, _, wakes = asyncio.run(_run(Feed(32), 3200, 8, [1], 32))
    _, _, queue_wakes = asyncio.run(_run(asyncio.Queue(maxsize=32), 3200, 8, [1], 32))
    assert wakes <= 3200 // 16 + 1
    assert queue_wakes > 2 * wakes


def test_a_cancelled_worker_passes_its_turn_on() -> None:
    async def scenario() -> None:
        feed: Feed[int] = Feed(4)
        first = asyncio.ensure_future(feed.get())
        second = asyncio.ensure_future(feed.get())
        await asyncio.sleep(0)  # both wait
        feed.put_nowait(1)  # wakes the first
        first.cancel()  # ... which is cancelled before it runs
        assert await asyncio.wait_for(second, 1) == 1
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(scenario())


def test_a_feed_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError):
        Feed(0)
