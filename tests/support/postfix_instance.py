"""A private Postfix instance for the tests: its own configuration, queue and log under a
temporary folder, listening on free loopback ports, relaying everything to a downstream
server (``relayhost``).

It needs the Debian package ``postfix`` and root (Postfix's master process starts as root
and its daemons drop to the ``postfix`` user). Without them a test fails rather than skips:
CI installs Postfix, and a skipped integration test proves nothing.

    with private_postfix(downstream.port) as relay:
        ...  # send to 127.0.0.1:relay.port

``main`` adds lines to main.cf (a later line wins over an earlier one), ``listeners`` adds
smtpd services on ports of their own (``relay.ports[name]``), each with its ``-o`` options.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.ports import answers_smtp, free_port

SBIN = "/usr/sbin:/usr/local/sbin:/sbin"
RELAY_NAME = "relay.invitemail.test"

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


@dataclass
class PostfixRelay:
    """A running private Postfix instance."""

    base: Path
    port: int
    postfix: str
    postqueue: str
    ports: dict[str, int] = field(default_factory=dict)  # the extra listeners, by name

    @property
    def config(self) -> Path:
        return self.base / "conf"

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.postfix, "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=60)

    def queue(self) -> str:
        return subprocess.run([self.postqueue, "-c", str(self.config), "-p"],
                              capture_output=True, text=True, timeout=30).stdout

    def queue_is_empty(self) -> bool:
        return "Mail queue is empty" in self.queue()

    def log(self) -> str:
        try:
            return (self.base / "maillog").read_text(errors="replace")
        except OSError:
            return "(no maillog)"

    def running(self) -> bool:
        return self.command("status").returncode == 0

    def wait(self, done: Callable[[], bool], timeout: float = 15.0) -> bool:
        """Wait until ``done()`` and the queue is empty (Postfix delivered everything
        onward); False when that did not happen within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done() and self.queue_is_empty():
                return True
            time.sleep(0.05)
        return False


def _wait_for_smtp(relay: PostfixRelay, port: int, timeout: float = 10.0) -> None:
    if not answers_smtp(port, timeout, every=0.1):
        pytest.fail(f"Postfix does not answer on 127.0.0.1:{port}:\n{relay.log()}",
                    pytrace=False)


@contextmanager
def private_postfix(downstream: int, *, main: str = "", files: Mapping[str, str] | None = None,
                    listeners: Mapping[str, str] | None = None) -> Iterator[PostfixRelay]:
    """A private Postfix on a free loopback port that relays everything to
    ``127.0.0.1:downstream``. ``files``: more files for its configuration folder (access
    maps), by name; ``{conf}`` in ``main`` is that folder."""
    postfix, postconf, postqueue = _tool("postfix"), _tool("postconf"), _tool("postqueue")
    if os.geteuid() != 0:
        pytest.fail("a private Postfix instance needs root: its master process starts as root "
                    "and its daemons drop to the mail_owner user", pytrace=False)
    owner = subprocess.run([postconf, "-dh", "mail_owner"], capture_output=True, text=True,
                           check=True).stdout.strip()
    # Not under pytest's tmp_path: the postfix user must be able to reach data_directory.
    base = Path(tempfile.mkdtemp(prefix="invitemail-postfix-"))
    base.chmod(0o755)
    relay = PostfixRelay(base, free_port(), postfix, postqueue,
                         {name: free_port() for name in listeners or {}})
    try:
        for folder in ("conf", "queue", "data"):
            (base / folder).mkdir()
        os.chown(base / "data", pwd.getpwnam(owner).pw_uid, -1)
        for name, text in (files or {}).items():
            (relay.config / name).write_text(text)
        (relay.config / "main.cf").write_text(MAIN_CF.format(
            base=base, name=RELAY_NAME, downstream=downstream)
            + main.replace("{conf}", str(relay.config)))
        (relay.config / "master.cf").write_text(MASTER_CF.format(port=relay.port) + "".join(
            f"127.0.0.1:{relay.ports[name]} inet n - n - - smtpd {options}\n"
            for name, options in (listeners or {}).items()))
        started = relay.command("start")
        if started.returncode != 0:
            pytest.fail(f"postfix -c {relay.config} start failed:\n{started.stdout}"
                        f"{started.stderr}\n{relay.log()}", pytrace=False)
        for port in (relay.port, *relay.ports.values()):
            _wait_for_smtp(relay, port)
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
