"""Pipelined SMTP (RFC 2920) against a real Postfix: round trips, fallback, refusals, drops.

One private Postfix instance for the module (tests/support/postfix_instance.py) relays to one
recording downstream server; each test uses addresses of its own, so it counts only its own
messages downstream. Between invitemail and Postfix sits a TCP proxy
(tests/support/round_trip_proxy.py) that counts round trips and cuts connections at chosen points of
a pipelined group. Postfix refuses by its own restrictions (``check_recipient_access``,
``check_sender_access``); ``smtpd_forbid_unauth_pipelining = yes`` makes it hang up on a
client that pipelines where it may not, and its log must never say "improper command
pipelining".

Refusals go through :func:`~invitemail.send.transport.deliver` with the recording hooks of
test_transport.py and a fake clock (the backoff costs no time); drops go through
``invitemail send`` and its SQLite journal, then ``send --resend-uncertain``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from invitemail.inputs.config import Sending, Smtp
from invitemail.journal.store import Journal as SqlJournal
from invitemail.journal.store import State as SqlState
from invitemail.send.envelope import Envelope
from invitemail.send.replies import ReplyClass, Step, classify
from invitemail.send.transport import DeliveryReport, State, deliver
from support.cli import run_cli
from support.event import EventBuilder
from support.postfix_instance import PostfixRelay, private_postfix
from support.relay import FakeClock, SmtpServer
from support.round_trip_proxy import Cut, RoundTripProxy
from support.transport import SENDER, Journal, message

pytestmark = pytest.mark.slow

BLOCKED_SENDER = "blocked-sender@example.org"
# Postfix's own refusals, by recipient (check_recipient_access) and sender.
RECIPIENTS = {
    "perm-reject@example.org": "REJECT",
    "perm-unknown@example.org": "550 5.1.1 User unknown in virtual mailbox table",
    "temp-defer@example.org": "DEFER",
    "temp-busy@example.org": "450 4.2.0 Mailbox busy",
}
MAIN = """\
smtpd_forbid_unauth_pipelining = yes
smtpd_relay_restrictions = check_recipient_access texthash:{conf}/recipients,
    permit_mynetworks, reject
smtpd_sender_restrictions = check_sender_access texthash:{conf}/senders
"""
LISTENERS = {
    # A relay that does not offer PIPELINING (and hangs up on a client that pipelines).
    "no-pipelining": "-o smtpd_discard_ehlo_keywords=pipelining",
    # Sender restrictions answered at MAIL rather than at the first RCPT.
    "early-reject": "-o smtpd_delay_reject=no",
}
IMPROPER = "improper command pipelining"


@pytest.fixture(scope="module")
def downstream() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def postfix(downstream: SmtpServer) -> Iterator[PostfixRelay]:
    files = {"recipients": "".join(f"{k} {v}\n" for k, v in RECIPIENTS.items()),
             "senders": f"{BLOCKED_SENDER} REJECT\n"}
    with private_postfix(downstream.port, main=MAIN, files=files,
                         listeners=LISTENERS) as relay:
        yield relay


@pytest.fixture(autouse=True)
def no_improper_pipelining(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses Postfix: Postfix saw no improper pipelining meanwhile."""
    if "postfix" not in request.fixturenames:
        yield
        return
    relay: PostfixRelay = request.getfixturevalue("postfix")
    start = len(relay.log())
    yield
    if request.function is not test_postfix_log_shows_improper_pipelining_when_there_is_some:
        time.sleep(0.1)  # postlogd writes the log on its own time
        assert IMPROPER not in relay.log()[start:], relay.log()[start:][-3000:]


def addresses(tag: str, count: int) -> list[str]:
    return [f"{tag}-{i}@example.org" for i in range(count)]


def settings(proxy: RoundTripProxy, **overrides: Any) -> Smtp:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": proxy.port, "security": "none",
                              "timeout": 5.0}
    values.update(overrides)
    return Smtp(**values)


def send(recipients: list[str], smtp: Smtp, *, max_attempts: int = 3,
         sender: str = SENDER) -> tuple[DeliveryReport, Journal]:
    """``recipients`` over one connection, in order, with the recording hooks."""
    clock = FakeClock()
    journal = Journal(clock)
    items = [Envelope(key=r, sender=sender, recipient=r, data=message(r)) for r in recipients]
    report = asyncio.run(deliver(
        items, smtp=smtp, sending=Sending(concurrency=1, max_attempts=max_attempts),
        password=None, hooks=journal, clock=clock, sleep=clock.sleep, rng=random.Random(1),
        local_hostname="client.test"))
    return report, journal


