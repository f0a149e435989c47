"""An ordered map on every core: the only module that uses multiprocessing.

Rendering and encoding are pure CPU work, and one Python process uses one core. For a long
list the items go to worker processes in chunks, and the results come back in the original
order through a bounded window, so memory stays flat however long the list is.

The pool knows nothing of what it runs. Its caller gives it three things, all picklable:

- a *recipe*: a callable that each worker calls once when it starts, and that opens what the
  steps run on (for invitemail, the campaign, opened from the same files with the same
  ``now``, so that a worker builds byte for byte what the main process would build); its
  ``preload`` attribute, if it has one, names the module the fork server imports for the
  workers (else the recipe's own module);
- a *step*: ``step(opened, item) -> result``, a module-level function or a
  :func:`functools.partial` of one;
- the object the steps run on in this process (``here``): the fallback when workers do not
  pay or die, and the owner of the pool, which lives as long as ``here`` does.

A worker lives only as long as the run that started it: it exits when its parent dies,
however it dies (``PR_SET_PDEATHSIG`` on Linux, and everywhere a thread that watches the
parent). Its address space is limited (WORKER_MEMORY above what it uses when it starts), the
backstop for a template that the sandbox's own checks let grow. Workers fork from a fork
server that is started with the environment as it is then; the CLI takes the SMTP password
out of the environment before anything starts, and nothing sent to a worker holds it.

Everything here uses the documented API of :mod:`concurrent.futures` and
:mod:`multiprocessing`, except :func:`worker_pids` and :func:`broken` at the end (for tests
that kill workers) and :func:`_widen_result_pipe` (a speed-up that does nothing when what it
reads is gone); tests/test_pool_contract.py pins what those read.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, Protocol, TypeVar

from invitemail.render.memory import limit_process_memory

S = TypeVar("S")  # what the steps run on: opened once per worker by the recipe
S_co = TypeVar("S_co", covariant=True)
T = TypeVar("T")  # an item
R = TypeVar("R")  # an item's result


class Recipe(Protocol[S_co]):
    """Picklable; called once in each worker process to open what the steps run on."""

    def __call__(self) -> S_co: ...


CHUNK = 64  # items per task: pickling costs little, and a result (1.3 MB) is small
# The first tasks are smaller, so that the first results are back (and the sending starts)
# after a few builds, not after a whole chunk's: 4, 8, 16, 32, then CHUNK.
FIRST_CHUNK = 4
WINDOW = 3  # tasks in flight per worker: enough to keep every worker busy
READ_AHEAD = 8192  # items ordered_map(help_here=True) reads while the workers start
# Below these, starting the workers (each imports the package and opens the campaign: about
# half a second of CPU) costs more than it saves: building a message takes a few hundred
# microseconds, checking one (rendering from the skeleton, no encoding) a few dozen.
MIN_ROWS = 1000
MIN_ROWS_CHECK = 20_000
WORKER_MEMORY = 1024 * 1024 * 1024  # address space a worker may add to what it starts with
# Workers run at a lower priority: the process that speaks SMTP (and reads the rows) is the
# one the run waits for, and the workers' queue of built messages runs ahead of it anyway.
WORKER_NICE = 10
PARENT_POLL = 0.5  # seconds between a worker's looks at whether its parent is still there


def worker_count() -> int:
    """How many processes build at once: ``INVITEMAIL_WORKERS``, else one per core."""
    configured = os.environ.get("INVITEMAIL_WORKERS", "")
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    return max(1, min(os.cpu_count() or 1, 8))


def pays(items: int, *, light: bool = False) -> bool:
    """Whether ``items`` items are worth starting workers for: MIN_ROWS items, or
    MIN_ROWS_CHECK when each is ``light`` (a check renders without encoding)."""
    return worker_count() >= 2 and items >= (MIN_ROWS_CHECK if light else MIN_ROWS)


def ordered_map(step: Callable[[S, T], R], items: Iterable[T], *, here: S,
                recipe: Recipe[S] | None, parallel: bool,
                help_here: bool = False) -> Iterator[tuple[T, R]]:
    """Each item with ``step(opened, item)``, in order: on worker processes (each with what
    ``recipe`` opened) when ``parallel`` and there is a recipe, else with ``here`` in this
    process. Workers that cannot start or die leave nothing out: the items in flight and
    the rest are then run here, in order.

    ``help_here``: while the workers start (the fork server imports the package first,
    and handing a task over would wait for it), and while the oldest task is not back, this
    process reads up to :data:`READ_AHEAD` items ahead instead of waiting; it runs the
    oldest chunk itself when the workers are not up and it can read no more. What it read
    goes to the workers, in order, as they take more."""
    if recipe is None or not parallel:
        for item in items:
            yield item, step(here, item)
        return
    workers = worker_count()
    # Tasks in order: a worker's (a Future), one run here (its results), or one read ahead
    # and not handed over yet (None).
    pending: deque[tuple[list[T], Future[list[R]] | list[R] | None]] = deque()
    rows = iter(items)
    taken: list[T] = []  # read from the items and not yet in a task
    sizes = chunk_sizes()
    in_flight = 0  # of pending, the workers'
    ahead = 0  # items of pending read ahead
    try:
        pool = _pool(here, recipe, workers)
        try:
            while True:
                ready = not help_here or _ready(here)
                if ready:
                    for index, (chunk, task) in enumerate(pending):  # what was read ahead
                        if in_flight >= workers * WINDOW:
                            break
                        if task is None:
                            pending[index] = (chunk, pool.submit(_run_chunk, step, chunk))
                            in_flight += 1
                            ahead -= len(chunk)
                    while in_flight < workers * WINDOW:
                        taken = list(islice(rows, next(sizes)))
                        if not taken:
                            break
                        pending.append((taken, pool.submit(_run_chunk, step, taken)))
                        in_flight += 1
                        taken = []
                head = pending[0][1] if pending else None
                if help_here and ahead < READ_AHEAD and (
                        not ready or (isinstance(head, Future) and not head.done())):
                    taken = list(islice(rows, next(sizes)))  # rather than wait: read ahead
                    if taken:
                        pending.append((taken, None))
                        ahead += len(taken)
                        taken = []
                        continue
                if not pending:
                    return
                chunk, task = pending.popleft()
                if task is None:  # the workers are not up, and no more can be read ahead
                    ahead -= len(chunk)
                    results = [step(here, item) for item in chunk]
                elif isinstance(task, Future):
                    try:
                        results = task.result()
                    except BaseException:
                        pending.appendleft((chunk, task))  # for the fallback below
                        raise
                    in_flight -= 1
                else:
                    results = task
                yield from zip(chunk, results, strict=True)
        finally:
            for _, task in pending:  # the caller stopped early: drop what is queued
                if isinstance(task, Future):
                    task.cancel()
    except BrokenProcessPool:
        _POOLS.pop(here, None)
        # The workers could not start (a script that starts the pool from its top level, as
        # multiprocessing's "safe importing of main module" describes) or died: run the
        # rest here, starting with the chunks that were in flight (and the one that was
        # being handed over when the pool said it was broken).
        for chunk, task in pending:
            results = task if isinstance(task, list) else [step(here, item) for item in chunk]
            yield from zip(chunk, results, strict=True)
        for item in itertools.chain(taken, rows):
            yield item, step(here, item)


def _ready(here: object) -> bool:
    """Whether ``here``'s workers are up (handing a task over does not wait for them to
    start); a pool not started by :func:`start` starts on its first task."""
    event = _READY.get(here)
    return event is None or event.is_set()


def started(here: object) -> bool:
    """Whether ``here``'s workers were started (:func:`start`) and are not broken."""
    pool = _POOLS.get(here)
    return pool is not None and not broken(here)


