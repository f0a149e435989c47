"""Retries that do not hold a worker (issue 12): the run's "later" queue of retries.

Against real aiosmtpd relays on 127.0.0.1 with a FakeClock, as in test_transport.py: a
retry's wait advances the fake clock at once, so the order in which things happen, not how
long they take, is what these tests look at.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from invitemail.campaign import Campaign
from invitemail.inputs.config import Sending
from invitemail.journal.store import State as RowState
from invitemail.send.delivery import SendOptions
from invitemail.send.plan import send
from invitemail.send.replies import ReplyClass
from invitemail.send.retries import RetryQueue, retry_delay
from invitemail.send.run_state import SCATTERED
from invitemail.send.transport import Envelope, Outcome, State, TooManyFailures, deliver
from support.checks import assert_exactly_once, journal_states
from support.event import NOW, event_for, rows
from support.fakes import Quiet
from support.relay import FakeClock, Script, SmtpServer
from support.transport import Journal, address, envelopes, run
from support.transport import send as deliver_to


class TimedJournal(Journal):
    """A Journal that also notes, on the fake clock, when each step happened."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.steps: list[tuple[str, str, int, float]] = []  # (what, key, attempt, when)
        self.due: dict[str, float] = {}  # key -> the not-before time of its pending retry
        self.due_at: dict[str, float] = {}  # key -> the not-before time of its last retry

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        super().handing_over(envelope, attempt)
        assert self.clock() >= self.due.pop(envelope.key, -1.0), "retried before its time"
        self.steps.append(("handing_over", envelope.key, attempt, self.clock()))

    def finished(self, outcome: Outcome) -> None:
        super().finished(outcome)
        self.steps.append(("finished", outcome.key, outcome.attempts, self.clock()))

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        super().retrying(envelope, reply, attempt, delay)
        self.due[envelope.key] = self.due_at[envelope.key] = self.clock() + delay
        self.steps.append(("retrying", envelope.key, attempt, self.clock()))

    def order(self, what: str) -> list[str]:
        return [key for step, key, _, _ in self.steps if step == what]


# -- a retry does not hold its worker --------------------------------------------------------


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_a_retry_lets_its_worker_send_the_next_messages_meanwhile(failing: int) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        async with SmtpServer(script=Script(temp_fail_first=failing)) as server:
            report, _ = await deliver_to(server, envelopes(8), journal=journal, clock=clock,
                                         sending=Sending(concurrency=1))
        refused = [address(n) for n in range(failing)]
        assert journal.states() == {State.SENT: 8} and report.retried == failing
        # one connection, the refused ones handed over again only after all the others, the
        # earliest due first
        by_due = sorted(refused, key=lambda key: journal.due_at[key])
        assert journal.order("finished") == [address(n) for n in range(failing, 8)] + by_due
        assert [t.rcpt_tos[0] for t in server.transactions] == journal.order("finished")
        assert server.connections == 1
        # nothing waited before the last new message was sent: the clock had not moved
        last_new = journal.order("finished").index(address(7))
        assert [s for s in journal.steps if s[0] == "finished"][last_new][3] == 1000.0
        assert all(journal.outcomes[key].attempts == 2 for key in refused)

    run(scenario())


def test_a_drained_worker_waits_for_the_retries_instead_of_ending() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        async with SmtpServer(script=Script(temp_fail_first=4)) as server:
            report, _ = await deliver_to(server, envelopes(4), journal=journal, clock=clock,
                                         sending=Sending(concurrency=4))
        # every message was refused once, then every worker had taken its end marker
        assert journal.states() == {State.SENT: 4} and not report.deferred
        assert sorted(server.received().values()) == [1, 1, 1, 1]
        delays = [delay for _, _, _, delay in journal.retries]
        assert len(delays) == 4
        # the waits overlapped (one worker slept until the earliest retry, the others
        # waited for it): the run took as long as the longest wait, not their sum
        assert clock() - 1000.0 == pytest.approx(max(delays))

    run(scenario())


def test_a_relay_s_try_again_after_still_sets_the_not_before_time() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        script = Script(temp_fail_first=1,
                        temp_fail_reply="451 4.3.0 Temporary failure, try again in 30 seconds")
        async with SmtpServer(script=script) as server:
            report, _ = await deliver_to(server, envelopes(3), journal=journal, clock=clock,
                                         sending=Sending(concurrency=1))
        assert report.sent == 3
        [(key, _, attempt, delay)] = journal.retries
        assert key == address(0) and attempt == 1 and 29.0 < delay <= 30.0
        assert journal.order("finished") == [address(1), address(2), address(0)]
        assert clock() - 1000.0 == pytest.approx(delay)  # and not sooner (TimedJournal)

    run(scenario())