def arrived(postfix: PostfixRelay, downstream: SmtpServer,
            expected: dict[str, int]) -> dict[str, int]:
    """What reached the downstream server for the addresses in ``expected``, once Postfix's
    queue is empty and the counts match (or 10 s passed), and 0.3 s later: nothing more
    may come."""
    def counts() -> dict[str, int]:
        received = downstream.received()
        return {key: received[key] for key in expected}

    postfix.wait(lambda: counts() == expected, timeout=10)
    time.sleep(0.3)
    return counts()


# -- pipelining is used, or not --------------------------------------------------------------


def test_postfix_pipelined_send_costs_one_round_trip_per_message(
        postfix: PostfixRelay, downstream: SmtpServer) -> None:
    recipients = addresses("steady", 40)
    with RoundTripProxy(postfix.port) as proxy:
        report, journal = send(recipients, settings(proxy))
    assert report.sent == 40 and proxy.connections == 1
    # EHLO, the first group, one per message (its data and the next group; the last one's
    # data alone), QUIT: against four per message one command at a time.
    assert proxy.round_trips() == 40 + 3
    chunks = proxy.conversations[0].client_chunks()
    # A message's data and the next message's group went in one write.
    assert sum(b"\r\n.\r\nMAIL FROM:" in chunk for chunk in chunks) == 39
    assert all(outcome.state is State.SENT for outcome in journal.outcomes.values())
    assert arrived(postfix, downstream, dict.fromkeys(recipients, 1)) == \
        dict.fromkeys(recipients, 1)


@pytest.mark.parametrize(("listener", "pipelining"), [("no-pipelining", True), ("", False)],
                         ids=["not-offered", "setting-off"])
def test_postfix_without_pipelining_gets_one_command_at_a_time(
        postfix: PostfixRelay, downstream: SmtpServer, listener: str, pipelining: bool) -> None:
    recipients = addresses(f"single-{listener or 'off'}", 10)
    port = postfix.ports[listener] if listener else postfix.port
    with RoundTripProxy(port) as proxy:
        report, _ = send(recipients, settings(proxy, pipelining=pipelining))
    assert report.sent == 10 and proxy.connections == 1
    assert proxy.round_trips() == 4 * 10 + 2  # MAIL, RCPT, DATA, the data; EHLO and QUIT
    assert not any(b"\r\n.\r\nMAIL FROM:" in chunk
                   for chunk in proxy.conversations[0].client_chunks())
    assert arrived(postfix, downstream, dict.fromkeys(recipients, 1)) == \
        dict.fromkeys(recipients, 1)


def test_postfix_log_shows_improper_pipelining_when_there_is_some(
        postfix: PostfixRelay) -> None:
    """The other tests' "no improper pipelining" can fail: a client that pipelines to the
    listener without PIPELINING is logged (and hung up on)."""
    start = len(postfix.log())
    with socket.create_connection(("127.0.0.1", postfix.ports["no-pipelining"])) as conn:
        conn.recv(512)
        conn.sendall(b"EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>"
                     b"\r\n")
        conn.settimeout(5)
        while conn.recv(4096):
            pass
    deadline = time.monotonic() + 5
    while IMPROPER not in postfix.log()[start:] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert IMPROPER in postfix.log()[start:]


