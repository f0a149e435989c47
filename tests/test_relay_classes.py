"""Each class of reply, replayed by a scripted relay through a real send.

The relay is aiosmtpd on 127.0.0.1 answering a chosen step (greeting, AUTH, MAIL, RCPT, DATA)
with a real reply text of Gmail, Microsoft 365, Google Workspace, SES, SendGrid or Mailgun.
The transport-level tests run on a fake clock (no real sleeps); the CLI tests use replies
that need no waiting, and check the journal, the exit code, the message and `status`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.smtp import AuthResult

from invitemail.campaign import Campaign
from invitemail.inputs.config import Sending
from invitemail.journal.store import Journal, State
from invitemail.send.delivery import SendOptions, SendResult
from invitemail.send.limits import DailyLimitReached
from invitemail.send.plan import send
from invitemail.send.transport import DeliveryReport, Envelope, Outcome, deliver
from support.cli import run_cli
from support.event import NOW, EventBuilder, Raw, Value
from support.relay import FakeClock, RecordingHandler, Script, SmtpServer

# step, how many of that step's commands came so far (1, 2, ...) -> a reply, or None: as usual
Answer = Callable[[str, int], str | None]

GMAIL_DAILY = ("550 5.4.5 Daily user sending limit exceeded. For more information on Gmail "
               "sending limits go to https://support.google.com/a/answer/166852 - gsmtp")
M365_QUOTA = ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
              "Failed to process message due to a permanent exception with message Cannot "
              "submit message.")
M365_TENANT = ("550 5.7.233 Your message can't be sent because your organization has exceeded "
               "its tenant external recipient rate limit")
SES_DAILY = "454 Throttling failure: Daily message quota exceeded."
MAILGUN = ("421 4.7.0 Domain example.org has exceeded its sending limit, try again after "
           "2031-01-02 10:00 UTC")
WORKSPACE_DAILY = ("550 5.4.5 Daily SMTP relay limit exceeded for user, for more information on "
                   "SMTP relay limits please contact your administrator")
SENDGRID_CREDITS = "451 Authentication failed: Maximum credits exceeded"


# -- the scripted relay ------------------------------------------------------------------------


class StepRelay(RecordingHandler):
    """A recording handler whose ``answer`` may replace the reply to MAIL, RCPT or DATA, and
    which greets connections beyond ``max_sessions`` with ``Script.refuse_reply``."""

    def __init__(self, script: Script, answer: Answer, max_sessions: int | None) -> None:
        super().__init__(script)
        self.answer = answer
        self.max_sessions = max_sessions
        self.steps: Counter[str] = Counter()

    def scripted(self, step: str) -> str | None:
        with self.lock:
            self.steps[step] += 1
            number = self.steps[step]
        return self.answer(step, number)

    def refuse_this_connection(self) -> bool:
        if self.max_sessions is not None:
            with self.lock:
                if self.concurrent > self.max_sessions:
                    self.refused += 1
                    return True
        return super().refuse_this_connection()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        reply = self.scripted("MAIL")
        if reply is not None:
            return reply
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.scripted("RCPT")
        if reply is not None:
            return reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.scripted("DATA")
        if reply is not None:
            return reply
        return await super().handle_DATA(server, session, envelope)


class Relay(SmtpServer):
    """An :class:`SmtpServer` playing a :class:`StepRelay`; ``auth_reply`` answers AUTH."""

    def __init__(self, answer: Answer = lambda step, n: None, *,
                 max_sessions: int | None = None, auth_reply: str | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        self.handler = StepRelay(self.script, answer, max_sessions)
        self.auth_reply = auth_reply

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if self.auth_reply is not None:
            return AuthResult(success=False, handled=False, message=self.auth_reply)
        return super()._authenticate(server, session, envelope, mechanism, auth_data)


def after(count: int, step: str, reply: str) -> Answer:
    """``reply`` to every ``step`` command after the first ``count``."""
    return lambda s, n: reply if s == step and n > count else None


def first(count: int, step: str, reply: str) -> Answer:
    """``reply`` to the first ``count`` ``step`` commands."""
    return lambda s, n: reply if s == step and n <= count else None


@contextmanager
def relay_thread(relay: Relay) -> Iterator[Relay]:
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


# -- an event, the transport's hooks -----------------------------------------------------------


def addresses(count: int) -> list[str]:
    return [f"user{i}@example.org" for i in range(count)]


def event(folder: Path, relay: SmtpServer, count: int, *, sending: str = "concurrency = 1\n",
          start: str | None = None) -> Path:
    smtp: dict[str, Value] = {"host": "127.0.0.1", "port": relay.port, "security": "none",
                              "timeout": 5}
    if relay.auth:
        smtp |= {"username": relay.auth[0], "allow_insecure_auth": True}
    rows = [(f"Deltager {i}", address, "da") for i, address in enumerate(addresses(count))]
    builder = EventBuilder(rows=rows).relay(smtp, {})
    builder.toml.section_source("sending", sending)
    if start is not None:
        builder.set("event", "start", Raw(start))
    return builder.write(folder).folder


def states(folder: Path) -> Counter[State]:
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:
        return Counter(row.state for row in journal.rows("invitation"))


class Hooks:
    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.retries: list[str] = []

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        assert outcome.key not in self.outcomes
        self.outcomes[outcome.key] = outcome

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        self.retries.append(reply)


def deliver_to(relay: Relay, count: int, **sending: Any) -> tuple[DeliveryReport, Hooks]:
    """Deliver ``count`` envelopes to ``relay`` (running in this loop) on a fake clock."""
    hooks = Hooks()
    clock = FakeClock()
    envelopes = (Envelope(key=a, sender="arrangementer@example.org", recipient=a,
                          data=b"Subject: hi\r\n\r\nhello\r\n", crlf=True)
                 for a in addresses(count))

    async def run() -> DeliveryReport:
        async with relay:
            return await deliver(envelopes, smtp=relay.smtp_settings(),
                                 sending=Sending(**sending), password=None, hooks=hooks,
                                 clock=clock, sleep=clock.sleep, local_hostname="client.test")

    return asyncio.run(run()), hooks


def sent_once(relay: SmtpServer, count: int) -> bool:
    return relay.received() == Counter(addresses(count))


# -- sender-quota: the run stops, the rows stay pending, status says which -----------------------


@pytest.mark.parametrize(("step", "reply", "name"), [
    ("DATA", GMAIL_DAILY, "Gmail daily sending limit"),
    ("DATA", M365_QUOTA, "Microsoft 365 daily recipient limit"),
    ("DATA", M365_TENANT, "Microsoft 365 tenant external recipient rate limit"),
    ("DATA", SES_DAILY, "Amazon SES daily sending quota"),
    ("DATA", MAILGUN, "the relay's sending quota"),
    ("MAIL", WORKSPACE_DAILY, "Google Workspace SMTP relay daily limit"),
], ids=["gmail", "m365", "m365-tenant", "ses", "mailgun", "workspace-relay"])
def test_relay_a_sender_quota_stops_the_run_with_the_rest_pending(
        tmp_path: Path, step: str, reply: str, name: str) -> None:
    with relay_thread(Relay(after(2, step, reply))) as relay:
        folder = event(tmp_path / "e", relay, 5)
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 3, run.output
        assert "Sent 2 messages, 0 failed, 0 uncertain" in run.stdout
        assert f"{name} is reached: {reply[:40]}" in run.stderr
        assert "stay pending (not failed)" in run.stderr and "Traceback" not in run.output
        assert states(folder) == {State.SENT: 2, State.PENDING: 3}
        assert sum(relay.received().values()) == 2

        status = run_cli("status", folder)
        assert "3 pending, 2 sent" in status.stdout
        assert "The last run stopped at " in status.stdout and name in status.stdout
        if reply is MAILGUN:  # the relay said when: status says it too
            assert "it frees at 11:00 on 2031-01-02 (Europe/Copenhagen time)" in status.stdout

        relay.handler.answer = lambda s, n: None  # the quota frees
        rerun = run_cli("send", folder, "--yes")
        assert rerun.exit_code == 0, rerun.output
        assert states(folder) == {State.SENT: 5} and sent_once(relay, 5)
        assert "The last run stopped" not in run_cli("status", folder).stdout


def test_relay_a_quota_with_four_connections_hands_over_nothing_more(tmp_path: Path) -> None:
    with relay_thread(Relay(after(6, "DATA", GMAIL_DAILY))) as relay:
        folder = event(tmp_path / "e", relay, 40, sending="concurrency = 4\n")
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 3, run.output
        found = states(folder)
        assert set(found) == {State.SENT, State.PENDING} and found[State.SENT] == 6
        # The in-flight ones finished; no new transaction started after the quota reply.
        assert relay.handler.steps["DATA"] <= 6 + 4


def test_relay_sendgrid_credits_at_auth_stop_before_anything_is_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", "apikey-secret")
    relay = Relay(auth=("apikey", "apikey-secret"), auth_require_tls=False,
                  auth_reply=SENDGRID_CREDITS)
    with relay_thread(relay):
        folder = event(tmp_path / "e", relay, 3)
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 1, run.output
        assert "SendGrid plan's credits is reached: 451 Authentication failed" in run.stderr
        assert "apikey-secret" not in run.output
        assert states(folder) == {State.PENDING: 3} and not relay.received()
        assert "SendGrid plan's credits" in run_cli("status", folder).stdout


# -- sender-blocked: stop, pending, say what to fix ------------------------------------------------


@pytest.mark.parametrize(("answer", "sent", "code", "name"), [
    (after(0, "DATA", "550 5.7.60 SMTP; Client does not have permissions to send as this "
                      "sender"), 0, 1, "Microsoft 365: no permission to send as this sender"),
    (after(3, "MAIL", "550 5.1.8 Access denied, bad outbound sender. AS(42004)"), 3, 3,
     "Microsoft 365 restricted sender"),
    (after(2, "RCPT", "550 5.2.255 Your account has been blocked because of continuous "
                      "invalid recipients"), 2, 3,
     "Microsoft 365 block for mailing invalid recipients"),
    (after(1, "MAIL", "553 5.7.1 <arrangementer@example.org>: Sender address rejected: not "
                      "owned by user"), 1, 3, "the relay refuses the sender address"),
], ids=["send-as", "restricted", "invalid-recipients", "sender-refused"])
def test_relay_a_blocked_sender_stops_the_run_with_the_rest_pending(
        tmp_path: Path, answer: Answer, sent: int, code: int, name: str) -> None:
    with relay_thread(Relay(answer)) as relay:
        folder = event(tmp_path / "e", relay, 5)
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == code, run.output
        assert f"takes no mail from this sender now: {name}" in run.stderr
        assert states(folder) == Counter({State.SENT: sent, State.PENDING: 5 - sent})
        assert name in run_cli("status", folder).stdout


# -- recipient-permanent and recipient-temporary: that registrant only ---------------------------


def test_relay_a_full_mailbox_fails_that_registrant_only(tmp_path: Path) -> None:
    script = Script(reject={"user1@example.org"},
                    reject_reply="552 5.2.2 The email account that you tried to reach is over "
                                 "quota.")
    with relay_thread(Relay(script=script)) as relay:
        folder = event(tmp_path / "e", relay, 4)
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 3, run.output
        assert "Sent 3 messages, 1 failed" in run.stdout
        assert states(folder) == {State.SENT: 3, State.FAILED: 1}
        assert "failed: user1@example.org (line 3): 552 5.2.2" in run_cli("status", folder).stdout


def test_relay_a_recipient_receiving_too_fast_is_retried_without_slowing_the_run() -> None:
    reply = ("450 4.2.1 The user you are trying to contact is receiving mail at a rate that "
             "prevents additional messages from being delivered.")
    report, hooks = deliver_to(Relay(first(2, "RCPT", reply)), 5, concurrency=1)
    assert report.sent == 5 and report.throttled == 0 and report.retried == 2
    assert hooks.retries == [reply] * 2
    # the worker went on with the next message while each refused one waited for its retry
    assert [hooks.outcomes[a].attempts for a in addresses(5)] == [2, 2, 1, 1, 1]


def test_relay_a_recipient_that_stays_unavailable_fails_after_max_attempts() -> None:
    reply = "451 4.7.1 <x@example.com>: Recipient address rejected: Greylisted"
    relay = Relay(script=Script(reject={"user0@example.org"}, reject_reply=reply))
    report, hooks = deliver_to(relay, 3, concurrency=1, max_attempts=3)
    assert report.stopped is None and report.throttled == 0
    assert hooks.outcomes["user0@example.org"].state == "failed"
    assert [hooks.outcomes[a].state for a in addresses(3)[1:]] == ["sent", "sent"]


# -- sender-rate, transient, concurrency -----------------------------------------------------------


@pytest.mark.parametrize(("step", "reply"), [
    ("DATA", "454 Throttling failure: Maximum sending rate exceeded."),
    ("MAIL", "450 4.2.1 Peak SMTP relay limit exceeded for customer. For more information on "
             "SMTP relay sending limits please contact your administrator"),
    ("DATA", "421 4.7.0 Rate limit exceeded, retry in 2 minutes"),
], ids=["ses", "workspace-relay", "retry-in"])
def test_relay_a_rate_reply_slows_the_whole_run(step: str, reply: str) -> None:
    report, hooks = deliver_to(Relay(first(1, step, reply)), 6, concurrency=2, rate=5.0)
    assert report.sent == 6 and report.throttled == 1 and hooks.retries == [reply]
    assert report.connections_dropped == 0


def test_relay_a_retry_time_within_minutes_is_waited_for() -> None:
    relay = Relay(first(1, "DATA", "421 4.7.0 Rate limit exceeded, retry in 2 minutes"))
    hooks = Hooks()
    clock = FakeClock()
    wall = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)

    async def run() -> DeliveryReport:
        async with relay:
            return await deliver(
                [Envelope("a", "s@example.org", "a@example.org", b"x\r\n", crlf=True)],
                smtp=relay.smtp_settings(), sending=Sending(concurrency=1), password=None,
                hooks=hooks, clock=clock, sleep=clock.sleep, local_hostname="client.test",
                wall_clock=lambda: wall)

    report = asyncio.run(run())
    assert report.sent == 1 and max(clock.sleeps) >= 120.0


@pytest.mark.parametrize("reply", ["451 4.3.0 Error: queue file write error",
                                   "421 4.4.2 smtp.example.org Error: timeout exceeded",
                                   "452 4.3.1 Insufficient system storage"])
def test_relay_a_transient_failure_is_retried_without_slowing_anyone(reply: str) -> None:
    report, hooks = deliver_to(Relay(first(2, "DATA", reply)), 5, concurrency=2, rate=5.0)
    assert report.sent == 5 and report.retried == 2 and report.throttled == 0
    assert hooks.retries == [reply] * 2


def test_relay_thread_limit_at_data_gives_up_connections_until_it_fits() -> None:
    reply = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
    relay = Relay()
    relay.handler.answer = lambda s, n: reply if s == "DATA" and relay.concurrent > 2 else None
    report, hooks = deliver_to(relay, 40, concurrency=4)
    assert report.sent == 40 and report.failed == 0 and report.throttled == 0
    assert report.connections_dropped >= 2 and set(hooks.retries) == {reply}
    assert len({t.connection for t in relay.transactions[-10:]}) <= 2
    assert sent_once(relay, 40)


def test_relay_too_many_connections_at_greeting_runs_on_fewer() -> None:
    script = Script(refuse_reply="421 4.3.2 The maximum number of concurrent connections has "
                                 "exceeded a limit, closing transmission channel")
    relay = Relay(script=script, max_sessions=2)
    report, _ = deliver_to(relay, 30, concurrency=4)
    # Connections that arrive together may all see three others and all be refused: three
    # workers give theirs up, the last one backs off and tries again.
    assert report.sent == 30 and report.throttled == 0 and report.failed == 0
    assert 2 <= report.connections_dropped <= 3 <= relay.handler.refused + 1
    assert len({t.connection for t in relay.transactions}) <= 2 and sent_once(relay, 30)


def test_relay_never_gives_up_the_last_connection() -> None:
    reply = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
    report, _ = deliver_to(Relay(first(3, "DATA", reply)), 3, concurrency=1)
    assert report.sent == 3 and report.connections_dropped == 0 and report.retried == 3


# -- the daily limit -------------------------------------------------------------------------------


def send_at(folder: Path, wall: dt.datetime) -> SendResult:
    campaign = Campaign.open(folder, now=NOW)
    clock = FakeClock()

    class Quiet:
        def started(self, total: int) -> None: ...
        def finished(self, key: str, state: str, reply: str) -> None: ...
        def retrying(self, key: str, reply: str, delay: float) -> None: ...

    return asyncio.run(send(campaign, password=None, options=SendOptions(), progress=Quiet(),
                            clock=clock, sleep=clock.sleep, wall_clock=lambda: wall))


def test_relay_daily_limit_stops_a_run_and_a_rerun_continues_when_the_window_frees(
        tmp_path: Path) -> None:
    t0 = dt.datetime(2030, 3, 1, 13, 5, tzinfo=dt.UTC)  # 14:05 in Copenhagen
    with relay_thread(Relay()) as relay:
        folder = event(tmp_path / "e", relay, 5, sending='concurrency = 2\ndaily_limit = '
                                                         '"3/day"\n')
        first_run = send_at(folder, t0)
        assert first_run.sent == 3 and isinstance(first_run.stopped, DailyLimitReached)
        assert str(first_run.stopped) == (
            "the daily limit of 3 is reached (3 sent in the last 24 hours); the window frees "
            "at 14:05 tomorrow (Europe/Copenhagen time); run send again then")
        assert states(folder) == {State.SENT: 3, State.PENDING: 2}

        second = send_at(folder, t0 + dt.timedelta(hours=23))
        assert second.sent == 0 and isinstance(second.stopped, DailyLimitReached)
        assert "the window frees at 14:05 today" in str(second.stopped)
        assert sum(relay.received().values()) == 3

        third = send_at(folder, t0 + dt.timedelta(hours=24))
        assert third.sent == 2 and third.stopped is None and third.complete
        assert states(folder) == {State.SENT: 5} and sent_once(relay, 5)


def test_relay_daily_limit_counts_every_template_of_the_event(tmp_path: Path) -> None:
    t0 = dt.datetime(2030, 3, 1, 9, 0, tzinfo=dt.UTC)
    with relay_thread(Relay()) as relay:
        folder = event(tmp_path / "e", relay, 3, sending='daily_limit = "4/day"\n')
        assert send_at(folder, t0).sent == 3
        campaign = Campaign.open(folder, template="reminder", now=NOW)
        clock = FakeClock()
        result = asyncio.run(send(campaign, password=None, options=SendOptions(),
                                  progress=_Silent(), clock=clock, sleep=clock.sleep,
                                  wall_clock=lambda: t0 + dt.timedelta(hours=1)))
        assert result.sent == 1 and isinstance(result.stopped, DailyLimitReached)


class _Silent:
    def started(self, total: int) -> None: ...
    def finished(self, key: str, state: str, reply: str) -> None: ...
    def retrying(self, key: str, reply: str, delay: float) -> None: ...


def test_relay_daily_limit_from_the_cli_and_in_status(tmp_path: Path) -> None:
    with relay_thread(Relay()) as relay:
        folder = event(tmp_path / "e", relay, 3, sending='daily_limit = "2/day"\n')
        run = run_cli("send", folder, "--yes")
        assert run.exit_code == 3, run.output
        assert "Error: the run stopped: the daily limit of 2 is reached" in run.stderr
        assert "run the same command again then" in run.stderr
        status = run_cli("status", folder).stdout
        assert "Daily limit 2: 2 sent in the last 24 hours, the next can go at" in status
        assert "The last run stopped at" in status

        again = run_cli("send", folder, "--yes")
        assert again.exit_code == 1 and "Sent 0 messages" in again.stdout
        assert states(folder) == {State.SENT: 2, State.PENDING: 1}

        # A day later: the journal's sends are older than 24 hours.
        db = sqlite3.connect(folder / ".invitemail" / "journal.sqlite")
        day_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)).isoformat(
            timespec="seconds")
        with db:
            db.execute("UPDATE deliveries SET sent_at = ? WHERE state = 'sent'", (day_ago,))
        db.close()
        last = run_cli("send", folder, "--yes")
        assert last.exit_code == 0, last.output
        assert states(folder) == {State.SENT: 3} and sent_once(relay, 3)
        assert "Daily limit 2: 1 sent in the last 24 hours, 1 more can go now." in run_cli(
            "status", folder).stdout


@pytest.mark.parametrize(("sending", "count", "warned"), [
    ('rate = "1/min"\n', 200, "at sending.rate 1/min only about 12"),
    ('daily_limit = "50/day"\n', 100, "at sending.daily_limit 50/day only about 50"),
    ('rate = "1/min"\ndaily_limit = "50/day"\n', 20, None),
])
def test_relay_check_warns_when_the_list_cannot_go_before_the_event(
        tmp_path: Path, sending: str, count: int, warned: str | None) -> None:
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2, minutes=1)).astimezone(
        ZoneInfo("Europe/Copenhagen")).strftime("%Y-%m-%dT%H:%M:00")
    relay = SmtpServer()  # not started: check does not connect
    relay.port = 2525
    folder = event(tmp_path / "e", relay, count, sending=sending, start=start)
    run = run_cli("check", folder)
    assert run.exit_code == 0, run.output
    if warned is None:
        assert "warning" not in run.stderr
    else:
        assert f"{count} message(s) are still to send, and {warned}" in run.stderr


# -- the setting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "said"), [
    ('"2000/week"', "'2000/week' is not a daily limit"),
    ('"0/day"', "'0/day' is not a daily limit"),
    ('"lots"', "'lots' is not a daily limit"),
    ("0", "0 is not a daily limit"),
    ("true", "must be text, not true/false"),
])
def test_relay_a_wrong_daily_limit_names_file_line_and_key(tmp_path: Path, written: str,
                                                            said: str) -> None:
    event = EventBuilder().set("sending", "daily_limit", Raw(written)).write(tmp_path / "e")
    run = run_cli("check", event.folder)
    assert run.exit_code == 1
    assert f"{event.where('sending', 'daily_limit')}: sending.daily_limit: {said}" in run.stderr
    assert "Traceback" not in run.output


@pytest.mark.parametrize(("written", "limit"), [('"2000/day"', 2000), ('"500 / 24h"', 500),
                                                ("10000", 10000), ('"3/DAY"', 3)])
def test_relay_daily_limit_is_read_in_its_forms(tmp_path: Path, written: str,
                                                limit: int) -> None:
    from invitemail.inputs.config import load_config

    event = EventBuilder().set("sending", "daily_limit", Raw(written)).write(tmp_path / "e")
    assert load_config(event.folder).sending.daily_limit == limit


def test_relay_status_says_when_a_quota_time_has_passed(tmp_path: Path) -> None:
    with relay_thread(Relay()) as relay:
        folder = event(tmp_path / "e", relay, 3)
        assert run_cli("send", folder, "--yes").exit_code == 0
    journal = Journal.open(folder, create=False)
    assert journal is not None
    with journal:  # as a run stopped by a quota that freed long ago leaves it
        journal.record_stop("invitation", "Gmail daily sending limit (550 5.4.5 ...)",
                            dt.datetime(2020, 1, 2, 10, 0, tzinfo=dt.UTC))
        journal.db.execute("UPDATE deliveries SET state = 'pending' "
                           "WHERE key = 'user2@example.org'")
    status = run_cli("status", folder).stdout
    assert "Gmail daily sending limit (550 5.4.5 ...); it frees at 11:00 on 2020-01-02 " \
           "(Europe/Copenhagen time) (that time has passed: run send again)." in status


def test_relay_a_reply_time_in_the_past_is_no_reason_to_stop() -> None:
    reply = "421 4.7.0 Service busy, try again after 2020-01-01 10:00 UTC"
    report, hooks = deliver_to(Relay(first(1, "DATA", reply)), 3, concurrency=1)
    # The relay closed the connection after its 421: the second message, whose envelope went
    # in the same pipelined write, is retried too.
    assert report.stopped is None and report.sent == 3
    assert hooks.retries == [reply, "not sent: the relay closed the connection"]
