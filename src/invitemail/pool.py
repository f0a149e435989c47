"""Building messages on every core: the only module that uses multiprocessing.

Rendering and encoding are pure CPU work, and one Python process uses one core. For a large
list the registrants go to worker processes in chunks, and the results come back in the
original order through a bounded window, so memory stays flat however long the list is.
Each worker opens the same campaign (the same files, the same ``now``), so what it builds
is byte for byte what the main process would build.

A worker lives only as long as the run that started it: it exits when its parent dies,
however it dies (``PR_SET_PDEATHSIG`` on Linux, and everywhere a thread that watches the
parent). Its address space is limited (WORKER_MEMORY above what it uses when it starts), the
backstop for a template that the sandbox's own checks let grow. Workers fork from a fork
server that is started with the environment as it is then; the CLI takes the SMTP password
out of the environment before anything starts, and nothing sent to a worker holds it.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invitemail.campaign import Built, Campaign, CampaignSpec
    from invitemail.inputs.registrants import Registrant

Inspect = Callable[["Built"], Any]

CHUNK = 64  # registrants per task: pickling costs little, and a result (1.3 MB) is small
# The first tasks are smaller, so that the first messages are back (and the sending starts)
# after a few builds, not after a whole chunk's: 4, 8, 16, 32, then CHUNK.
FIRST_CHUNK = 4
WINDOW = 3  # tasks in flight per worker: enough to keep every worker busy
# Below these, starting the workers (each imports the package and opens the campaign: about
# half a second of CPU) costs more than it saves: building a message takes a few hundred
# microseconds, checking one (rendering from the skeleton, no encoding) a few dozen.
MIN_ROWS = 1000
MIN_ROWS_CHECK = 20_000
WORKER_MEMORY = 1024 * 1024 * 1024  # address space a worker may add to what it starts with
PARENT_POLL = 0.5  # seconds between a worker's looks at whether its parent is still there


def worker_count() -> int:
    """How many processes build at once: ``INVITEMAIL_WORKERS``, else one per core."""
    configured = os.environ.get("INVITEMAIL_WORKERS", "")
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One registrant's result: ``kind`` is "ok", "template" or "header"."""

    kind: str
    value: Any  # a Built (or None when only validating), a TemplateError, or the header
    # problem's text
    inspected: Any = None  # what ``inspect`` said of the Built, when one was given


def outcomes(campaign: Campaign, registrants: Iterable[Registrant], *, encode: bool,
             test_to: str | None = None, inspect: Inspect | None = None,
             expected: int | None = None) -> Iterator[tuple[Registrant, Outcome]]:
    """Each registrant with its outcome, in order; in worker processes when it pays.

    ``inspect`` (a module-level function, so that a worker can be given it) is run on each
    built message where it was built, and its result comes back as ``Outcome.inspected``:
    reading a message back (the gallery, lint) then runs on every core too. ``expected``:
    how many registrants will come, when not the whole file.
    """
    workers = worker_count()
    spec = campaign.spec
    if spec is None or not _pays(campaign, encode, workers, expected):
        for registrant in registrants:
            yield registrant, _one(campaign, registrant, encode, test_to, inspect)
        return
    pending: deque[tuple[list[Registrant], Future[list[Outcome]]]] = deque()
    rows = iter(registrants)
    taken: list[Registrant] = []  # read from the rows and not yet in a task
    sizes = chunk_sizes()
    try:
        pool = _pool(campaign, spec, workers)
        try:
            while True:
                while len(pending) < workers * WINDOW:
                    taken = list(islice(rows, next(sizes)))
                    if not taken:
                        break
                    future = pool.submit(_run_chunk, taken, encode, test_to, inspect)
                    pending.append((taken, future))
                    taken = []
                if not pending:
                    return
                chunk, future = pending[0]
                results = future.result()
                pending.popleft()
                yield from zip(chunk, results, strict=True)
        finally:
            for _, future in pending:  # the caller stopped early: drop what is queued
                future.cancel()
    except BrokenProcessPool:
        _POOLS.pop(campaign, None)
        # The workers could not start (a script that starts the pool from its top level, as
        # multiprocessing's "safe importing of main module" describes) or died: build the
        # rest here, starting with the chunks that were in flight (and the one that was
        # being handed over when the pool said it was broken).
        rest = itertools.chain.from_iterable(chunk for chunk, _ in pending)
        for registrant in itertools.chain(rest, taken, rows):
            yield registrant, _one(campaign, registrant, encode, test_to, inspect)


def chunk_sizes() -> Iterator[int]:
    """Registrants per task, in order: FIRST_CHUNK, doubling up to CHUNK, then CHUNK."""
    size = FIRST_CHUNK
    while True:
        yield size
        size = min(CHUNK, size * 2)


