"""The pace of a run: how fast messages start, and how the relay's limit is found.

Pure: no I/O; the clock is passed in (:class:`Pace` takes ``now`` in every call,
:class:`RateLimiter` is given ``clock`` and ``sleep``), so the tests drive it with a simulated
clock and a simulated relay.

**The bucket.** Messages start from a token bucket that holds one token and fills at the
pace (messages per second), so the pace holds over any window, not just on average. Without
a configured rate and before the relay has refused anything the run is unpaced. The pace is
never above the configured rate (``sending.rate``).

**A rate refusal** is a reply with which the relay says "slow down" (:meth:`Pace.refused`).
A relay that caps its rate refuses only above its cap, so:

1. *Episodes.* Refusals within one window of the first are one episode (workers in flight
   together report the same excess): the pace reacts at most once per window. The window
   holds about :data:`WINDOW_MESSAGES` messages at the pace, and lasts at least
   :data:`WINDOW_MIN` seconds.
2. *Measure where refusals begin.* At the first refusal of an episode the pace becomes
   :data:`BACKOFF` (0.9) times the rate the relay *delivered* (accepted) over the last window,
   and that rate is the estimate of the cap. When the episode follows another one directly
   (refusals went on after the first cut), the delivered rate is measured since the first
   cut, when the relay was refusing all along and so accepting exactly its cap: the second
   cut lands just under the cap even when the first measurement was inflated by the relay's
   burst allowance. With no delivered rate to go by (the very first messages refused), the
   pace becomes :data:`BLIND_BACKOFF` (0.7) times the rate in force; never below
   :data:`MIN_RATE`.
3. *Probe upward slowly.* The first window without a refusal brings a pace that is below 0.9
   times the estimate (after a blind cut) up to that; each further one adds ``k`` times
   :data:`PROBE` (1%) of the estimate, ``k`` counting the quiet windows since the last cut
   (1%, 2%, 3%, ...), up to the configured rate. Near the cap the pace creeps; far below it
   (an estimate that was low, a relay that raised its cap) it speeds up. When the pace
   crosses the cap the relay's own bucket drains, the next refusal starts a new episode, and
   the pace is cut to 0.9 times what was delivered. The pace therefore runs between about
   0.9 and 1.0 of the cap, and the refusals are the few that each crossing costs.
4. *Refusals that are not about the rate.* A cap stops refusing once the pace is cut below
   it. If refusals go on through :data:`NOISE_LINKS` (3) episodes in a row, each starting
   within two windows of the last one's end, two cuts did not stop them: they come whatever
   the pace (a relay failing some fraction of messages at random, say). The pace goes back
   to the configured rate (unpaced without one) and ignores refusals until
   :data:`NOISE_CLEAR` (40) messages in a row were delivered. An isolated refusal costs one
   cut by 10%, which the probe wins back within a few windows; a steady stream of such
   refusals costs two windows at a slower pace, once.

What a refusal is, is the caller's decision (:mod:`invitemail.send.run_state` judges the
replies). A relay whose random refusals are also above its cap is seen as refusing at
random: the per-message retries still deliver everything, at the cap. A relay whose bucket
holds only a message or two, met unpaced by many workers, can make the second measurement
low (the retries of the first refusals are still waiting out their backoff); the probe then
climbs back at a few percent per window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = [
    "BACKOFF",
    "BLIND_BACKOFF",
    "MIN_RATE",
    "NOISE_CLEAR",
    "NOISE_LINKS",
    "PROBE",
    "WINDOW_MESSAGES",
    "WINDOW_MIN",
    "Pace",
    "RateLimiter",
]

WINDOW_MIN: float = 1.0  # seconds: the shortest window
WINDOW_MESSAGES: int = 20  # a window holds about this many messages at the pace
WINDOW_MAX: float = 60.0  # seconds: the longest window (a very slow pace)
BACKOFF: float = 0.9  # the pace after a refusal, times the delivered rate
BLIND_BACKOFF: float = 0.7  # the pace after a refusal, times the pace, when nothing was delivered
PROBE: float = 0.01  # of the estimate, times the quiet windows since the last cut
NOISE_LINKS: int = 3  # this many episodes in a row: the refusals are not about the rate
NOISE_CLEAR: int = 40  # ...until this many messages in a row were delivered
MIN_RATE: float = 0.05  # messages per second; the pace never goes below this
_HISTORY: int = 4096  # timestamps kept (deliveries, starts)


def _rate_since(times: deque[float], since: float, now: float) -> float | None:
    """Events per second in ``(since, now]``; None without two events or any time to go by."""
    count = 0
    for stamp in reversed(times):
        if stamp <= since:
            break
        count += 1
    span = now - since
    if count < 2 or span <= 0:
        return None
    return count / span


class Pace:
    """The pace of one run; every method is given the time (``now``, in seconds)."""

    def __init__(self, limit: float | None, now: float, *, burst: float = 1.0) -> None:
        if limit is not None and limit <= 0:
            raise ValueError("rate must be above 0")
        self._limit = limit
        self._rate = limit
        self._burst = burst
        self._tokens = burst
        self._updated = now
        self._started = now
        self._deliveries: deque[float] = deque(maxlen=_HISTORY)
        self._starts: deque[float] = deque(maxlen=_HISTORY)
        self._estimate: float | None = None
        self._episode_end = float("-inf")  # refusals before this belong to the last episode
        self._gap = 0.0  # a refusal within this long after the episode's end: the next link
        self._links = 0  # episodes in a row
        self._episode_start = now
        self._quiet_since = now  # the last refusal, cut or probe step
        self._steps = 0  # probe steps since the last cut
        self.noisy = False  # refusals are going on whatever the pace
        self._clean = 0  # messages delivered since the last refusal
        self.refusals = 0

    # -- what the caller reads -------------------------------------------------------------

    @property
    def limit(self) -> float | None:
        """The configured rate (None: none)."""
        return self._limit

    @property
    def rate(self) -> float | None:
        """The pace in force (None: unpaced)."""
        return self._rate

    @property
    def estimate(self) -> float | None:
        """The relay's cap as last measured (None: it has not refused yet)."""
        return self._estimate

    # -- starting messages -----------------------------------------------------------------

    def take(self, now: float) -> bool:
        """Start a message now if the pace allows it."""
        self._probe(now)
        self._refill(now)
        if self._rate is not None:
            if self._tokens < 1.0 - 1e-9:  # float dust must not cost another sleep
                return False
            self._tokens = max(0.0, self._tokens - 1.0)
        self._starts.append(now)
        return True

    def wait(self, now: float) -> float:
        """Seconds until :meth:`take` can succeed (0 when unpaced)."""
        if self._rate is None:
            return 0.0
        self._refill(now)
        return max(1e-6, (1.0 - self._tokens) / self._rate)

    # -- what the relay said ---------------------------------------------------------------

    def delivered(self, now: float) -> None:
        """The relay accepted a message."""
        self._deliveries.append(now)
        self._clean += 1
        if self.noisy and self._clean >= NOISE_CLEAR:
            self.noisy, self._links = False, 0
        self._probe(now)

    def refused(self, now: float) -> None:
        """The relay refused a message because of the rate ("slow down")."""
        self.refusals += 1
        self._quiet_since = now
        self._clean = 0
        if now < self._episode_end:
            return  # the same episode
        if now < self._episode_end + self._gap or self.noisy:
            self._links += 1
        else:
            self._links = 1
        window = self._window(now)
        last_start, self._episode_start = self._episode_start, now
        self._episode_end, self._gap = now + window, 2 * window
        if self._links >= NOISE_LINKS:  # cuts do not stop them: not about the rate
            if not self.noisy:
                self.noisy = True
                self._set(self._limit, now)
            return
        if self._links == 1:
            delivered = _rate_since(self._deliveries, max(now - window, self._started), now)
        else:
            delivered = _rate_since(self._deliveries, last_start, now)
        if delivered is not None:
            self._estimate = delivered
            pace = BACKOFF * delivered
        else:
            current = self._rate if self._rate is not None else self._start_rate(now, window)
            if current is None:
                return  # nothing to go by yet; the next refusal will have
            self._estimate = current
            pace = BLIND_BACKOFF * current
        if self._rate is not None:
            pace = min(pace, self._rate)
        self._set(max(MIN_RATE, pace), now)
        # A new episode window at the new pace (a slower pace needs a longer one).
        window = self._window(now)
        self._episode_end, self._gap = now + window, 2 * window

    # -- inside ----------------------------------------------------------------------------

    def _set(self, pace: float | None, now: float) -> None:
        self._refill(now)
        if pace is not None and self._limit is not None:
            pace = min(pace, self._limit)
        self._rate = pace
        self._tokens = min(self._tokens, self._burst)
        self._steps = 0
        self._quiet_since = now

    def _window(self, now: float) -> float:
        rate = self._rate if self._rate is not None else self._start_rate(now, WINDOW_MIN)
        if not rate:
            return WINDOW_MIN
        return min(WINDOW_MAX, max(WINDOW_MIN, WINDOW_MESSAGES / rate))

    def _start_rate(self, now: float, window: float) -> float | None:
        return _rate_since(self._starts, max(now - window, self._started), now)

    def _probe(self, now: float) -> None:
        """After a quiet window, raise the pace a little (more the longer it stays quiet)."""
        if self._rate is None or self.noisy:
            return
        if self._limit is not None and self._rate >= self._limit:
            return
        if now - self._quiet_since < self._window(now):
            return
        self._refill(now)
        if self._estimate is not None and self._rate < BACKOFF * self._estimate:
            self._rate = BACKOFF * self._estimate  # back to just under the estimate
        else:
            self._steps += 1
            base = self._estimate if self._estimate is not None else self._rate
            self._rate += PROBE * self._steps * base
        if self._limit is not None:
            self._rate = min(self._rate, self._limit)
        self._quiet_since = now

    def _refill(self, now: float) -> None:
        if self._rate is None:
            self._tokens = self._burst
        else:
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now