def chunk_sizes() -> Iterator[int]:
    """Items per task, in order: FIRST_CHUNK, doubling up to CHUNK, then CHUNK."""
    size = FIRST_CHUNK
    while True:
        yield size
        size = min(CHUNK, size * 2)


# One pool per owner (``here``), kept while it lives: `send` checks every row and then
# builds the messages, and the second pass finds the workers started, with the templates
# parsed and the skeletons rendered. A pool's workers open what the recipe opened when they
# started, so a pool is never shared between two owners.
_POOLS: weakref.WeakKeyDictionary[Any, ProcessPoolExecutor] = weakref.WeakKeyDictionary()
# Set once a started pool's workers are up (start's thread has handed each its warm-up).
_READY: weakref.WeakKeyDictionary[Any, threading.Event] = weakref.WeakKeyDictionary()


def start_server(module: str, items_file: Path) -> bool:
    """Start the fork server now, importing ``module`` (the recipe's preload), when
    ``items_file`` (one item a line) has enough items for workers to pay; whether it did. It
    imports the package on another core while this process goes on, and workers started
    later (:func:`start`) fork from it at once instead of waiting for those imports."""
    lines = 0
    try:
        with items_file.open("rb") as file:
            while not pays(lines) and (block := file.read(1 << 16)):  # enough: stop reading
                lines += block.count(b"\n")
    except OSError:  # not there, not readable: the campaign says so when it opens
        return False
    if not pays(lines):
        return False
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module])
    try:
        forkserver.ensure_running()  # spawns the server and returns; it imports meanwhile
    except Exception:  # OSError and the like: the pool starts it when used, or runs here
        return False
    return True