# One pool per campaign, kept while the campaign lives: `send` checks every row and then
# builds the messages, and the second pass finds the workers started, with the templates
# parsed and the skeletons rendered. A pool's workers open the campaign as it was when they
# started, so a pool is never shared between two campaigns.
_POOLS: weakref.WeakKeyDictionary[Campaign, ProcessPoolExecutor] = weakref.WeakKeyDictionary()


def start_workers(campaign: Campaign) -> None:
    """Start the workers that will build ``campaign``'s messages now, so that they are ready
    when the check (which runs in this process while they start) is done."""
    workers = worker_count()
    if campaign.spec is None or not _pays(campaign, True, workers):
        return
    pool = _pool(campaign, campaign.spec, workers)
    # Submitting waits for the fork server to import the package and fork each worker:
    # that waiting is done on a thread of its own, while this one goes on with the check.
    threading.Thread(target=_submit_warm_up, args=(pool, workers), daemon=True,
                     name="invitemail-start-workers").start()


def _submit_warm_up(pool: ProcessPoolExecutor, workers: int) -> None:
    with contextlib.suppress(Exception):  # a pool that cannot start fails again, and is
        for _ in range(workers):  # replaced by building in-process, when it is used
            pool.submit(_warm)


def _pays(campaign: Campaign, encode: bool, workers: int, expected: int | None = None) -> bool:
    rows = campaign.source.rows_estimate if expected is None else expected
    return workers >= 2 and rows >= (MIN_ROWS if encode else MIN_ROWS_CHECK)


def _pool(campaign: Campaign, spec: CampaignSpec, workers: int) -> ProcessPoolExecutor:
    pool = _POOLS.get(campaign)
    if pool is None:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has imported the package once, not each on its own.
        context.set_forkserver_preload(["invitemail.campaign"])
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=_start_worker, initargs=(spec, os.getpid()))
        _POOLS[campaign] = pool
        # Waiting for the pool's own thread to end: a shutdown left running races
        # concurrent.futures' exit hook on the pool's wakeup pipe ("Bad file descriptor").
        weakref.finalize(campaign, pool.shutdown, wait=True, cancel_futures=True)
    return pool


def _one(campaign: Campaign, registrant: Registrant, encode: bool,
         test_to: str | None, inspect: Inspect | None = None) -> Outcome:
    from invitemail.errors import TemplateError
    from invitemail.mime.message import HeaderValueError

    try:
        if encode:
            built = campaign.build(registrant, test_to=test_to)
            return Outcome("ok", built, inspect(built) if inspect is not None else None)
        campaign.validate(registrant)
        return Outcome("ok", None)
    except TemplateError as err:
        return Outcome("template", TemplateError(err.message, hint=err.hint))
    except HeaderValueError as err:
        return Outcome("header", str(err))


_campaign: Campaign | None = None


def _start_worker(spec: CampaignSpec, run: int) -> None:
    """Set up a worker process: ``run`` is the pid of the process that started the pool."""
    global _campaign
    _die_with_parent(run)
    # A terminal's Ctrl-C reaches every process of the group: the main process decides
    # what it means (finish what is in flight), and a worker keeps building until told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from invitemail.campaign import Campaign
    from invitemail.render.memory import limit_process_memory

    limit_process_memory(WORKER_MEMORY)

    _campaign = Campaign.open(spec.event, template=spec.template, registrants=spec.registrants,
                              encoding=spec.encoding, delimiter=spec.delimiter, now=spec.now,
                              stage=spec.stage, attendance=spec.attendance,
                              assume=spec.assume, sheet=spec.sheet)


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


WARM_ROWS = 200  # rows a worker looks through for the languages to build once at start


def _warm() -> None:
    """Build the first registrant's message in each language of the first rows and throw
    them away: those templates are parsed and their skeletons rendered before the first
    real chunk arrives. (A failure is the check's to report.)"""
    from invitemail.inputs.registrants import unique_registrants

    assert _campaign is not None, "the worker was started without its campaign"
    languages: set[str] = set()
    with contextlib.suppress(Exception):
        for registrant in islice(unique_registrants(_campaign.source), WARM_ROWS):
            if registrant.language not in languages:
                languages.add(registrant.language)
                _campaign.build(registrant)


def _run_chunk(chunk: list[Registrant], encode: bool, test_to: str | None,
               inspect: Inspect | None) -> list[Outcome]:
    assert _campaign is not None, "the worker was started without its campaign"
    return [_one(_campaign, registrant, encode, test_to, inspect) for registrant in chunk]
