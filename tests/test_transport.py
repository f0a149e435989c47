"""transport.py against real aiosmtpd servers on 127.0.0.1, in the test's own event loop.

Time is a FakeClock: backoff, rate limiting and throttling pauses advance it instead of
sleeping, so the runs are fast and the rates exact. Only the network timeouts are real.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from invitemail.inputs.config import Sending, Smtp
from invitemail.send.envelope import Envelope, dot_stuff
from invitemail.send.errors import (
    AuthenticationError,
    ConnectError,
    InsecureAuthError,
    TooManyFailures,
)
from invitemail.send.outcomes import Outcome, State
from invitemail.send.pace import RateLimiter
from invitemail.send.redaction import format_reply, redact
from invitemail.send.retries import backoff_delay
from support.ports import free_port
from support.relay import FakeClock, Script, SmtpServer
from support.transport import SENDER, Journal, address, envelopes, message, run, send

USER = "arrangementer@example.org"
PASSWORD = "Kx7-very-secret-pw"


# -- the happy path --------------------------------------------------------------------------


def test_deliver_hands_over_the_exact_bytes_once_per_recipient() -> None:
    async def scenario() -> None:
        utf8 = Envelope("ø", SENDER, "soren@example.org",
                        "Subject: Hej\r\n\r\nSøren, vi ses.\r\n..\r\n.\r\n".encode())
        async with SmtpServer() as server:
            report, journal = await send(server, [*envelopes(20), utf8])
        assert (report.sent, report.failed, report.uncertain, report.retried) == (21, 0, 0, 0)
        assert all(o.state is State.SENT and o.attempts == 1 for o in journal.outcomes.values())
        assert journal.outcomes[address(0)].reply.startswith("250 2.0.0 Ok: queued as")
        by_recipient = {t.rcpt_tos: t for t in server.transactions}
        assert len(server.transactions) == 21
        for envelope in [*envelopes(20), utf8]:
            transaction = by_recipient[(envelope.recipient,)]
            assert transaction.data == envelope.data
            assert transaction.mail_from == SENDER
        assert sorted(journal.handed_over) == sorted((k, 1) for k in journal.outcomes)

    run(scenario())


def test_deliver_reuses_one_connection_per_worker_and_never_exceeds_concurrency() -> None:
    async def scenario() -> None:
        async with SmtpServer() as server:
            report, _ = await send(server, envelopes(1000), sending=Sending(concurrency=4))
        assert report.sent == 1000
        assert server.max_concurrent <= 4
        assert report.connections == server.connections <= 4 * 2
        assert len(set(server.received())) == 1000

    run(scenario())


# -- temporary failures ----------------------------------------------------------------------


def test_deliver_retries_random_451s_until_every_recipient_has_exactly_one() -> None:
    async def scenario() -> None:
        script = Script(temp_fail_rate=0.10, seed=7)
        async with SmtpServer(script=script) as server:
            report, journal = await send(
                server, envelopes(300), sending=Sending(concurrency=4, max_attempts=8))
        assert server.handler.temp_failures > 10
        assert journal.states() == {State.SENT: 300}
        assert set(server.received().values()) == {1} and len(server.received()) == 300
        assert report.retried == len(journal.retries) == server.handler.temp_failures
        assert report.throttled == 0  # a generic "451 4.3.0" is transient: nobody slows down
        assert all(reply.startswith("451 4.3.0") for _, reply, _, _ in journal.retries)
        # the 451 came after the data, so each retry was handed over again
        assert len(journal.handed_over) == 300 + server.handler.temp_failures

    run(scenario())


def test_deliver_reconnects_when_the_server_drops_every_37th_message() -> None:
    async def scenario() -> None:
        async with SmtpServer(script=Script(drop_every=37)) as server:
            report, journal = await send(server, envelopes(300), sending=Sending(concurrency=3))
        assert journal.states() == {State.SENT: 300}
        assert set(server.received().values()) == {1} and len(server.received()) == 300
        assert report.connections >= 300 // 37
        assert server.max_concurrent <= 3

    run(scenario())


def test_deliver_backs_off_when_the_first_connections_get_421() -> None:
    async def scenario() -> None:
        async with SmtpServer(script=Script(refuse_connections=3)) as server:
            report, journal = await send(server, envelopes(10), sending=Sending(concurrency=1))
        assert journal.states() == {State.SENT: 10}
        assert journal.outcomes[address(0)].attempts == 4
        assert [r[1] for r in journal.retries] == ["421 4.7.0 Too many connections, try again "
                                                   "later"] * 3
        delays = [r[3] for r in journal.retries]
        assert delays == sorted(delays) and delays[0] > 0  # exponential backoff
        # "Too many connections" asks for fewer connections, not a slower rate; with one
        # connection there is none to give up, so the worker backs off and tries again.
        assert report.retried == 3 and report.throttled == 0
        assert server.connections == 4 and report.connections == 1
        assert set(server.received().values()) == {1}

    run(scenario())


def test_deliver_retries_a_timeout_before_the_data_was_handed_over() -> None:
    async def scenario() -> None:
        async with SmtpServer(script=Script(mail_delay=0.6, mail_delay_count=1)) as server:
            _, journal = await send(
                server, envelopes(3), sending=Sending(concurrency=1),
                smtp=server.smtp_settings(timeout=0.2))
        first = journal.outcomes[address(0)]
        assert first.state is State.SENT and first.attempts == 2
        assert journal.retries[0][1].startswith("timed out before the message was handed over")
        assert set(server.received().values()) == {1} and len(server.received()) == 3

    run(scenario())


# -- permanent failures and uncertainty ------------------------------------------------------


def test_deliver_fails_only_the_refused_addresses_and_sends_them_when_retried() -> None:
    async def scenario() -> None:
        refused = {address(3), address(50), address(99)}
        script = Script(reject=set(refused))
        async with SmtpServer(script=script) as server:
            report, journal = await send(server, envelopes(100))
            assert (report.sent, report.failed) == (97, 3)
            for key in refused:
                outcome = journal.outcomes[key]
                assert outcome.state is State.FAILED and outcome.attempts == 1
                assert outcome.reply == (f"550 5.1.1 <{key}>: Recipient address rejected: "
                                         "User unknown")
                assert server.received_by(key) == 0
            assert not journal.retries

            script.refusing = False  # the relay's administrator fixed it; retry the failed
            retry = [e for e in envelopes(100) if e.key in refused]
            report, again = await send(server, retry)
        assert report.sent == 3 and set(again.outcomes) == refused
        assert set(server.received().values()) == {1} and len(server.received()) == 100

    run(scenario())


@pytest.mark.parametrize("pipelining", [False, True])
def test_connection_lost_after_the_data_is_uncertain_and_not_retried(pipelining: bool) -> None:
    async def scenario() -> None:
        script = Script(vanish_after_data=1, pipelining=pipelining)
        async with SmtpServer(script=script) as server:
            report, journal = await send(server, envelopes(5), sending=Sending(concurrency=1))
        first = journal.outcomes[address(0)]
        assert first.state is State.UNCERTAIN and first.attempts == 1
        assert first.reply.startswith("connection lost after the message was handed over")
        # Pipelined, the next message's MAIL, RCPT and DATA went with the first one's data:
        # not handed over, so it is retried (and sent once).
        assert [key for key, *_ in journal.retries] == ([address(1)] if pipelining else [])
        assert all(reply.startswith("connection lost before the message was handed over")
                   for _, reply, *_ in journal.retries)
        assert journal.outcomes[address(1)].state is State.SENT
        assert server.received_by(address(0)) == 1  # the relay has it: resending would duplicate
        assert (report.sent, report.uncertain) == (4, 1)

    run(scenario())


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_timeout_after_the_data_is_uncertain(pipelining: bool) -> None:
    async def scenario() -> None:
        script = Script(reply_delay=0.6, reply_delay_count=1, pipelining=pipelining)
        async with SmtpServer(script=script) as server:
            report, journal = await send(
                server, envelopes(3), sending=Sending(concurrency=1),
                smtp=server.smtp_settings(timeout=0.2))
        first = journal.outcomes[address(0)]
        assert first.state is State.UNCERTAIN and first.attempts == 1
        assert first.reply.startswith("timed out after the message was handed over")
        # Pipelined, the second message's envelope went in the same write: retried once.
        assert (report.sent, report.uncertain, report.retried) == (2, 1, int(pipelining))
        assert server.received_by(address(1)) == 1

    run(scenario())


def test_too_many_failures_in_a_row_stop_the_run_quoting_the_last_reply() -> None:
    async def scenario() -> None:
        script = Script(fail_every_rcpt="554 5.7.1 <{address}>: Relay access denied")
        async with SmtpServer(script=script) as server:
            report, journal = await send(
                server, envelopes(50),
                sending=Sending(concurrency=2, max_consecutive_failures=5))
        assert isinstance(report.stopped, TooManyFailures)
        assert "5 failed attempts in a row" in str(report.stopped)
        assert "554 5.7.1" in str(report.stopped) and report.stopped.reply.startswith("554 5.7.1")
        assert f"127.0.0.1:{server.port}" in str(report.stopped)
        assert 5 <= report.failed <= 6 and report.sent == 0
        assert set(journal.states()) == {State.FAILED}
        assert server.handler.rejections == report.failed  # nothing tried after the stop
        assert not server.transactions

    run(scenario())


# -- stopping --------------------------------------------------------------------------------


def test_stop_event_finishes_in_flight_and_loses_nothing() -> None:
    async def scenario() -> None:
        pulled = 0

        def lazily() -> Iterator[Envelope]:
            nonlocal pulled
            for envelope in envelopes(100_000):
                pulled += 1
                yield envelope

        stop = asyncio.Event()
        clock = FakeClock()
        journal = Journal(clock)

        def ctrl_c_after_50(outcome: Outcome) -> None:
            if len(journal.outcomes) == 50:
                stop.set()

        journal.on_finished = ctrl_c_after_50
        async with SmtpServer() as server:
            report, journal = await send(server, lazily(), stop=stop, journal=journal,
                                         clock=clock, sending=Sending(concurrency=4))
        assert report.interrupted and report.stopped is None
        assert 50 <= len(journal.outcomes) <= 50 + 4
        assert journal.states() == {State.SENT: len(journal.outcomes)}
        # the server has exactly the messages reported sent, each once
        assert dict(server.received()) == {key: 1 for key in journal.outcomes}
        # A bounded queue, not list(envelopes): the queue, each worker's message and, on a
        # pipelining relay, each worker's next one (its data waits for the write after).
        assert pulled <= 50 + 4 * 4 + 4 * 2 + 1

    run(scenario())


def test_stop_during_a_retry_wait_defers_the_envelope_without_a_final_outcome() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        clock = FakeClock()
        journal = Journal(clock)
        journal.on_retrying = lambda _: stop.set()
        async with SmtpServer(script=Script(temp_fail_first=1)) as server:
            report, journal = await send(server, envelopes(5), stop=stop, journal=journal,
                                         clock=clock, sending=Sending(concurrency=1))
        assert report.interrupted
        assert report.deferred == [address(0)] and not journal.outcomes
        assert not server.transactions

    run(scenario())


def test_a_failing_hook_stops_the_run_and_is_raised() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = Journal(clock)

        def disk_full(outcome: Outcome) -> None:
            if len(journal.outcomes) == 3:
                raise OSError("disk full")

        journal.on_finished = disk_full
        async with SmtpServer() as server:
            with pytest.raises(OSError, match="disk full"):
                await send(server, envelopes(100), journal=journal, clock=clock)
        assert len(server.transactions) <= 3 + 4

    run(scenario())


def test_a_failing_handing_over_hook_is_raised_not_retried() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        journal = Journal(clock)
        calls = 0

        def handing_over(envelope: Envelope, attempt: int) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError("journal is read-only")

        journal.handing_over = handing_over  # type: ignore[method-assign]
        async with SmtpServer() as server:
            with pytest.raises(OSError, match="read-only"):
                await send(server, envelopes(50), journal=journal, clock=clock,
                           sending=Sending(concurrency=1))
        assert not journal.retries and len(server.transactions) == 2

    run(scenario())


def test_an_address_the_relay_cannot_take_fails_permanently() -> None:
    async def scenario() -> None:
        utf8 = Envelope("søren", SENDER, "søren@example.org", message("søren@example.org"))
        async with SmtpServer() as server:  # aiosmtpd offers no SMTPUTF8 by default
            report, journal = await send(server, [utf8, *envelopes(2)])
        outcome = journal.outcomes["søren"]
        assert outcome.state is State.FAILED and "SMTPUTF8" in outcome.reply
        assert report.sent == 2

    run(scenario())


def test_the_threaded_server_fixture_works_for_asyncio_run_callers(
        start_smtp_server: Any) -> None:
    server = start_smtp_server(script=Script(drop_every=5), tls="tls", auth=(USER, PASSWORD))
    report, journal = run(send(server, envelopes(12), password=PASSWORD,
                               sending=Sending(concurrency=2)))
    assert journal.states() == {State.SENT: 12}
    assert set(server.received().values()) == {1} and len(server.received()) == 12
    assert server.connections == report.connections >= 3
    assert all(t.tls and t.user == USER for t in server.transactions)


# -- TLS and credentials ---------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_deliver_over_tls_verifies_with_the_ca_file(security: Any) -> None:
    async def scenario() -> None:
        async with SmtpServer(tls=security, auth=(USER, PASSWORD)) as server:
            report, _ = await send(server, envelopes(3), password=PASSWORD)
        assert report.sent == 3
        assert all(t.tls and t.user == USER for t in server.transactions)

    run(scenario())


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_deliver_refuses_a_certificate_it_cannot_verify(security: Any) -> None:
    async def scenario() -> None:
        async with SmtpServer(tls=security) as server:
            report, journal = await send(server, envelopes(3),
                                         smtp=server.smtp_settings(ca_file=None))
        error = report.stopped
        assert isinstance(error, ConnectError)
        assert f"127.0.0.1:{server.port}" in str(error)
        assert "certificate could not be verified" in str(error)
        assert error.hint is not None and "smtp.ca_file" in error.hint
        assert not journal.outcomes and not server.transactions

    run(scenario())


def test_starttls_required_but_not_offered_is_a_connect_error() -> None:
    async def scenario() -> None:
        async with SmtpServer(tls="none") as server:
            report, _ = await send(server, envelopes(2),
                                   smtp=server.smtp_settings(security="starttls"))
        assert isinstance(report.stopped, ConnectError)
        assert "does not offer STARTTLS" in str(report.stopped)
        assert not server.transactions

    run(scenario())


def test_a_refused_login_stops_the_run_naming_host_and_user_but_not_the_password() -> None:
    async def scenario() -> None:
        wrong = "Wrong-" + PASSWORD
        async with SmtpServer(tls="starttls", auth=(USER, PASSWORD)) as server:
            report, journal = await send(server, envelopes(20), password=wrong)
        error = report.stopped
        assert isinstance(error, AuthenticationError)
        text = f"{error} {error.hint} {error!r} {report!r}"
        assert f"127.0.0.1:{server.port}" in str(error) and USER in str(error)
        assert "535" in str(error)
        assert wrong not in text and PASSWORD not in text
        assert report.sent == 0 and not journal.outcomes and not journal.handed_over
        assert not server.transactions

    run(scenario())


def test_auth_over_plaintext_is_refused_before_connecting() -> None:
    async def scenario() -> None:
        async with SmtpServer(auth=(USER, PASSWORD)) as server:
            with pytest.raises(InsecureAuthError) as raised:
                await send(server, envelopes(2), password=PASSWORD)
        assert server.connections == 0
        assert "allow_insecure_auth" in (raised.value.hint or "")
        assert PASSWORD not in str(raised.value)

    run(scenario())


def test_auth_over_plaintext_works_when_explicitly_allowed() -> None:
    async def scenario() -> None:
        async with SmtpServer(auth=(USER, PASSWORD)) as server:
            report, _ = await send(server, envelopes(2), password=PASSWORD,
                                   smtp=server.smtp_settings(allow_insecure_auth=True))
        assert report.sent == 2
        assert all(t.user == USER and not t.tls for t in server.transactions)

    run(scenario())


def test_an_unreachable_relay_is_a_connect_error() -> None:
    port = free_port()  # a port that nobody listens on
    smtp = Smtp(host="127.0.0.1", port=port, security="none", timeout=2.0)

    async def scenario() -> None:
        server = SmtpServer()  # never started: only its settings are borrowed
        report, journal = await send(server, envelopes(5), smtp=smtp)
        assert isinstance(report.stopped, ConnectError)
        assert str(report.stopped) == f"cannot connect to 127.0.0.1:{port}: Connection refused"
        assert not journal.outcomes

    run(scenario())


# -- the rate --------------------------------------------------------------------------------


def test_deliver_holds_20_per_second_within_5_percent() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        start = clock()
        async with SmtpServer() as server:
            report, journal = await send(server, envelopes(400), clock=clock,
                                         sending=Sending(concurrency=4, rate=20.0))
        assert report.sent == 400
        observed = 400 / (journal.finished_at[-1] - start)
        assert abs(observed - 20) / 20 < 0.05
        assert max(clock.sleeps) <= 1 / 20 + 1e-9  # smooth: no "pause after every N"

    run(scenario())


def test_a_throttling_reply_slows_the_run_down_and_it_recovers() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        script = Script(temp_fail_first=1, temp_fail_reply="451 4.7.1 Rate limit exceeded")
        async with SmtpServer(script=script) as server:
            report, journal = await send(server, envelopes(150), clock=clock,
                                         sending=Sending(concurrency=1, rate=20.0))
        assert report.sent == 150 and report.throttled == 1
        gaps = [b - a for a, b in zip(journal.finished_at, journal.finished_at[1:], strict=False)]
        assert min(gaps[1:5]) > 1 / 20 * 1.3  # slower right after the 451 (not halved)...
        assert all(abs(gap - 1 / 20) < 1e-6 for gap in gaps[-40:])  # ...and back to 20/s

    run(scenario())


def test_rate_limiter_spaces_tokens_evenly() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
        start = clock()
        for _ in range(101):
            await limiter.acquire()
        assert clock() - start == pytest.approx(10.0)
        assert limiter.try_acquire() is False

    run(scenario())


def test_rate_limiter_cuts_once_per_episode_to_just_under_the_delivered_rate() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
        for _ in range(30):
            await limiter.acquire()
            limiter.succeeded()
        limiter.throttled()
        limiter.throttled()  # the same episode reported by another worker: cut once
        assert limiter.rate == pytest.approx(9.0, rel=0.05) and limiter.throttles == 2
        assert limiter.limit == 10.0
        for _ in range(200):
            await limiter.acquire()
            limiter.succeeded()
        assert limiter.rate == 10.0  # won back while the relay accepted everything

    run(scenario())


def test_rate_limiter_without_a_rate_paces_at_the_relay_s_rate_after_a_refusal() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
        for _ in range(11):
            assert limiter.try_acquire()
            limiter.succeeded()
            clock.now += 0.1  # 10 per second, as fast as the relay took them
        limiter.throttled()
        assert limiter.rate == pytest.approx(9.0, rel=0.1)

    run(scenario())


# -- pure helpers ----------------------------------------------------------------------------


def test_format_reply_makes_one_line() -> None:
    assert format_reply(550, "5.1.1 <a@b>:\nUser unknown") == "550 5.1.1 <a@b>: User unknown"
    assert format_reply(421, "") == "421"


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(3)
    for attempt in range(1, 12):
        delay = backoff_delay(attempt, rng, base=2.0, cap=120.0)
        ceiling = min(120.0, 2.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_redact_hides_the_password_also_base64_encoded() -> None:
    import base64

    blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    text = redact(f"535 bad {PASSWORD} and {blob}", PASSWORD)
    assert PASSWORD not in text and blob not in text
    assert redact("250 ok", None) == "250 ok"


def _unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire[:-3].split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@given(st.lists(st.sampled_from(["", ".", "..", ".x", "a", "a.b", " ."]), min_size=1, max_size=8))
@example(["."])
def test_dot_stuff_round_trips(lines: list[str]) -> None:
    data = "".join(line + "\r\n" for line in lines).encode()
    wire = dot_stuff(data)
    assert b"\r\n.\r\n" not in wire[:-3] and not wire[:-3].startswith(b".\r\n")
    assert _unstuff(wire) == data
    assert dot_stuff(data, crlf=True) == wire  # CRLF only: the check may be skipped


def test_dot_stuff_normalises_line_endings() -> None:
    assert dot_stuff(b"a\nb\rc") == b"a\r\nb\r\nc\r\n.\r\n"


def test_envelope_is_immutable() -> None:
    envelope = next(envelopes(1))
    with pytest.raises(AttributeError):
        envelope.key = "x"  # type: ignore[misc]
    assert replace(envelope, key="x").key == "x"
