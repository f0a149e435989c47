"""What a coordinator ran into on a first real run: the password prompt, the gallery's counts
and heading, local test servers' addresses, and the test suite's own output."""

from __future__ import annotations

import html
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from invitemail.campaign import Campaign
from invitemail.inputs.addresses import AddressError, is_loopback_host, normalize_address
from invitemail.outputs.gallery import INDEX, GalleryWriter
from support.cli import run_cli
from support.event import NOW, ROWS, EventBuilder, write_event
from support.relay import SmtpServer

TESTS = Path(__file__).resolve().parent


# -- the SpamAssassin table stays out of pytest's progress dots unless -v -------------------

TABLE_TEST = """
import pytest
from support.checks import show_when_verbose

def test_table(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    show_when_verbose(request, capsys, [f"ROW-{n:03}" for n in range(76)])

def test_after() -> None:
    pass
"""


def _pytest(folder: Path, *options: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--rootdir", str(folder), str(folder / "test_table.py"), *options],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_score_table_is_quiet_without_verbose_and_shown_with_it(tmp_path: Path) -> None:
    (tmp_path / "test_table.py").write_text(TABLE_TEST, encoding="utf-8")
    quiet = _pytest(tmp_path, "-q")
    assert "ROW-" not in quiet
    assert ".." in quiet  # the progress dots, unbroken
    shown = _pytest(tmp_path, "-v")
    rows = [line for line in shown.splitlines() if line.startswith("ROW-")]
    assert rows == [f"ROW-{n:03}" for n in range(76)]


# -- the gallery: duplicates are warnings, and the heading says what the journal says ----


def _summary_and_heading(folder: Path) -> tuple[str, str]:
    page = (folder / INDEX).read_text(encoding="utf-8")
    summary = html.unescape(re.search(r'<p id="summary">(.*?)</p>', page, re.S)[1])  # type: ignore[index]
    heading = html.unescape(re.search(r'<p class="muted" id="heading">(.*?)</p>', page,
                                      re.S)[1])  # type: ignore[index]
    return " ".join(summary.split()), " ".join(heading.split())


@pytest.mark.parametrize("limit", [(), ("--limit", "5")])
@pytest.mark.parametrize("duplicates", [1, 2, 5])
def test_gallery_counts_skipped_duplicates_as_warnings(tmp_path: Path, duplicates: int,
                                                       limit: tuple[str, ...]) -> None:
    rows = [ROWS[0], *[("Søren K.", "SOREN@example.org", "da")] * duplicates, ROWS[1]]
    event = write_event(tmp_path / "event", rows)
    run = run_cli("preview", event, "--out", tmp_path / "out", *limit)
    assert run.exit_code == 0, run.output
    summary, heading = _summary_and_heading(tmp_path / "out")
    plural = "s" if duplicates != 1 else ""
    assert summary == (f"2 messages; {duplicates} with warnings ({duplicates} duplicate "
                       f"row{plural} skipped).")
    assert "Nothing here has been sent." in heading  # no journal at all


def test_gallery_without_duplicates_counts_none(tmp_path: Path) -> None:
    event = write_event(tmp_path / "event")
    run = run_cli("preview", event, "--out", tmp_path / "out")
    assert run.exit_code == 0, run.output
    assert _summary_and_heading(tmp_path / "out")[0] == "2 messages; 0 with warnings."


@pytest.mark.parametrize(("states", "in_heading", "in_summary"), [
    ({}, "Nothing here has been sent.", "none of these sent"),
    ({"soren@example.org": "failed", "karen@example.org": "pending"},
     "Nothing here has been sent.", "none of these sent"),
    ({"soren@example.org": "sent"}, "records 1 message of this kind as sent",
     "1 of these sent (the Journal column says which)"),
    ({"soren@example.org": "sent", "karen@example.org": "sent", "gone@example.org": "sent"},
     "records 3 messages of this kind as sent", "2 of these sent"),
])
def test_gallery_heading_matches_the_journal(tmp_path: Path, states: dict[str, str],
                                             in_heading: str, in_summary: str) -> None:
    campaign = Campaign.open(write_event(tmp_path / "event"), now=NOW)
    with GalleryWriter(tmp_path / "out", states) as writer:
        campaign.check(on_message=writer)
    summary, heading = _summary_and_heading(tmp_path / "out")
    assert in_heading in heading
    assert in_summary in summary
    if "sent" in states.values():
        assert "Nothing here has been sent" not in heading


# -- .test, .localhost and .invalid: for a local test server only -------------------------

LOCAL_TEST_ADDRESSES = ["anna@example.test", "Bo.Berg@Lab.Test", "carl@localhost",
                        "dora@mail.localhost", "erik@nowhere.invalid", "frida@bücher.test"]


def _local_event(folder: Path, host: str, port: int, addresses: list[str]) -> Path:
    rows = [(f"Person {n}", address, "da") for n, address in enumerate(addresses)]
    return EventBuilder(rows=rows).plain_relay(port, host).write(folder).folder


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.53"])
def test_check_allows_test_domains_when_the_relay_is_loopback(tmp_path: Path,
                                                               host: str) -> None:
    event = _local_event(tmp_path / "event", host, 2525, LOCAL_TEST_ADDRESSES)
    run = run_cli("check", event)
    assert run.exit_code == 0, run.output
    assert f"{len(LOCAL_TEST_ADDRESSES)} registrants" in run.output


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.1", "localhost.example.org",
                                  "0.0.0.0"])
