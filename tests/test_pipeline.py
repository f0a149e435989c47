"""Pipelined SMTP (pipeline.py) against a relay that answers whole groups at once.

The relay (support/relay.py with ``Script(group_replies=True)``) handles everything the client
sent before it answers, so :attr:`SmtpServer.writes` is the number of round trips. The
transport's hooks are the recording :class:`Journal` of support/transport.py, which checks the
transport's promises as they happen (nothing finishes twice, nothing is handed over after it
finished).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from invitemail.errors import ConfigError
from invitemail.inputs.config import Sending, load_config
from invitemail.send.transport import DeliveryReport, State, deliver
from support.event import EventBuilder, Raw
from support.relay import Answer, Cut, FakeClock, Script, SmtpServer
from support.transport import Journal, address, envelopes


def grouping_relay(**script: Any) -> SmtpServer:
    """A relay that answers each pipelined group in one write, as Postfix does."""
    return SmtpServer(script=Script(group_replies=True, **script))


async def send(relay: SmtpServer, count: int, *, concurrency: int = 1,
               max_attempts: int = 5, **smtp: Any) -> tuple[DeliveryReport, Journal]:
    clock = FakeClock()
    journal = Journal(clock)
    report = await deliver(
        envelopes(count), smtp=relay.smtp_settings(**smtp),
        sending=Sending(concurrency=concurrency, max_attempts=max_attempts),
        password=None, hooks=journal, clock=clock, sleep=clock.sleep, rng=random.Random(1),
        local_hostname="client.test")
    return report, journal


def at(verb: str, n: int, reply: str) -> Answer:
    """``reply`` to the ``n``-th ``verb`` only."""
    return lambda v, k: reply if (v, k) == (verb, n) else None


def retried(journal: Journal) -> list[str]:
    return [key for key, *_ in journal.retries]


def test_pipeline_costs_one_round_trip_per_message() -> None:
    async def scenario() -> None:
        async with grouping_relay() as relay:
            report, journal = await send(relay, 30)
        assert report.sent == 30 and relay.received() == {address(i): 1 for i in range(30)}
        # EHLO, the first group, one per message after it (its data and the next group, the
        # last one's data alone), QUIT.
        assert relay.writes == 30 + 3
        assert [key for key, _ in journal.handed_over] == [address(i) for i in range(30)]

    asyncio.run(scenario())


@pytest.mark.parametrize(("offered", "setting"), [(False, True), (True, False)])
def test_pipeline_off_or_not_offered_is_one_command_at_a_time(offered: bool,
                                                              setting: bool) -> None:
    async def scenario() -> None:
        async with grouping_relay(pipelining=offered) as relay:
            report, _ = await send(relay, 10, pipelining=setting)
        assert report.sent == 10 and relay.received() == {address(i): 1 for i in range(10)}
        assert relay.writes == 4 * 10 + 2  # MAIL, RCPT, DATA, the data; EHLO and QUIT

    asyncio.run(scenario())


def test_pipeline_with_eight_connections_delivers_each_once() -> None:
    async def scenario() -> None:
        async with grouping_relay() as relay:
            report, _ = await send(relay, 200, concurrency=8)
        assert report.sent == 200 and relay.received() == {address(i): 1 for i in range(200)}
        assert relay.connections == 8 and relay.writes <= 200 + 3 * 8

    asyncio.run(scenario())


@pytest.mark.parametrize(("verb", "reply", "state"), [
    ("MAIL", "451 4.3.0 Sender address temporarily unavailable", None),
    ("RCPT", "550 5.1.1 <x>: Recipient address rejected: User unknown", State.FAILED),
    ("RCPT", "450 4.2.0 Mailbox busy", None),
    ("DATA", "451 4.3.0 Try again later", None),
    ("DATA", "554 5.7.1 Transaction failed", State.FAILED),
    ("DOT", "451 4.3.0 Temporary failure", None),
    ("DOT", "550 5.6.0 Message content rejected", State.FAILED),
])
def test_pipeline_a_refusal_inside_a_group_ends_only_its_transaction(
        verb: str, reply: str, state: State | None) -> None:
    async def scenario() -> None:
        async with grouping_relay(answer=at(verb, 3, reply)) as relay:
            _, journal = await send(relay, 6)
        refused = address(2)
        others = [address(i) for i in range(6) if i != 2]
        if state is None:  # temporary: retried once, then sent
            assert retried(journal) == [refused]
            assert journal.retries[0][1] == reply
            assert journal.outcomes[refused].state is State.SENT
        else:
            assert journal.outcomes[refused].state is state and not journal.retries
            assert journal.outcomes[refused].reply == reply
        # The messages before and after it in the same groups are untouched, each sent once.
        assert all(journal.outcomes[key].state is State.SENT for key in others)
        assert all(journal.outcomes[key].attempts == 1 for key in others)
        assert all(relay.received()[key] == 1 for key in others)
        assert relay.received()[refused] == (1 if state is None else 0)
        assert relay.connections == 1  # no refusal cost a connection
        if verb != "DOT":  # the refused transaction was reset before the next MAIL
            assert relay.seen["RSET"] == 1

    asyncio.run(scenario())


def test_pipeline_a_refused_mail_gets_503_554_for_the_rest_of_its_group() -> None:
    async def scenario() -> None:
        reply = "451 4.1.8 <a@example.org>: Sender address rejected: Domain not found"
        async with grouping_relay(answer=at("MAIL", 2, reply)) as relay:
            report, journal = await send(relay, 3)
        # RCPT (503 need MAIL) and DATA (554 no valid recipients) of the same group were read
        # and matched to their commands: the MAIL reply is the one judged, and the next
        # message's replies stay in step.
        assert journal.retries[0][:2] == (address(1), reply)
        assert report.sent == 3 and relay.received() == {address(i): 1 for i in range(3)}
        assert relay.connections == 1

    asyncio.run(scenario())


def test_pipeline_421_mid_group_retries_both_messages_of_the_write() -> None:
    async def scenario() -> None:
        answer = at("DOT", 2, "421 4.4.2 relay.test Error: timeout exceeded")
        async with grouping_relay(answer=answer) as relay:
            report, journal = await send(relay, 5)
        # The 421 answered message 2's data; message 3's MAIL, RCPT and DATA were in the same
        # write and never answered: both go again, on a new connection.
        assert retried(journal) == [address(1), address(2)]
        assert journal.retries[1][1] == "not sent: the relay closed the connection"
        assert report.sent == 5 and relay.received() == {address(i): 1 for i in range(5)}
        assert relay.connections == 2

    asyncio.run(scenario())


# The relay drops the connection at each point of a pipelined group: (cut, the message left
# uncertain, the message retried). The uncertain one is the one whose final dot went and
# whose reply did not come; the one retried had its envelope in the same write, unanswered.
# After a 354 the connection closed: if the client sees the close before it writes the data,
# the message is retried (nothing was handed over), else it is uncertain (its dot went):
# "either" is that message. Either way the next one, whose envelope goes (or would have gone)
# in the same write as that data, is retried.
CUTS = [
    (Cut("MAIL", 1, "before"), None, 0, None),  # the first group: nothing handed over yet
    (Cut("DATA", 1, "before"), None, 0, None),
    (Cut("DATA", 1, "after"), None, None, 0),
    (Cut("MAIL", 2, "before"), 0, 1, None),  # message 1's dot was read, its 250 not written
    (Cut("RCPT", 2, "before"), 0, 1, None),
    (Cut("DATA", 2, "before"), 0, 1, None),
    (Cut("DATA", 2, "after"), None, None, 1),  # 250 for message 1, 354 for message 2
    (Cut("DOT", 2, "mid"), 1, 2, None),
    (Cut("DOT", 2, "before"), 1, 2, None),
    (Cut("DOT", 2, "after"), None, None, 2),  # 250 for message 2, 354 for message 3
    (Cut("MAIL", 6, "before"), 4, 5, None),
    (Cut("DOT", 6, "before"), 5, None, None),  # the last message's dot, on its own
]


@pytest.mark.parametrize(("cut", "uncertain", "again", "either"), CUTS, ids=lambda v: str(v))
def test_pipeline_a_drop_at_every_point_of_a_group(cut: Cut, uncertain: int | None,
                                                   again: int | None,
                                                   either: int | None) -> None:
    async def scenario() -> None:
        async with grouping_relay(cut=cut) as relay:
            _, journal = await send(relay, 6)
        nonlocal uncertain
        again_ = [] if again is None else [address(again)]
        if either is not None:
            if journal.outcomes[address(either)].state is State.UNCERTAIN:
                uncertain = either  # its data went, and the next one's envelope with it
                again_ = [address(either + 1)]
            else:  # its data and the next one's envelope never went: both are retried
                again_ = [address(either), address(either + 1)]
        states = {key: outcome.state for key, outcome in journal.outcomes.items()}
        expected = {address(i): State.SENT for i in range(6)}
        if uncertain is not None:
            expected[address(uncertain)] = State.UNCERTAIN
        assert states == expected
        assert retried(journal) == again_
        assert all(reply.startswith("connection lost before the message was handed over")
                   for _, reply, *_ in journal.retries)
        if uncertain is not None:  # handed over once (``sending``), and never again
            outcome = journal.outcomes[address(uncertain)]
            assert outcome.reply.startswith("connection lost after the message was handed")
            assert [k for k, _ in journal.handed_over].count(address(uncertain)) == 1
        # Every other message reached the relay exactly once; the uncertain one at most once.
        received = relay.received()
        assert all(received[key] == 1 for key, state in expected.items()
                   if state is State.SENT)
        assert relay.connections == (1 if cut.verb == "DOT" and cut.n == 6 else 2)

    asyncio.run(scenario())


def test_pipeline_against_aiosmtpd_drops_and_random_refusals() -> None:
    async def scenario() -> None:
        script = Script(temp_fail_rate=0.2, drop_every=7, seed=3)
        async with SmtpServer(script=script) as server:
            report, _ = await send(server, 120, concurrency=4, max_attempts=10)
        assert report.sent == 120 and report.uncertain == 0
        assert dict(server.received()) == {address(i): 1 for i in range(120)}

    asyncio.run(scenario())


# -- the setting -------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "expected"), [(None, True), (True, True), (False, False)])
def test_pipeline_setting_is_read_from_smtp(tmp_path: Path, written: bool | None,
                                            expected: bool) -> None:
    builder = EventBuilder()
    if written is not None:
        builder.set("smtp", "pipelining", written)
    path = builder.write(tmp_path).toml_path
    assert load_config(path).smtp.pipelining is expected


@pytest.mark.parametrize("value", ['"no"', "0", '"false"'])
def test_pipeline_setting_that_is_not_a_boolean_says_where(tmp_path: Path, value: str) -> None:
    path = EventBuilder().set("smtp", "pipelining", Raw(value)).write(tmp_path).toml_path
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "smtp.pipelining" in str(raised.value) and "true or false" in str(raised.value)
