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

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from invitemail.journal import Journal, State
from support.cli import run_cli
from support.event import EVENT_TOML, write_event
from support.relay import SmtpServer

SBIN = "/usr/sbin:/usr/local/sbin:/sbin"
RELAY_NAME = "relay.invitemail.test"
REGISTRANTS = 50
DELIVERY_TIMEOUT = 15.0  # seconds for Postfix to deliver everything onward

MAIN_CF = """\
# A private Postfix instance for one test: a smarthost relay on loopback, no local delivery.
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = {name}
mydomain = invitemail.test
myorigin = $myhostname
mydestination =
local_transport = error:local delivery is disabled here
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{downstream}
smtp_tls_security_level = none
smtpd_tls_security_level = none
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
"""

# The services a relay needs, none chrooted (the queue is in a temporary folder).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path is None:
        pytest.fail(f"{name} is not installed: this test runs a real Postfix "
                    "(Debian: apt-get install postfix)", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostfixRelay:
    """A running private Postfix instance."""

    base: Path
    port: int
    postfix: str
    postqueue: str

    @property
    def config(self) -> Path:
        return self.base / "conf"

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.postfix, "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=60)

    def queue(self) -> str:
        return subprocess.run([self.postqueue, "-c", str(self.config), "-p"],
                              capture_output=True, text=True, timeout=30).stdout

    def log(self) -> str:
        try:
            return (self.base / "maillog").read_text(errors="replace")
        except OSError:
            return "(no maillog)"

    def running(self) -> bool:
        return self.command("status").returncode == 0


def _wait_for_smtp(relay: PostfixRelay, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", relay.port), timeout=2) as conn:
                if conn.recv(512).startswith(b"220"):
                    conn.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"Postfix does not answer on 127.0.0.1:{relay.port}:\n{relay.log()}",
                        pytrace=False)
        time.sleep(0.1)


@pytest.fixture
def postfix_relay(smtp_server: SmtpServer) -> Iterator[PostfixRelay]:
    """A private Postfix on a free loopback port that relays everything to ``smtp_server``."""
    postfix, postconf, postqueue = _tool("postfix"), _tool("postconf"), _tool("postqueue")
    if os.geteuid() != 0:
        pytest.fail("a private Postfix instance needs root: its master process starts as root "
                    "and its daemons drop to the mail_owner user", pytrace=False)
    owner = subprocess.run([postconf, "-dh", "mail_owner"], capture_output=True, text=True,
                           check=True).stdout.strip()
    # Not under pytest's tmp_path: the postfix user must be able to reach data_directory.
    base = Path(tempfile.mkdtemp(prefix="invitemail-postfix-"))
    base.chmod(0o755)
    relay = PostfixRelay(base, _free_port(), postfix, postqueue)
    try:
        for folder in ("conf", "queue", "data"):
            (base / folder).mkdir()
        os.chown(base / "data", pwd.getpwnam(owner).pw_uid, -1)
        (relay.config / "main.cf").write_text(MAIN_CF.format(
            base=base, name=RELAY_NAME, downstream=smtp_server.port))
        (relay.config / "master.cf").write_text(MASTER_CF.format(port=relay.port))
        started = relay.command("start")
        if started.returncode != 0:
            pytest.fail(f"postfix -c {relay.config} start failed:\n{started.stdout}"
                        f"{started.stderr}\n{relay.log()}", pytrace=False)
        _wait_for_smtp(relay)
        yield relay
    finally:
        if relay.running():
            relay.command("stop")
            deadline = time.monotonic() + 10
            while relay.running() and time.monotonic() < deadline:
                time.sleep(0.1)
            if relay.running():
                relay.command("abort")
        shutil.rmtree(base, ignore_errors=True)


def people(count: int) -> list[tuple[str, str, str]]:
    names = ("Søren Ærø", "Åse Møller", "Jens Østergaard", "Karen Blæsbjerg", "Sarah Walsh")
    return [(f"{names[i % len(names)]} {i}", f"deltager{i}@example.org",
             "en" if i % 5 == 4 else "da") for i in range(count)]


@pytest.mark.slow
def test_send_to_a_local_postfix_relay_hands_every_message_over(
        postfix_relay: PostfixRelay, smtp_server: SmtpServer, tmp_path: Path) -> None:
    smtp = (f'[smtp]\nhost = "127.0.0.1"\nport = {postfix_relay.port}\nsecurity = "none"\n'
            "timeout = 10\n\n[sending]\nconcurrency = 4\nmax_attempts = 3\n")
    rows = people(REGISTRANTS)
    folder = write_event(tmp_path / "event", rows, toml=EVENT_TOML.split("[smtp]")[0] + smtp)

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
