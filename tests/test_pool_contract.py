"""What pool.py leans on in concurrent.futures and multiprocessing, checked one by one.

Two of them are private: ProcessPoolExecutor's ``_processes`` (pid -> Process, filled as the
workers start) and ``_broken`` (False until a worker dies, then the reason), read by
``pool.worker_pids`` and ``pool.broken`` (and by the tests that kill workers). The bound on
these is Python's version, not a package's: they are CPython's, unchanged from 3.11 to
3.13, and any new Python may change them. These tests run on the Python in use, so on a new
one a test here fails by name, before the tests that kill workers hang on a wait; then adapt
the end of pool.py. The rest is documented behaviour that pool.py's fallback and the
workers' lifetime depend on.
"""

from __future__ import annotations

import concurrent.futures.process as futures_process
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import pytest

from invitemail import pool


class Adder:
    """What the steps run on: opened by :class:`AdderRecipe`, here or in a worker."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


@dataclass(frozen=True)
class AdderRecipe:
    offset: int

    def __call__(self) -> Adder:
        return Adder(self.offset)


def where_and_sum(adder: Adder, item: int) -> tuple[int, int]:
    return os.getpid(), adder.offset + item


def padded(adder: Adder, item: int) -> tuple[int, bytes]:
    """A result of about a message's size (20 KB), its bytes telling which item it is."""
    return item, bytes([item % 251]) * (20_000 + item % 7)


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def two_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Adder]:
    """An owner whose pool of two workers has started (through pool.py, as the campaign's)."""
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    adder = Adder(1000)
    pool.start(adder, AdderRecipe(1000))
    executor = pool._POOLS[adder]
    assert hasattr(executor, "_processes") and hasattr(executor, "_broken"), (
        "ProcessPoolExecutor's privates changed: adapt worker_pids and broken in pool.py")
    _wait_for(lambda: len(pool.worker_pids(adder)) == 2, "the workers did not start")
    yield adder
    executor = pool._POOLS.pop(adder, None)  # the test may have taken it
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def test_contract_processes_maps_each_worker_pid_to_its_process(two_workers: Adder) -> None:
    executor = pool._POOLS[two_workers]
    processes = executor._processes  # type: ignore[attr-defined]
    assert isinstance(processes, dict)
    assert all(isinstance(pid, int) and isinstance(process, multiprocessing.process.BaseProcess)
               and process.pid == pid and process.is_alive()
               for pid, process in processes.items())
    assert sorted(pool.worker_pids(two_workers)) == sorted(processes)
    ran_on = {pid for _, (pid, _) in pool.ordered_map(
        where_and_sum, range(4000), here=two_workers, recipe=AdderRecipe(1000), parallel=True)}
    assert ran_on <= set(processes) and os.getpid() not in ran_on


def test_contract_the_results_come_back_through_a_pipe_widened_to_a_chunk(
        two_workers: Adder) -> None:
    executor = pool._POOLS[two_workers]
    reader = executor._result_queue._reader  # type: ignore[attr-defined]
    assert isinstance(reader, multiprocessing.connection.Connection), (
        "ProcessPoolExecutor's result queue changed: adapt _widen_result_pipe in pool.py")
    getsize = fcntl.F_GETPIPE_SZ  # type: ignore[attr-defined]
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert fcntl.fcntl(reader.fileno(), getsize) == min(pool.RESULT_PIPE, limit) or (
        limit < pool.RESULT_PIPE and os.geteuid() != 0)
    # Results far larger than the pipe still arrive whole and in order.
    results = list(pool.ordered_map(padded, range(3000), here=two_workers,
                                    recipe=AdderRecipe(1000), parallel=True))
    assert [item for item, _ in results] == list(range(3000))
    assert [len(blob) for _, (_, blob) in results] == [20_000 + i % 7 for i in range(3000)]
    assert all(i == item and blob == bytes([i % 251]) * len(blob)
               for item, (i, blob) in results)


