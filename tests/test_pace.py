"""pace.py on a simulated clock against a simulated relay: pure Python, no sockets.

:func:`simulate` plays the transport's part: ``workers`` workers each start a message when
the pace allows it, hear the relay's answer one round trip later, report it to the pace,
and after a refusal wait the transport's own backoff (1-2 s, 2-4 s, ...) before trying the
same message again. The relay is a token bucket (``cap`` messages per second, ``burst``
messages deep) that refuses above it, and may also refuse a random fraction of messages.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invitemail.send.pace import BACKOFF, NOISE_LINKS, Pace


def backoff(attempt: int, rng: random.Random) -> float:
    """The transport's backoff: between half and all of 2 s * 2**(attempt-1)."""
    ceiling = min(120.0, 2.0 * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class Run:
    pace: Pace
    end: float = 0.0
    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)

    def steady(self) -> tuple[float, float]:
        """Over the second half of the run: messages accepted per second, and the fraction
        of attempts refused."""
        half = self.end / 2
        accepted = sum(1 for t in self.accepted if t >= half)
        refused = sum(1 for t in self.refused if t >= half)
        started = sum(1 for t in self.starts if t >= half)
        return accepted / (self.end - half), refused / max(1, started)


def simulate(messages: int, *, cap: float | None = None, burst: float | None = None,
             noise: float = 0.0, limit: float | None = None, workers: int = 8,
             rtt: float = 0.003, seed: int = 1, report_refusals: bool = True) -> Run:
    rng = random.Random(seed)
    run = Run(Pace(limit, 0.0))
    depth = burst if burst is not None else (cap or 0.0)
    bucket, filled = depth, 0.0
    events: list[tuple[float, int, str, int]] = []
    order = 0

    def later(when: float, what: str, attempt: int) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (when, order, what, attempt))

    waiting = messages
    for _ in range(min(workers, messages)):
        waiting -= 1
        later(0.0, "start", 1)
    now = 0.0
    while events:
        now, _, what, attempt = heapq.heappop(events)
        if what == "start":
            if run.pace.take(now):
                run.starts.append(now)
                later(now + rtt * (0.5 + rng.random()), "answer", attempt)
            else:
                later(now + run.pace.wait(now), "start", attempt)
            continue
        accepted = True
        if noise and rng.random() < noise:
            accepted = False
        elif cap is not None:
            bucket, filled = min(depth, bucket + (now - filled) * cap), now
            if bucket >= 1:
                bucket -= 1
            else:
                accepted = False
        if accepted:
            run.accepted.append(now)
            run.pace.delivered(now)
            attempt = 0
        else:
            run.refused.append(now)
            if report_refusals:
                run.pace.refused(now)
        if attempt == 0:
            if waiting:
                waiting -= 1
                later(now, "start", 1)
        else:
            later(now + backoff(attempt, rng), "start", attempt + 1)
    run.end = now
    assert len(run.accepted) == messages
    return run


# -- a relay that caps its rate --------------------------------------------------------------


@pytest.mark.parametrize("cap", [5, 25, 100])
@pytest.mark.parametrize(("burst_seconds", "workers", "seed"),
                         [(1.0, 8, 1), (1.0, 4, 2), (5.0, 8, 3), (2.0, 8, 4)])
def test_pace_settles_at_85_percent_of_a_relay_cap_or_more(
        cap: int, burst_seconds: float, workers: int, seed: int) -> None:
    run = simulate(cap * 60, cap=cap, burst=max(5.0, cap * burst_seconds), workers=workers,
                   seed=seed)
    rate, refused = run.steady()
    assert rate >= 0.85 * cap
    assert refused <= 0.05
    assert len(run.refused) <= 0.05 * len(run.starts)  # the start included


def test_pace_found_from_an_unpaced_start_is_under_the_cap_after_two_cuts() -> None:
    """Unpaced into a deep bucket: the first measurement is inflated by the bucket, the
    second (taken while the relay refused all along) is the cap."""
    pace = Pace(None, 0.0)
    for i in range(500):  # 500 messages in 0.5 s: the relay's burst allowance
        assert pace.take(i / 1000)
        pace.delivered(i / 1000)
    pace.refused(0.5)
    first = pace.rate
    assert first is not None and first > 100
    for i in range(50):  # during the episode, the relay takes 50 a second and refuses the rest
        pace.delivered(0.5 + (i + 1) / 50)
    pace.refused(1.6)
    assert pace.rate == pytest.approx(BACKOFF * 50 * 1.0 / 1.1, rel=0.05)
    assert pace.estimate is not None and pace.estimate < 50


