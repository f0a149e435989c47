"""pool.ordered_map on its own: any picklable recipe and step, not only a campaign's.

The items come back in order with their results, on worker processes when asked, here
otherwise; workers that die leave nothing out; a pool lives as long as its owner.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from invitemail import pool

ITEMS = 3000  # enough for every worker to get many chunks


class Squares:
    """What the steps run on; ``opened_in`` tells where it was opened."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.opened_in = os.getpid()


@dataclass(frozen=True)
class SquaresRecipe:
    offset: int

    def __call__(self) -> Squares:
        return Squares(self.offset)


def square(squares: Squares, item: int) -> tuple[int, int]:
    """The result and the process that opened what computed it."""
    return squares.offset + item * item, squares.opened_in


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _started(here: Squares) -> list[int]:
    """Start ``here``'s two workers; their pids once both run."""
    pool.start(here, SquaresRecipe(here.offset))
    _wait_for(lambda: len(pool.worker_pids(here)) == 2, "the workers did not start")
    return pool.worker_pids(here)


@pytest.fixture(autouse=True)
def two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")


def test_ordered_map_on_workers_gives_every_item_its_result_in_order() -> None:
    here = Squares(7)
    results = list(pool.ordered_map(square, range(ITEMS), here=here, recipe=SquaresRecipe(7),
                                    parallel=True))
    assert [item for item, _ in results] == list(range(ITEMS))
    assert [value for _, (value, _) in results] == [7 + i * i for i in range(ITEMS)]
    opened_in = {where for _, (_, where) in results}
    assert os.getpid() not in opened_in and 1 <= len(opened_in) <= 2
    assert set(opened_in) <= set(pool.worker_pids(here))


@pytest.mark.parametrize(("recipe", "parallel"), [(None, True), (SquaresRecipe(7), False)])
def test_ordered_map_runs_here_without_a_recipe_or_when_not_parallel(
        recipe: SquaresRecipe | None, parallel: bool) -> None:
    here = Squares(7)
    results = list(pool.ordered_map(square, range(50), here=here, recipe=recipe,
                                    parallel=parallel))
    assert results == [(i, (7 + i * i, os.getpid())) for i in range(50)]
    assert here not in pool._POOLS  # no worker was started


@pytest.mark.parametrize("killed_after", [0, 1, 500, ITEMS - 10])
def test_ordered_map_finishes_here_when_the_workers_die(killed_after: int) -> None:
    """Killed before the first result, after one, mid-way and near the end (when what is
    left may all be back already): every item still comes once, in order, with its
    result."""
    here = Squares(3)
    pids = _started(here)
    results = pool.ordered_map(square, range(ITEMS), here=here, recipe=SquaresRecipe(3),
                               parallel=True)
    got = [next(results) for _ in range(killed_after)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    got += list(results)
    assert [(item, value) for item, (value, _) in got] == [(i, 3 + i * i) for i in range(ITEMS)]
    if killed_after < ITEMS // 2:  # far more than the window in flight was left
        assert got[-1][1][1] == os.getpid()  # the rest was computed here
        assert here not in pool._POOLS  # and the broken pool let go


def test_ordered_map_stopped_early_leaves_the_pool_ready_for_the_next() -> None:
    here, recipe = Squares(1), SquaresRecipe(1)
    first = pool.ordered_map(square, range(ITEMS), here=here, recipe=recipe, parallel=True)
    assert [next(first)[0] for _ in range(10)] == list(range(10))
    first.close()  # the caller stops: what is queued is dropped
    again = list(pool.ordered_map(square, range(ITEMS), here=here, recipe=recipe,
                                  parallel=True))
    assert [value for _, (value, _) in again] == [1 + i * i for i in range(ITEMS)]
    assert os.getpid() not in {where for _, (_, where) in again}


def test_a_pool_ends_with_its_owner() -> None:
    """The workers go when the object that owns them does (weakref.finalize waits for
    the pool's shutdown), not at the interpreter's exit."""
    here = Squares(0)
    pids = _started(here)
    del here
    gc.collect()
    assert len(pids) == 2
    for pid in pids:  # gone when the finalizer returned: shutdown(wait=True)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_pay_from_min_rows_and_light_items_from_min_rows_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not pool.pays(pool.MIN_ROWS - 1) and pool.pays(pool.MIN_ROWS)
    assert not pool.pays(pool.MIN_ROWS_CHECK - 1, light=True)
    assert pool.pays(pool.MIN_ROWS_CHECK, light=True)
    monkeypatch.setenv("INVITEMAIL_WORKERS", "1")  # one worker never pays
    assert not pool.pays(10 * pool.MIN_ROWS_CHECK)


@pytest.mark.parametrize("count", [0, 1, 5, 63, 64, 65, 700, ITEMS])
def test_a_helping_caller_gets_every_item_in_order_however_the_work_was_shared(
        count: int) -> None:
    """``help_here``: this process runs chunks while the workers start and while the
    oldest task is not back; the order and the results are the map's all the same."""
    here = Squares(7)
    pool.start(here, SquaresRecipe(7))  # the warm-up still under way as the map begins
    items = list(range(count))
    got = list(pool.ordered_map(square, items, here=here, recipe=SquaresRecipe(7),
                                parallel=True, help_here=True))
    assert [(item, value) for item, (value, _) in got] == [(i, 7 + i * i) for i in items]