def test_check_refuses_test_domains_with_a_real_relay_and_says_why(tmp_path: Path,
                                                                   host: str) -> None:
    event = _local_event(tmp_path / "event", host, 2525, LOCAL_TEST_ADDRESSES)
    run = run_cli("check", event)
    assert run.exit_code != 0
    assert "Traceback" not in run.output
    for address in LOCAL_TEST_ADDRESSES:
        tld = address.rpartition(".")[2].lower() if "." in address.rpartition("@")[2] \
            else address.rpartition("@")[2]
        assert f"{address!r} is not a valid address: .{tld} is a domain reserved for tests" \
            in run.output
    assert "allowed only when [smtp] host is a local test server" in run.output


def test_send_reaches_test_domains_on_a_local_server(tmp_path: Path,
                                                     smtp_server: SmtpServer) -> None:
    event = _local_event(tmp_path / "event", "127.0.0.1", smtp_server.port,
                         LOCAL_TEST_ADDRESSES)
    run = run_cli("send", event, "--yes")
    assert run.exit_code == 0, run.output
    assert sorted(smtp_server.received()) == sorted(
        ["anna@example.test", "Bo.Berg@lab.test", "carl@localhost", "dora@mail.localhost",
         "erik@nowhere.invalid", "frida@xn--bcher-kva.test"])


def _with_test_sender(event: Path) -> None:
    toml = event / "event.toml"
    toml.write_text(toml.read_text(encoding="utf-8")
                    .replace("arrangementer@example.org", "arrangementer@example.test")
                    .replace('reply_to = "svar@example.org"', 'reply_to = "svar@lab.localhost"')
                    .replace('email = "kontakt@example.org"', 'email = "kontakt@x.invalid"'),
                    encoding="utf-8")


def test_a_test_sender_and_test_to_reach_a_local_server(tmp_path: Path,
                                                        smtp_server: SmtpServer) -> None:
    event = _local_event(tmp_path / "event", "127.0.0.1", smtp_server.port, ["anna@example.test"])
    _with_test_sender(event)
    run = run_cli("send", event, "--yes", "--test-to", "me@desk.test")
    assert run.exit_code == 0, run.output
    assert list(smtp_server.received()) == ["me@desk.test"]
    run = run_cli("send", event, "--yes")
    assert run.exit_code == 0, run.output
    assert "anna@example.test" in smtp_server.received()


def test_a_test_sender_and_test_to_are_refused_with_a_real_relay(tmp_path: Path) -> None:
    event = _local_event(tmp_path / "event", "smtp.example.org", 2525, ["anna@example.org"])
    _with_test_sender(event)
    run = run_cli("check", event)
    assert run.exit_code == 1
    for key in ("from", "reply_to", "email"):
        assert f"{key}" in run.output
    assert "reserved for tests" in run.output
    plain = _local_event(tmp_path / "plain", "smtp.example.org", 2525, ["anna@example.org"])
    run = run_cli("send", plain, "--dry-run", "--test-to", "me@desk.test")
    assert run.exit_code == 2
    assert "reserved for tests" in run.output


@pytest.mark.parametrize("address", ["a@-x.test", "a b@x.test", "a@x..test", "a@.localhost",
                                     "@x.test", "a@x.local", "a@x.onion"])
def test_local_test_mode_still_refuses_bad_addresses(address: str) -> None:
    with pytest.raises(AddressError):
        normalize_address(address, local_test=True)