class RateLimiter:
    """A :class:`Pace` shared by the workers of one run, on an injected clock.

    ``rate`` is the configured rate in messages per second (``None``: no cap).
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        burst: float = 1.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.pace = Pace(rate, clock(), burst=burst)
        self._lock = asyncio.Lock()

    @property
    def limit(self) -> float | None:
        """The configured rate."""
        return self.pace.limit

    @property
    def rate(self) -> float | None:
        """The pace in force now (below :attr:`limit` while the relay's cap is lower)."""
        return self.pace.rate

    @property
    def throttles(self) -> int:
        """Rate refusals reported so far."""
        return self.pace.refusals

    def try_acquire(self) -> bool:
        """Start a message if the pace allows it now and nobody is waiting; never waits."""
        if self._lock.locked():
            return False
        return self.pace.take(self._clock())

    async def acquire(self) -> None:
        """Wait for the pace to allow a message, in turn with the other workers."""
        async with self._lock:
            while True:
                now = self._clock()
                if self.pace.take(now):
                    return
                await self._sleep(self.pace.wait(now))

    def throttled(self) -> None:
        """The relay said "slow down"."""
        self.pace.refused(self._clock())

    def succeeded(self) -> None:
        """The relay accepted a message."""
        self.pace.delivered(self._clock())
