"""The reply table: real replies of real relays, each judged by code, text and step.

Pure: no server. The end-to-end half (a scripted relay replaying each class through a send)
is tests/test_relay_classes.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invitemail.send.replies import (
    LONG_WAIT,
    RULES,
    ReplyClass,
    Rule,
    Step,
    classification_table,
    classify,
    retry_after,
)

NOW = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC)
README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")

QUOTA, RATE = ReplyClass.SENDER_QUOTA, ReplyClass.SENDER_RATE
BLOCKED, CONCURRENCY = ReplyClass.SENDER_BLOCKED, ReplyClass.CONCURRENCY
TRANSIENT = ReplyClass.TRANSIENT
PERMANENT, TEMPORARY = ReplyClass.RECIPIENT_PERMANENT, ReplyClass.RECIPIENT_TEMPORARY


def judge(step: Step, reply: str) -> ReplyClass:
    return classify(step, int(reply[:3]), reply[4:], now=NOW).reply_class


@pytest.mark.parametrize("rule", RULES, ids=[f"{r.reply_class}:{r.name}" for r in RULES])
def test_replies_every_rule_is_the_first_match_for_its_own_example(rule: Rule) -> None:
    verdict = classify(rule.step_of_example, int(rule.example[:3]), rule.example[4:], now=NOW)
    assert verdict.rule is rule
    assert verdict.reply_class is rule.reply_class


# The replies of the issue and more of the same relays, with the step they answer.
REAL_REPLIES: list[tuple[Step, str, ReplyClass, str]] = [
    (Step.DATA, "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail "
     "sending limits go to https://support.google.com/a/answer/166852 - gsmtp", QUOTA,
     "Gmail daily sending limit"),
    (Step.MAIL, "550 5.4.5 Daily user sending quota exceeded. s3-20020a05 - gsmtp", QUOTA,
     "Gmail daily sending limit"),
    (Step.RCPT, "550 5.4.5 Daily SMTP relay limit exceeded for user, for more information "
     "on SMTP relay limits please contact your administrator", QUOTA,
     "Google Workspace SMTP relay daily limit"),
    (Step.DATA, "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
     "Failed to process message due to a permanent exception with message [BeginDiagnostic"
     "Data]Cannot submit message.", QUOTA, "Microsoft 365 daily recipient limit"),
    (Step.DATA, "550 5.7.233 Your message can't be sent because your tenant exceeded its "
     "daily limit for sending email to external recipients (tenant external recipient rate "
     "limit)", QUOTA, "Microsoft 365 tenant external recipient rate limit"),
    (Step.DATA, "454 Throttling failure: Daily message quota exceeded.", QUOTA,
     "Amazon SES daily sending quota"),
    (Step.AUTH, "451 Authentication failed: Maximum credits exceeded", QUOTA,
     "SendGrid plan's credits"),
    (Step.DATA, "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", CONCURRENCY,
     "Microsoft 365 connections per mailbox"),
    (Step.GREETING, "421 4.3.2 The maximum number of concurrent connections has exceeded a "
     "limit, closing transmission channel", CONCURRENCY, "too many connections"),
    (Step.GREETING, "421 4.7.0 mail.example.org Error: too many connections from 192.0.2.7",
     CONCURRENCY, "too many connections"),
    (Step.MAIL, "450 4.2.1 Peak SMTP relay limit exceeded for customer. For more "
     "information on SMTP relay sending limits please contact your administrator", RATE,
     "Google Workspace SMTP relay peak rate"),
    (Step.DATA, "454 Throttling failure: Maximum sending rate exceeded.", RATE,
     "Amazon SES maximum send rate"),
    (Step.RCPT, "550 5.2.255 Your account has been temporarily blocked because of "
     "continuous invalid recipients", BLOCKED,
     "Microsoft 365 block for mailing invalid recipients"),
    (Step.MAIL, "550 5.1.8 Access denied, bad outbound sender. AS(42004)", BLOCKED,
     "Microsoft 365 restricted sender"),
    (Step.DATA, "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
     BLOCKED, "Microsoft 365: no permission to send as this sender"),
    (Step.DATA, "554 Message rejected: Sending paused for this account. For more "
     "information, please check the AWS Management Console.", BLOCKED,
     "Amazon SES sending paused for the account"),
    (Step.DATA, "550 The from address does not match a verified Sender Identity. Mail "
     "cannot be sent until this error is resolved. Visit https://sendgrid.com/docs/for-"
     "developers/sending-email/sender-identity/ to see the Sender Identity requirements",
     BLOCKED, "SendGrid unverified sender identity"),
    (Step.RCPT, "550 5.1.1 The email account that you tried to reach does not exist. - "
     "gsmtp", PERMANENT, "refused for this recipient"),
    (Step.RCPT, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
     "address lookup", PERMANENT, "refused for this recipient"),
    (Step.RCPT, "552 5.2.2 The email account that you tried to reach is over quota.",
     PERMANENT, "recipient's mailbox is full"),
    (Step.RCPT, "452 4.2.2 The email account that you tried to reach is over quota.",
     TEMPORARY, "recipient's mailbox is full"),
    (Step.RCPT, "450 4.2.1 The user you are trying to contact is receiving mail at a rate "
     "that prevents additional messages from being delivered.", TEMPORARY,
     "recipient receives mail too fast"),
    (Step.RCPT, "451 4.7.1 <x@example.com>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/", TEMPORARY, "greylisted"),
    (Step.DATA, "421 4.4.2 smtp.example.org Error: timeout exceeded", TRANSIENT,
     "the relay timed out"),
    (Step.DATA, "451 4.3.0 Error: queue file write error", TRANSIENT,
     "the relay's local error"),
    (Step.DATA, "451 4.3.0 Temporary failure, please try again later", TRANSIENT,
     "the relay's temporary failure"),
    (Step.DATA, "451 Temporary failure, please try again later", RATE,
     "the relay asks to slow down"),
    (Step.DATA, "421 4.7.28 Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address. To protect our users from spam, mail sent from your "
     "IP address has been temporarily rate limited.", RATE,
     "Gmail rate limit for unusual traffic"),
    (Step.GREETING, "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using "
     "zen.spamhaus.org", BLOCKED, "the sending host is on a blocklist"),
]


@pytest.mark.parametrize(("step", "reply", "expected", "name"), REAL_REPLIES,
                         ids=[f"{r[0]}:{r[1][:40]}" for r in REAL_REPLIES])
def test_replies_real_relay_texts_are_judged_by_their_meaning(
        step: Step, reply: str, expected: ReplyClass, name: str) -> None:
    verdict = classify(step, int(reply[:3]), reply[4:], now=NOW)
    assert (verdict.reply_class, verdict.name) == (expected, name)


@pytest.mark.parametrize("reply", [
    "552 5.2.2 <x@example.org>: mailbox full",
    "452 4.2.2 Mailbox full",
    "552 5.2.2 Quota exceeded for the recipient",
    "550 5.2.2 mailbox is full: user over quota",
])
def test_replies_a_full_mailbox_is_the_recipients_never_a_sender_quota(reply: str) -> None:
    assert judge(Step.RCPT, reply) in (PERMANENT, TEMPORARY)


@pytest.mark.parametrize(("step", "code", "expected"), [
    (Step.RCPT, 550, PERMANENT), (Step.DATA, 554, PERMANENT),
    (Step.MAIL, 553, BLOCKED), (Step.GREETING, 554, BLOCKED), (Step.AUTH, 535, BLOCKED),
    (Step.RCPT, 450, TEMPORARY), (Step.RCPT, 451, TEMPORARY), (Step.RCPT, 452, TEMPORARY),
    (Step.RCPT, 421, RATE), (Step.DATA, 421, RATE), (Step.DATA, 451, RATE),
    (Step.MAIL, 454, RATE), (Step.DATA, 450, TRANSIENT), (Step.DATA, 452, TRANSIENT),
    (Step.GREETING, 432, TRANSIENT), (Step.DATA, -1, TRANSIENT),
])
def test_replies_an_unknown_text_falls_back_on_code_and_step(
        step: Step, code: int, expected: ReplyClass) -> None:
    verdict = classify(step, code, "something no rule knows", now=NOW)
    assert verdict.reply_class is expected and verdict.rule is None


@pytest.mark.parametrize(("text", "expected"), [
    ("4.7.0 try again after 2026-12-02 10:00 UTC", dt.datetime(2026, 12, 2, 10, 0,
                                                                 tzinfo=dt.UTC)),
    ("Try again after 2026-12-02T10:00:30Z", dt.datetime(2026, 12, 2, 10, 0, 30,
                                                           tzinfo=dt.UTC)),
    ("sending resumes at 2026-12-02 11:00 +01:00", dt.datetime(2026, 12, 2, 10, 0,
                                                                 tzinfo=dt.UTC)),
    ("limit reached until 2026-12-02 11:00+0100", dt.datetime(2026, 12, 2, 10, 0,
                                                                tzinfo=dt.UTC)),
    ("please retry in 10 minutes", NOW + dt.timedelta(minutes=10)),
    ("Try again in 30 seconds", NOW + dt.timedelta(seconds=30)),
    ("retry after 2 hours", NOW + dt.timedelta(hours=2)),
    ("4.7.0 Try again later, closing connection", None),
    ("5.4.5 Daily user sending limit exceeded", None),
])
def test_replies_retry_after_reads_when_to_try_again(text: str,
                                                     expected: dt.datetime | None) -> None:
    assert retry_after(text, now=NOW) == expected


def test_replies_a_long_wait_is_a_quota_and_a_short_one_a_rate_with_its_time() -> None:
    long = classify(Step.DATA, 421, "4.7.0 Service busy, try again after 2026-12-02 10:00 UTC",
                    now=NOW)
    assert long.reply_class is QUOTA and long.until == dt.datetime(2026, 12, 2, 10,
                                                                   tzinfo=dt.UTC)
    short = classify(Step.DATA, 421, "4.7.0 Rate limit exceeded, retry in 2 minutes", now=NOW)
    assert short.reply_class is RATE and short.until == NOW + dt.timedelta(minutes=2)
    minutes = int(LONG_WAIT.total_seconds() // 60)  # exactly the longest wait: still a rate
    edge = classify(Step.DATA, 421, f"4.7.0 busy, retry in {minutes} minutes", now=NOW)
    assert edge.reply_class is RATE
    over = classify(Step.DATA, 421, f"4.7.0 busy, retry in {minutes + 1} minutes", now=NOW)
    assert over.reply_class is QUOTA
    # A recipient's own trouble stays the recipient's, however long the wait.
    greylisted = classify(Step.RCPT, 450, "4.2.0 Greylisted, retry in 1 hours", now=NOW)
    assert greylisted.reply_class is TEMPORARY


@given(step=st.sampled_from(list(Step)), code=st.integers(-1, 599), text=st.text(max_size=200))
def test_replies_any_reply_gets_a_class_and_a_name(step: Step, code: int, text: str) -> None:
    verdict = classify(step, code, text, now=NOW)
    assert verdict.reply_class in ReplyClass and verdict.name
    if verdict.until is not None:
        assert verdict.until.tzinfo is not None


def test_replies_the_readme_table_matches_the_code() -> None:
    table = README.split("<!-- replies:start -->\n", 1)[1].split("<!-- replies:end -->")[0]
    assert table == classification_table(), (
        "README's reply table is out of date; replace it with the output of "
        "invitemail.send.replies.classification_table()")