def test_an_address_allowed_locally_is_not_remembered_for_a_real_relay() -> None:
    assert normalize_address("gina@example.test", local_test=True) == "gina@example.test"
    with pytest.raises(AddressError, match="reserved for tests"):
        normalize_address("gina@example.test")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LocalHost.", True), ("::ffff:127.0.0.1", True),
    ("128.0.0.1", False), ("::2", False), ("smtp.example.org", False),
    ("localhost.example.org", False), ("", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- a wrong password typed at the prompt is asked for again ------------------------------

USER, SECRET = "arrangementer@example.org", "rigtigt-kodeord"


class Terminal:
    """``invitemail ARGS`` on a pseudo-terminal of its own, read and typed into."""

    def __init__(self, *args: str | Path) -> None:
        self.master, slave = os.openpty()
        env = {k: v for k, v in os.environ.items() if k != "INVITEMAIL_SMTP_PASSWORD"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invitemail", *map(str, args)],
            stdin=slave, stdout=slave, stderr=slave, env={**env, "COLUMNS": "200"},
            close_fds=True, start_new_session=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60.0) -> str:
        """Read until ``text`` appears; return what was read up to it."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n"
                                     f"{self.seen}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the process ended and closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"{text!r} did not appear before the end:\n{self.seen}")
            self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        before, _, after = self.seen.partition(text)
        self.seen = after
        return before

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        rest = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                rest += chunk.decode("utf-8", "replace")
            elif self.process.poll() is not None:
                break
        code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code, self.seen + rest.replace("\r\n", "\n")


@pytest.fixture
def auth_event(tmp_path: Path, start_smtp_server: Callable[..., SmtpServer]
               ) -> tuple[Path, SmtpServer]:
    server = start_smtp_server(auth=(USER, SECRET))
    builder = EventBuilder().set("smtp", "host", "127.0.0.1").set("smtp", "port", server.port)
    builder.set("smtp", "security", "none").set("smtp", "allow_insecure_auth", True)
    return builder.write(tmp_path / "event").folder, server


@pytest.mark.slow
@pytest.mark.parametrize("wrong", [0, 1, 2])
def test_a_refused_password_typed_at_the_prompt_is_asked_again(
        auth_event: tuple[Path, SmtpServer], wrong: int) -> None:
    event, server = auth_event
    terminal = Terminal("send", event)
    terminal.expect("Send invitation messages")
    terminal.expect("?")
    terminal.type("y")
    for attempt in range(wrong):
        terminal.expect(f"SMTP password for {USER} at 127.0.0.1:{server.port}")
        terminal.type(f"forkert-{attempt}")
        shown = terminal.expect(f"({2 - attempt} tr")
        assert "refused the login" in shown and "535" in shown
        assert server.transactions == []  # nothing sent while the password is wrong
    terminal.expect("SMTP password for")
    terminal.type(SECRET)
    code, output = terminal.finish()
    assert code == 0, output
    assert "Sent 2 messages, 0 failed, 0 uncertain" in output
    assert sorted(server.received()) == ["karen@example.org", "soren@example.org"]
    assert SECRET not in output and "forkert" not in output  # never echoed or quoted
    assert "Traceback" not in output


@pytest.mark.slow
def test_three_refused_passwords_end_the_run_with_nothing_sent(
        auth_event: tuple[Path, SmtpServer]) -> None:
    event, server = auth_event
    terminal = Terminal("send", event)
    terminal.expect("?")
    terminal.type("y")
    for attempt in range(3):
        terminal.expect("SMTP password for")
        terminal.type(f"forkert-{attempt}")
    code, output = terminal.finish()
    assert code == 1, output
    assert "3 passwords tried; nothing was sent" in output
    assert "type the password at the prompt, or set INVITEMAIL_SMTP_PASSWORD" in output
    assert output.count("SMTP password for") == 0  # no fourth question
    assert server.transactions == []
    assert "Traceback" not in output


def test_a_refused_password_from_the_environment_is_not_asked_again(
        auth_event: tuple[Path, SmtpServer], monkeypatch: pytest.MonkeyPatch) -> None:
    event, server = auth_event
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", "forkert")
    run = run_cli("send", event, "--yes")
    assert run.exit_code == 1, run.output
    assert "refused the login" in run.output
    assert "the one typed at the prompt, or INVITEMAIL_SMTP_PASSWORD" in run.output
    assert server.transactions == []