def test_contract_broken_is_false_until_a_worker_dies(two_workers: Adder) -> None:
    executor = pool._POOLS[two_workers]
    assert executor._broken is False  # type: ignore[attr-defined]
    assert not pool.broken(two_workers)
    os.kill(pool.worker_pids(two_workers)[0], signal.SIGKILL)
    _wait_for(lambda: pool.broken(two_workers), "the pool did not notice")
    reason = executor._broken  # type: ignore[attr-defined]
    assert isinstance(reason, str) and reason  # the reason, for the error it raises
    with pytest.raises(BrokenProcessPool):  # documented: a broken pool takes no more work
        executor.submit(os.getpid)


def test_contract_a_worker_killed_mid_task_fails_its_future_as_broken(
        two_workers: Adder) -> None:
    """What pool.ordered_map catches to build the rest here (documented)."""
    executor = pool._POOLS[two_workers]
    future = executor.submit(time.sleep, 30)
    _wait_for(future.running, "the task did not start")
    for pid in pool.worker_pids(two_workers):
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        future.result(timeout=30)
    assert issubclass(futures_process.BrokenProcessPool, BrokenProcessPool)


def _fail() -> None:
    raise RuntimeError("the recipe could not open")


def test_contract_an_initializer_that_fails_breaks_the_pool() -> None:
    """Documented: a worker whose initializer (pool.py's, which calls the recipe) raises
    breaks the pool, and every pending task raises BrokenProcessPool."""
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_fail) as executor:
        future = executor.submit(os.getpid)
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=30)


def test_contract_shutdown_with_wait_leaves_no_worker_running(two_workers: Adder) -> None:
    """The campaign's finalizer: shutdown(wait=True, cancel_futures=True) returns once the
    workers and the pool's own thread are gone."""
    pids = pool.worker_pids(two_workers)
    executor = pool._POOLS.pop(two_workers)
    queued = [executor.submit(time.sleep, 0.2) for _ in range(20)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert any(future.cancelled() for future in queued)
    assert len(pids) == 2
    for pid in pids:  # the fork server's children, reaped by it: no /proc entry left
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_contract_the_forkserver_context_takes_a_preload_list() -> None:
    context = multiprocessing.get_context("forkserver")
    assert "forkserver" in multiprocessing.get_all_start_methods()
    context.set_forkserver_preload(["invitemail.pool"])  # a list of module names


def test_the_fork_server_can_be_started_ahead_and_workers_then_fork_from_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pool.start_server leans on ``multiprocessing.forkserver.ensure_running`` (a module
    function, not in the docs): it starts the server, with the preload set before, and
    returns at once; workers started afterwards come from that server."""
    from multiprocessing import forkserver

    assert callable(forkserver.ensure_running)
    from invitemail.campaign import CampaignRecipe

    assert CampaignRecipe.preload == "invitemail.preload"  # what `send` starts it with
    # ... which loads what the workers would each import where first used.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, invitemail.preload; print(sorted(m for m in "
         "('invitemail.campaign', 'icalendar', 'babel.dates', 'email_validator') "
         "if m in sys.modules))"], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['babel.dates', 'email_validator', 'icalendar', " \
        "'invitemail.campaign']"
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    short, long = tmp_path / "short.csv", tmp_path / "long.csv"
    short.write_text("email\n" + "a@example.org\n" * 10)
    long.write_text("email\n" + "a@example.org\n" * pool.MIN_ROWS)
    assert not pool.start_server("invitemail.preload", short)  # a few: not worth it
    assert not pool.start_server("invitemail.preload", tmp_path / "missing.csv")
    began = time.monotonic()
    assert pool.start_server("invitemail.preload", long)
    assert time.monotonic() - began < 1.0  # it does not wait for the server's imports
    here = Adder(5)
    pool.start(here, AdderRecipe(5))
    got = list(pool.ordered_map(where_and_sum, range(100), here=here,
                                recipe=AdderRecipe(5), parallel=True))
    assert [total for _, (_, total) in got] == [5 + i for i in range(100)]
    assert {pid for _, (pid, _) in got} <= set(pool.worker_pids(here))