def start(here: S, recipe: Recipe[S], *, warm: Callable[[S], object] | None = None) -> None:
    """Start ``here``'s workers now, so that they are ready when what runs here meanwhile
    (the check) is done; each then runs ``warm`` (picklable) on what it opened."""
    workers = worker_count()
    pool = _pool(here, recipe, workers)
    ready = _READY[here] = threading.Event()
    # Submitting waits for the fork server to import the package and fork each worker:
    # that waiting is done on a thread of its own, while this one goes on with the check.
    threading.Thread(target=_submit_warm_up, args=(pool, workers, warm, ready), daemon=True,
                     name="invitemail-start-workers").start()


def _submit_warm_up(pool: ProcessPoolExecutor, workers: int,
                    warm: Callable[[Any], object] | None, ready: threading.Event) -> None:
    try:
        with contextlib.suppress(Exception):  # a pool that cannot start fails again, and is
            for _ in range(workers):  # replaced by running in-process, when it is used
                pool.submit(_warm, warm)
    finally:
        ready.set()


def _pool(here: object, recipe: Recipe[Any], workers: int) -> ProcessPoolExecutor:
    pool = _POOLS.get(here)
    if pool is None:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported the recipe's preload (and with it
        # what the steps need) once, not each on its own.
        context.set_forkserver_preload([getattr(recipe, "preload", type(recipe).__module__)])
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=_start_worker, initargs=(recipe, os.getpid()))
        _POOLS[here] = pool
        _widen_result_pipe(pool)
        # Waiting for the pool's own thread to end: a shutdown left running races
        # concurrent.futures' exit hook on the pool's wakeup pipe ("Bad file descriptor").
        weakref.finalize(here, pool.shutdown, wait=True, cancel_futures=True)
    return pool


# -- in a worker process ---------------------------------------------------------------------

_opened: Any = None  # what the recipe opened in this worker


def _start_worker(recipe: Recipe[Any], run: int) -> None:
    """Set up a worker process: ``run`` is the pid of the process that started the pool."""
    global _opened
    _die_with_parent(run)
    # A terminal's Ctrl-C reaches every process of the group: the main process decides
    # what it means (finish what is in flight), and a worker keeps building until told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_process_memory(WORKER_MEMORY)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    _opened = recipe()


def _die_with_parent(run: int) -> None:
    """Exit when the parent (the fork server, which itself exits when the run ends) or the
    run dies, even by SIGKILL: an orphaned worker would wait for work for ever."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            # PR_SET_PDEATHSIG (1): the kernel kills this process when its parent exits.
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent, run), daemon=True,
                     name="invitemail-watch-parent").start()


def _watch_parent(parent: int, run: int) -> None:
    while True:
        if os.getppid() != parent or not _alive(run):
            os._exit(1)  # nothing to clean up: the worker holds only what it was sent
        time.sleep(PARENT_POLL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _warm(warm: Callable[[Any], object] | None) -> None:
    assert _opened is not None, "the worker was started without its recipe"
    if warm is not None:
        warm(_opened)


def _run_chunk(step: Callable[[Any, T], R], chunk: list[T]) -> list[R]:
    assert _opened is not None, "the worker was started without its recipe"
    return [step(_opened, item) for item in chunk]


# -- beyond the documented API ---------------------------------------------------------------
# ProcessPoolExecutor shows neither its processes nor whether it is broken (Python 3.11 to
# 3.13; 3.14 adds terminate_workers() and kill_workers(), still no view). These read its
# private ``_processes`` (pid -> Process, filled as workers start) and ``_broken`` (False, or
# the reason); tests/test_pool_contract.py fails first when a Python version changes them.


RESULT_PIPE = 1 << 20  # bytes: a chunk's results (CHUNK messages of ~20 KiB) in one or two reads


def _widen_result_pipe(pool: ProcessPoolExecutor) -> None:
    """Linux: let the pipe that brings the results back hold about a chunk's worth. With the
    default 64 KiB, the pool's thread here reads a chunk's 1.3 MB in twenty reads, each one
    taking the GIL back from the thread that speaks SMTP (and allocating the whole remainder
    for 64 KiB of it): about a third of what receiving the results costs this process. It
    reads the private ``_result_queue`` (a SimpleQueue) and its ``_reader`` connection; when
    either is gone, or the system refuses the size (``fs.pipe-max-size``), nothing changes."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    reader = getattr(getattr(pool, "_result_queue", None), "_reader", None)
    if setsize is None or reader is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fcntl.fcntl(reader.fileno(), setsize, RESULT_PIPE)


def worker_pids(here: object) -> list[int]:
    """The process ids of ``here``'s workers that have started (none without a pool)."""
    pool = _POOLS.get(here)
    processes: dict[int, Any] | None = getattr(pool, "_processes", None)
    return list(processes or {})


def broken(here: object) -> bool:
    """Whether ``here``'s pool has seen a worker die (it then runs nothing more)."""
    pool = _POOLS.get(here)
    return pool is not None and bool(getattr(pool, "_broken", False))