# -- refusals that are not about the rate ----------------------------------------------------


@pytest.mark.parametrize(("limit", "messages"), [(None, 120), (None, 600), (10.0, 200),
                                                 (20.0, 400), (5.0, 150)])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_refusals_do_not_slow_the_run(limit: float | None, messages: int,
                                             seed: int) -> None:
    """20% of messages refused at random, each reported as a rate refusal: the run takes at
    most a quarter longer than the same run with those refusals not reported (its time is
    then the retries' backoff and the rate), and ends at the pace it started with. Telling
    such refusals from a cap takes three windows of about 20 messages each, which is most
    of the difference at 5 a second."""
    told = simulate(messages, noise=0.2, limit=limit, seed=seed)
    untold = simulate(messages, noise=0.2, limit=limit, seed=seed, report_refusals=False)
    assert told.end <= 1.25 * untold.end
    assert told.pace.rate == limit
    assert told.pace.noisy


def test_a_third_episode_in_a_row_restores_the_pace_from_before_the_first() -> None:
    pace = Pace(20.0, 0.0)
    now = 0.0

    def deliver_for(seconds: float) -> float:
        end = now + seconds
        clock = now
        while clock < end:
            if pace.take(clock):
                pace.delivered(clock)
            else:
                clock += pace.wait(clock)
        return clock

    rates = []
    for _ in range(NOISE_LINKS):
        now = deliver_for(1.5)  # a refusal every 1.5 s, whatever the pace
        pace.refused(now)
        rates.append(pace.rate)
    assert rates[0] is not None and rates[1] is not None
    assert rates[1] < rates[0] < 20.0
    assert rates[-1] == 20.0 and pace.noisy
    for _ in range(39):
        now += 0.05
        pace.delivered(now)
    assert pace.noisy  # not yet: 39 in a row
    now += 0.05
    pace.delivered(now)
    assert not pace.noisy  # 40 in a row: refusals are news again


def test_an_isolated_refusal_costs_one_cut_that_the_probe_wins_back() -> None:
    pace = Pace(20.0, 0.0)
    now = 0.0
    for _ in range(100):
        assert pace.take(now)
        pace.delivered(now)
        now += 0.05
    pace.refused(now)
    assert pace.rate == pytest.approx(BACKOFF * 20.0, rel=0.06)  # 10%, not half
    while pace.rate != 20.0:
        now += 0.05
        assert now < 30.0, "the pace did not come back"
        if pace.take(now):
            pace.delivered(now)
    assert now < 15.0


def test_a_refusal_before_anything_was_delivered_cuts_the_rate_in_force() -> None:
    pace = Pace(10.0, 0.0)
    assert pace.take(0.0)
    pace.refused(0.01)
    assert pace.rate == pytest.approx(7.0)
    pace = Pace(None, 0.0)
    pace.refused(0.0)  # nothing started, nothing delivered: nothing to go by
    assert pace.rate is None


# -- the configured rate ---------------------------------------------------------------------


@given(limit=st.floats(0.5, 200.0), steps=st.lists(
    st.tuples(st.sampled_from(["take", "delivered", "refused"]), st.floats(0.0, 0.5)),
    max_size=300))
def test_pace_never_exceeds_the_configured_rate(limit: float,
                                                 steps: list[tuple[str, float]]) -> None:
    pace = Pace(limit, 0.0)
    now = 0.0
    starts: list[float] = []
    for what, gap in steps:
        now += gap
        if what == "take":
            while not pace.take(now):
                wait = pace.wait(now)
                assert wait > 0
                now += wait
            starts.append(now)
        elif what == "delivered":
            pace.delivered(now)
        else:
            pace.refused(now)
        assert pace.rate is not None and pace.rate <= limit
    for first, second in itertools.pairwise(starts):
        assert second - first >= 1 / limit - 1e-6  # one token at a time: no bursts


@pytest.mark.parametrize("cap", [5, 25, 100])
def test_a_configured_rate_under_the_cap_is_held_exactly(cap: int) -> None:
    limit = cap * 0.8
    run = simulate(int(limit * 30), cap=cap, limit=limit)
    assert not run.refused
    rate, _ = run.steady()
    assert rate == pytest.approx(limit, rel=0.02)
    assert max(b - a for a, b in itertools.pairwise(run.starts)) < 2 / limit


def test_pace_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="above 0"):
        Pace(0.0, 0.0)