# -- refusals inside a group ------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_postfix_refused_recipients_inside_groups_leave_their_neighbours_alone(
        postfix: PostfixRelay, downstream: SmtpServer, max_attempts: int) -> None:
    tag = f"neighbour{max_attempts}"
    refused = list(RECIPIENTS)  # each between two that go through
    recipients = [address for i, bad in enumerate(refused)
                  for address in (f"{tag}-{i}@example.org", bad)] + [f"{tag}-end@example.org"]
    good = [address for address in recipients if address not in RECIPIENTS]
    with RoundTripProxy(postfix.port) as proxy:
        report, journal = send(recipients, settings(proxy), max_attempts=max_attempts)
    states = {key: (outcome.state, outcome.attempts) for key, outcome in journal.outcomes.items()}
    assert states == {**{key: (State.SENT, 1) for key in good},
                      "perm-reject@example.org": (State.FAILED, 1),
                      "perm-unknown@example.org": (State.FAILED, 1),
                      # temporary: retried until max_attempts, then failed
                      "temp-defer@example.org": (State.FAILED, max_attempts),
                      "temp-busy@example.org": (State.FAILED, max_attempts)}
    replies = {key: journal.outcomes[key].reply for key in RECIPIENTS}
    assert replies["perm-reject@example.org"].startswith(
        "554 5.7.1 <perm-reject@example.org>: Recipient address rejected: Access denied")
    assert replies["perm-unknown@example.org"].startswith("550 5.1.1 <perm-unknown@example.org>")
    assert replies["temp-defer@example.org"].startswith("450 4.7.1 <temp-defer@example.org>")
    assert replies["temp-busy@example.org"].startswith("450 4.2.0 <temp-busy@example.org>")
    assert sorted(key for key, *_ in journal.retries) == \
        sorted(["temp-defer@example.org", "temp-busy@example.org"] * (max_attempts - 1))
    assert report.stopped is None
    # No refusal cost a connection, and the groups stayed in step: each refused transaction
    # was reset at the head of the next group.
    assert proxy.connections == 1
    sent = proxy.conversations[0].sent()
    last = sent.rsplit(b"RCPT TO:<", 1)[1].split(b">", 1)[0].decode()
    refusals = 2 + 2 * max_attempts  # each refused transaction, the last followed by QUIT
    assert sent.count(b"RSET\r\n") == refusals - (last in RECIPIENTS)
    assert arrived(postfix, downstream, dict.fromkeys(recipients, 0) | dict.fromkeys(good, 1)) \
        == dict.fromkeys(recipients, 0) | dict.fromkeys(good, 1)


@pytest.mark.parametrize("listener", ["", "early-reject"], ids=["at-rcpt", "at-mail"])
def test_postfix_refused_sender_stops_the_run(postfix: PostfixRelay, downstream: SmtpServer,
                                              listener: str) -> None:
    """Postfix refuses the sender at the first RCPT (smtpd_delay_reject = yes, its default)
    or at MAIL: either way no registrant is to blame, the run stops, nobody is failed."""
    recipients = addresses(f"blocked-{listener or 'rcpt'}", 5)
    port = postfix.ports[listener] if listener else postfix.port
    with RoundTripProxy(port) as proxy:
        report, journal = send(recipients, settings(proxy), sender=BLOCKED_SENDER)
    assert report.stopped is not None, journal.outcomes
    assert "Sender address rejected: Access denied" in str(report.stopped)
    assert journal.outcomes == {} and not journal.retries and not journal.handed_over
    assert report.sent == report.failed == report.uncertain == 0
    assert report.deferred == recipients[:1]
    assert arrived(postfix, downstream, dict.fromkeys(recipients, 0)) == \
        dict.fromkeys(recipients, 0)


# The sender refused at RCPT (or at MAIL, or after the data): Postfix's own wordings.
SENDER_REFUSALS = [
    (Step.RCPT, 554, "5.7.1 <a@example.org>: Sender address rejected: Access denied"),
    (Step.RCPT, 553, "5.7.1 <a@example.org>: Sender address rejected: not logged in"),
    (Step.RCPT, 553, "5.7.1 <a@example.org>: Sender address rejected: not owned by user u"),
    (Step.RCPT, 550, "5.1.0 <a@example.org>: Sender address rejected: User unknown in "
                     "virtual mailbox table"),
    (Step.MAIL, 554, "5.7.1 <a@example.org>: Sender address rejected: Access denied"),
    (Step.DATA, 550, "5.7.1 <a@example.org>: sender address rejected by policy"),
]