# -- a halt while retries wait ---------------------------------------------------------------


def stop_at_first_wait(clock: FakeClock, stop: asyncio.Event
                       ) -> Callable[[float], Awaitable[None]]:
    """A sleep that sets ``stop`` (Ctrl-C) when someone first waits, then waits."""

    async def sleep(delay: float) -> None:
        if delay > 0:
            stop.set()
        await clock.sleep(delay)

    return sleep


@pytest.mark.parametrize(("concurrency", "failing"), [(1, 1), (2, 3), (4, 6)])
def test_a_halt_while_retries_wait_defers_them_all(concurrency: int, failing: int) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        stop = asyncio.Event()
        async with SmtpServer(script=Script(temp_fail_first=failing)) as server:
            report = await deliver(
                envelopes(10), smtp=server.smtp_settings(),
                sending=Sending(concurrency=concurrency), password=None, hooks=journal,
                clock=clock, sleep=stop_at_first_wait(clock, stop), rng=random.Random(1),
                stop=stop, local_hostname="client.test")
            sent = set(server.received())
        refused = {key for key, _, _, _ in journal.retries}
        assert len(refused) == failing and report.interrupted and report.stopped is None
        assert sorted(report.deferred) == sorted(refused)  # pending again, not failed
        assert not refused & set(journal.outcomes)
        assert journal.states() == {State.SENT: 10 - failing}
        assert sent == set(journal.outcomes)

    run(scenario())


