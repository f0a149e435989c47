"""`invitemail send` to a local Postfix used as a smarthost: every message is handed over.

Past what one machine and one relay account carry, the queue belongs to a mail transfer
agent: invitemail hands each message to a local Postfix, which queues it durably and
delivers it onward to the organisation's relay. This test runs that set-up for real: a
private Postfix instance (its own configuration, queue and log under a temporary folder,
listening on a free loopback port, ``relayhost`` pointing at the recording server of
``support/relay.py``), and checks that every registrant's message arrives downstream exactly
once and that the journal says ``sent``.

It needs the Debian package ``postfix`` and root (Postfix's master process starts as root
and its daemons drop to the ``postfix`` user). Without them the test fails rather than
skips: CI installs Postfix, and a skipped integration test proves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from invitemail.journal.store import Journal, State
from support.cli import run_cli
from support.event import EventBuilder
from support.postfix_instance import RELAY_NAME, PostfixRelay, private_postfix
from support.relay import SmtpServer

REGISTRANTS = 50
DELIVERY_TIMEOUT = 15.0  # seconds for Postfix to deliver everything onward


@pytest.fixture
def postfix_relay(smtp_server: SmtpServer) -> Iterator[PostfixRelay]:
    """A private Postfix on a free loopback port that relays everything to ``smtp_server``."""
    with private_postfix(smtp_server.port) as relay:
        yield relay


def people(count: int) -> list[tuple[str, str, str]]:
    names = ("Søren Ærø", "Åse Møller", "Jens Østergaard", "Karen Blæsbjerg", "Sarah Walsh")
    return [(f"{names[i % len(names)]} {i}", f"deltager{i}@example.org",
             "en" if i % 5 == 4 else "da") for i in range(count)]


@pytest.mark.slow
def test_send_to_a_local_postfix_relay_hands_every_message_over(
        postfix_relay: PostfixRelay, smtp_server: SmtpServer, tmp_path: Path) -> None:
    rows = people(REGISTRANTS)
    folder = EventBuilder(rows=rows).relay(
        {"host": "127.0.0.1", "port": postfix_relay.port, "security": "none", "timeout": 10},
        {"concurrency": 4, "max_attempts": 3}).write(tmp_path / "event").folder

    run = run_cli("send", folder, "--yes")

    assert run.exit_code == 0, run.output
    assert f"Sent {REGISTRANTS} messages, 0 failed, 0 uncertain" in run.stdout, run.output
    # invitemail's part ends when Postfix has the message: the journal says sent...
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:
        journaled = {row.address: row for row in journal.rows("invitation")}
    assert {address: row.state for address, row in journaled.items()} == \
        {address: State.SENT for _, address, _ in rows}
    # ... and Postfix's queue takes it from there, onward to the downstream relay.
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while (sum(smtp_server.received().values()) < REGISTRANTS
           or "Mail queue is empty" not in postfix_relay.queue()) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # nothing more may arrive: every message exactly once
    received = smtp_server.received()
    assert received == {address: 1 for _, address, _ in rows}, \
        f"{postfix_relay.queue()}\n{postfix_relay.log()[-3000:]}"
    assert "Mail queue is empty" in postfix_relay.queue()
    for transaction in smtp_server.transactions:
        (address,) = transaction.rcpt_tos
        assert transaction.mail_from == "arrangementer@example.org"
        message = message_from_bytes(transaction.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        # The very message invitemail built and journaled, through Postfix.
        assert message["Message-ID"].strip("<>") == \
            (journaled[address].message_id or "").strip("<>")
        assert [a.addr_spec for a in message["To"].addresses] == [address]
        assert RELAY_NAME in message["Received"]
        parts = {part.get_content_type() for part in message.walk()}
        assert {"text/plain", "text/html", "text/calendar"} <= parts