@pytest.mark.parametrize(("step", "code", "text"), SENDER_REFUSALS)
def test_postfix_sender_refusal_is_the_senders_whatever_the_step(step: Step, code: int,
                                                                 text: str) -> None:
    verdict = classify(step, code, text, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert verdict.reply_class is ReplyClass.SENDER_BLOCKED
    assert verdict.reply_class.stops_the_run


@pytest.mark.parametrize(("step", "code", "text", "expected"), [
    # the recipient's own refusals stay the recipient's
    (Step.RCPT, 554, "5.7.1 <b@example.org>: Recipient address rejected: Access denied",
     ReplyClass.RECIPIENT_PERMANENT),
    (Step.RCPT, 550, "5.1.1 <b@example.org>: Recipient address rejected: User unknown",
     ReplyClass.RECIPIENT_PERMANENT),
])
def test_postfix_recipient_refusals_stay_the_recipients(step: Step, code: int, text: str,
                                                         expected: ReplyClass) -> None:
    verdict = classify(step, code, text, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert verdict.reply_class is expected


# -- drops inside a group ---------------------------------------------------------------------

# ``invitemail send`` of 6 registrants over one connection; its client bursts are: 1 EHLO,
# 2 the first group (MAIL, RCPT, DATA of message 0), 3 message 0's data and final dot with
# message 1's group, ..., 7 message 4's data with message 5's group, 8 message 5's data
# alone, 9 QUIT. The proxy cuts the connection at one of them: (cut, the message left
# uncertain, whether Postfix got its whole data and queued it). The uncertain message is the
# one whose final dot went and whose reply did not come; the next one, whose group went in
# the same write, was not handed over and is retried.
DROPS = [
    (Cut(2, "drop"), None, False),  # the first group never reached Postfix
    (Cut(2, "forward"), None, False),  # it did; its 250, 250, 354 never came back
    (Cut(3, "drop"), 0, False),
    (Cut(4, "half"), 1, False),  # mid-data: Postfix throws the half message away
    (Cut(4, "drop"), 1, False),
    (Cut(4, "forward"), 1, True),  # after the final dot, before its 250: Postfix has it
    (Cut(7, "forward"), 4, True),
    (Cut(8, "half"), 5, False),  # the last message's data, on its own
    (Cut(8, "forward"), 5, True),
]


def event(folder: Path, proxy: RoundTripProxy, recipients: list[str]) -> Path:
    rows = [(f"Deltager {i}", address, "da") for i, address in enumerate(recipients)]
    return EventBuilder(rows=rows).relay(
        {"host": "127.0.0.1", "port": proxy.port, "security": "none", "timeout": 5},
        {"concurrency": 1, "max_attempts": 3}).write(folder).folder


def journaled(folder: Path) -> dict[str, tuple[SqlState, int, str]]:
    journal = SqlJournal.open(folder, create=False)
    assert journal is not None
    with journal:
        return {row.address: (row.state, row.attempts, row.last_reply or "")
                for row in journal.rows("invitation")}


@pytest.mark.parametrize(("cut", "uncertain", "queued"), DROPS,
                         ids=[f"burst{c.burst}-{c.how}" for c, *_ in DROPS])
def test_postfix_drop_inside_a_group_then_resend_uncertain(
        postfix: PostfixRelay, downstream: SmtpServer, tmp_path: Path, cut: Cut,
        uncertain: int | None, queued: bool) -> None:
    recipients = addresses(f"drop{cut.burst}{cut.how}", 6)
    with RoundTripProxy(postfix.port, cut) as proxy:
        folder = event(tmp_path / "event", proxy, recipients)
        run = run_cli("send", folder, "--yes")
        assert proxy.conversations[0].cut, run.output
        # A new connection for the rest, unless the cut was at the last message's data.
        assert proxy.connections == (1 if cut.burst == 8 else 2)
    # The journal: the uncertain one handed over once; the one after it (or the first one,
    # when nothing was handed over yet) tried again on the new connection; all else sent.
    again = 0 if uncertain is None else uncertain + 1
    expected = {address: (SqlState.SENT, 2 if i == again else 1)
                for i, address in enumerate(recipients)}
    if uncertain is not None:
        expected[recipients[uncertain]] = (SqlState.UNCERTAIN, 1)
    rows = journaled(folder)
    assert {key: row[:2] for key, row in rows.items()} == expected, run.output
    if uncertain is None:
        assert run.exit_code == 0 and "Sent 6 messages, 0 failed, 0 uncertain" in run.stdout
    else:
        assert run.exit_code != 0 and "Sent 5 messages, 0 failed, 1 uncertain" in run.stdout
        assert rows[recipients[uncertain]][2].startswith(
            "connection lost after the message was handed over")
    # Downstream: each sent one once; the uncertain one once if Postfix had it whole.
    counts = dict.fromkeys(recipients, 1)
    if uncertain is not None:
        counts[recipients[uncertain]] = int(queued)
    assert arrived(postfix, downstream, counts) == counts
    if uncertain is None:
        return
    # A plain rerun leaves the uncertain one alone; --resend-uncertain sends it, once more.
    with RoundTripProxy(postfix.port) as proxy:
        event(folder, proxy, recipients)
        rerun = run_cli("send", folder, "--yes")
        assert proxy.connections == 0, rerun.output
        resent = run_cli("send", folder, "--yes", "--resend-uncertain")
        assert proxy.connections == 1
    assert resent.exit_code == 0, resent.output
    assert "Sent 1 message, 0 failed, 0 uncertain" in resent.stdout, resent.output
    assert {key: row[0] for key, row in journaled(folder).items()} == \
        dict.fromkeys(recipients, SqlState.SENT)
    counts[recipients[uncertain]] += 1  # the user asked for it: twice only if Postfix had it
    assert arrived(postfix, downstream, counts) == counts