def test_a_halt_while_retries_wait_leaves_them_pending_and_a_rerun_sends_each_once(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        folder = tmp_path / "event"
        async with SmtpServer(script=Script(temp_fail_first=3)) as server:
            event_for(server, folder, rows(12), sending="concurrency = 2\nmax_attempts = 5\n")
            clock = FakeClock()
            stop = asyncio.Event()
            first = await send(Campaign.open(folder, now=NOW), password=None,
                               options=SendOptions(), progress=Quiet(), stop=stop,
                               clock=clock, sleep=stop_at_first_wait(clock, stop))
            assert first.interrupted and first.sent == 9
            states = journal_states(folder)
            waiting = sorted(a for a, state in states.items() if state is RowState.PENDING)
            assert len(waiting) == 3 and RowState.FAILED not in states.values()
            assert not set(waiting) & set(server.received())

            clock = FakeClock()
            second = await send(Campaign.open(folder, now=NOW), password=None,
                                options=SendOptions(), progress=Quiet(), clock=clock,
                                sleep=clock.sleep)
            assert second.complete and second.sent == 3
            assert_exactly_once(server, [f"user{i}@example.org" for i in range(12)])
        assert set(journal_states(folder).values()) == {RowState.SENT}

    run(scenario())


# -- exactly once, and the attempts still counted ---------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 8])
@pytest.mark.parametrize("seed", [3, 11])
def test_random_451s_leave_exactly_one_message_per_recipient(concurrency: int,
                                                             seed: int) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        async with SmtpServer(script=Script(temp_fail_rate=0.2, seed=seed)) as server:
            report, _ = await deliver_to(
                server, envelopes(200), journal=journal, clock=clock,
                sending=Sending(concurrency=concurrency, max_attempts=12))
        failures = server.handler.temp_failures
        assert failures > 20 and server.max_concurrent <= concurrency
        assert journal.states() == {State.SENT: 200} and not report.deferred
        assert dict(server.received()) == {address(n): 1 for n in range(200)}
        assert report.retried == len(journal.retries) == failures
        # each message: attempts 1, 2, ... handed over in turn, a retry between each two
        for n in range(200):
            key = address(n)
            handed = [a for step, k, a, _ in journal.steps if k == key and step == "handing_over"]
            retried = [a for step, k, a, _ in journal.steps if k == key and step == "retrying"]
            assert handed == list(range(1, len(handed) + 1))
            assert retried == handed[:-1] and journal.outcomes[key].attempts == len(handed)
            assert [s for s in journal.steps if s[1] == key][-1][0] == "finished"

    run(scenario())


@pytest.mark.parametrize(("reply", "reply_class"), [
    ("451 4.3.0 <{address}>: Temporary lookup failure", ReplyClass.TRANSIENT),
    ("450 4.2.0 <{address}>: Recipient address rejected: Greylisted",
     ReplyClass.RECIPIENT_TEMPORARY),
])
@pytest.mark.parametrize("max_attempts", [1, 3, 5])
def test_max_attempts_still_ends_in_failed_for_a_recipient_refused_every_time(
        reply: str, reply_class: ReplyClass, max_attempts: int) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        refused = {address(2), address(5)}
        script = Script(reject=set(refused), reject_reply=reply)
        async with SmtpServer(script=script) as server:
            report, _ = await deliver_to(
                server, envelopes(8), journal=journal, clock=clock,
                sending=Sending(concurrency=2, max_attempts=max_attempts))
        assert (report.sent, report.failed) == (6, 2) and not report.deferred
        for key in refused:
            outcome = journal.outcomes[key]
            assert outcome.state is State.FAILED and outcome.attempts == max_attempts
            assert outcome.reply == reply.format(address=key)
            assert server.received_by(key) == 0
            delays = [d for k, _, _, d in journal.retries if k == key]
            assert len(delays) == max_attempts - 1
            base = 0.05 if reply_class is ReplyClass.TRANSIENT else 2.0
            for attempt, delay in enumerate(delays, start=1):
                assert base * 2 ** (attempt - 2) <= delay <= base * 2 ** (attempt - 1)

    run(scenario())


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_a_relay_refusing_everything_is_backed_off_from_not_raced_through(
        concurrency: int) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        script = Script(fail_every_rcpt="451 4.3.0 <{address}>: Temporary lookup failure")
        async with SmtpServer(script=script) as server:
            report, _ = await deliver_to(
                server, envelopes(100), journal=journal, clock=clock,
                sending=Sending(concurrency=concurrency, max_attempts=50,
                                max_consecutive_failures=20))
        assert isinstance(report.stopped, TooManyFailures) and not journal.outcomes
        tried = {key for key, _, _, _ in journal.retries}
        # a few messages were tried before the failures in a row showed that the relay
        # refuses everything; after that every worker waited out its retry's delay
        assert len(tried) <= max(SCATTERED, concurrency) + concurrency
        assert sorted(report.deferred) == sorted(tried)  # pending again, not failed
        assert clock() - 1000.0 > 1.0

    run(scenario())


def test_a_relay_refusing_everything_for_seconds_is_waited_out_not_given_up_on() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = TimedJournal(clock)
        script = Script(fail_every_rcpt="451 4.3.0 <{address}>: Temporary lookup failure")

        def recover_after_5_seconds(envelope: Envelope) -> None:
            if clock() >= 1005.0:
                script.fail_every_rcpt = None

        journal.on_retrying = recover_after_5_seconds
        async with SmtpServer(script=script) as server:
            report, _ = await deliver_to(
                server, envelopes(40), journal=journal, clock=clock,
                sending=Sending(concurrency=4, max_attempts=10, max_consecutive_failures=20))
        assert report.stopped is None and journal.states() == {State.SENT: 40}
        assert dict(server.received()) == {address(n): 1 for n in range(40)}
        assert 0 < server.handler.rejections < 20

    run(scenario())


# -- the pure parts --------------------------------------------------------------------------


def test_retry_delay_is_short_first_for_a_transient_failure_then_exponential() -> None:
    rng = random.Random(5)
    for reply_class, base in ((ReplyClass.TRANSIENT, 0.05),
                              (ReplyClass.RECIPIENT_TEMPORARY, 2.0),
                              (ReplyClass.SENDER_RATE, 2.0)):
        for attempt in range(1, 14):
            ceiling = min(120.0, base * 2 ** (attempt - 1))
            assert ceiling / 2 <= retry_delay(attempt, reply_class, rng) <= ceiling


def test_retry_queue_gives_the_earliest_due_item_first_and_ties_in_order() -> None:
    queue: RetryQueue[str] = RetryQueue()
    assert queue.earliest() is None and queue.pop_due(1e9) is None
    for when, item in ((5.0, "c"), (1.0, "a"), (3.0, "b1"), (3.0, "b2"), (9.0, "d")):
        queue.push(when, item)
    assert len(queue) == 5 and queue.earliest() == 1.0
    assert queue.pop_due(0.5) is None  # nothing due yet
    assert [queue.pop_due(4.0) for _ in range(4)] == ["a", "b1", "b2", None]
    assert queue.drain() == ["c", "d"] and len(queue) == 0
