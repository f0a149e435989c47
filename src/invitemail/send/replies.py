"""What a relay's reply means: a table of rules, no I/O.

A reply is judged from its code, its enhanced status code (RFC 3463), its text and the step
it answers (greeting, AUTH, MAIL, RCPT, DATA), because the code alone misleads: Gmail answers
a full daily quota with ``550 5.4.5`` (a 5xx, but not this recipient's fault), Microsoft 365
a busy mailbox with ``432 4.3.2`` (a 4xx that asks for fewer connections, not a slower rate).

:data:`RULES` is read top to bottom and the first rule that matches wins; a reply no rule
knows falls back on its code class (:func:`_fallback`). Each rule carries a real reply as
its example: the tests replay every example, and the README's table is made from
:func:`classification_table`, so the table, the tests and the code say the same.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

__all__ = [
    "RULES",
    "ReplyClass",
    "Rule",
    "Step",
    "Verdict",
    "classification_table",
    "classify",
    "retry_after",
]


class Step(enum.StrEnum):
    """The step a reply answers."""

    GREETING = "greeting"  # the banner, EHLO/HELO and STARTTLS: setting up the connection
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"  # the DATA command and the reply after the message


class ReplyClass(enum.StrEnum):
    """What the run does about a reply."""

    RECIPIENT_PERMANENT = "recipient-permanent"  # this registrant `failed`
    RECIPIENT_TEMPORARY = "recipient-temporary"  # retry this registrant later
    SENDER_RATE = "sender-rate"  # slow the whole run down, then retry
    SENDER_QUOTA = "sender-quota"  # stop cleanly: rows stay pending until the quota frees
    CONCURRENCY = "concurrency"  # use one connection fewer, then retry
    TRANSIENT = "transient"  # retry this message with backoff; nobody else slows down
    SENDER_BLOCKED = "sender-blocked"  # stop: no message can go until someone acts

    @property
    def stops_the_run(self) -> bool:
        return self in (ReplyClass.SENDER_QUOTA, ReplyClass.SENDER_BLOCKED)


ALL_STEPS: frozenset[Step] = frozenset(Step)
SENDING_STEPS: frozenset[Step] = frozenset({Step.MAIL, Step.RCPT, Step.DATA})
# A relay that asks to wait longer than this is over a quota, not a rate: stop the run
# rather than keep connections waiting for hours.
LONG_WAIT: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table. Every condition given must hold; ``None`` matches anything."""

    reply_class: ReplyClass
    name: str  # what a user reads: "Gmail daily sending limit"
    example: str  # a real reply this rule is for, code first
    steps: frozenset[Step] = ALL_STEPS
    codes: frozenset[int] | None = None
    enhanced: str | None = None  # a regex for the whole enhanced code, e.g. r"5\.4\.5"
    text: str | None = None  # a regex searched in the text, case-insensitive
    example_step: Step | None = None  # the step of ``example`` (default: the first step)

    def matches(self, step: Step, code: int, enhanced: str | None, text: str) -> bool:
        if step not in self.steps or (self.codes is not None and code not in self.codes):
            return False
        if self.enhanced is not None and (
                enhanced is None or not re.fullmatch(self.enhanced, enhanced)):
            return False
        return self.text is None or re.search(self.text, text, re.IGNORECASE) is not None

    @property
    def step_of_example(self) -> Step:
        return self.example_step or min(self.steps, key=list(Step).index)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one reply means."""

    reply_class: ReplyClass
    name: str
    until: dt.datetime | None = None  # the relay said: not before this time (UTC)
    rule: Rule | None = None  # None: judged by the code class alone


Q, R, C = ReplyClass.SENDER_QUOTA, ReplyClass.SENDER_RATE, ReplyClass.CONCURRENCY
B, T = ReplyClass.SENDER_BLOCKED, ReplyClass.TRANSIENT
RP, RT = ReplyClass.RECIPIENT_PERMANENT, ReplyClass.RECIPIENT_TEMPORARY

RULES: tuple[Rule, ...] = (
    # -- the recipient's mailbox: "over quota" here is theirs, not the sender's -----------
    Rule(RT, "recipient's mailbox is full",
       "452 4.2.2 The email account that you tried to reach is over quota.",
       steps=SENDING_STEPS, codes=frozenset({450, 451, 452}),
       text=r"mailbox (is )?full|over ?quota|quota exceeded for (the )?recipient|insufficient "
            r"storage for (the )?recipient", example_step=Step.RCPT),
    Rule(RP, "recipient's mailbox is full",
       "552 5.2.2 The email account that you tried to reach is over quota.",
       steps=SENDING_STEPS, codes=frozenset({550, 552, 554}), enhanced=r"5\.2\.2",
       example_step=Step.RCPT),
    Rule(RT, "recipient receives mail too fast",
       "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents "
       "additional messages from being delivered.",
       steps=SENDING_STEPS, text=r"user you are trying to contact is receiving mail",
       example_step=Step.RCPT),
    Rule(RT, "greylisted", "450 4.2.0 <x@example.com>: Recipient address rejected: Greylisted",
       steps=SENDING_STEPS, codes=frozenset({450, 451, 452}),
       text=r"grey ?list|gray ?list", example_step=Step.RCPT),
    # -- sender-wide quotas: stop cleanly, everyone left stays pending --------------------
    Rule(Q, "Google Workspace SMTP relay daily limit",
       "550 5.4.5 Daily SMTP relay limit exceeded for user, for more information on SMTP "
       "relay limits please contact your administrator",
       text=r"daily SMTP relay limit", example_step=Step.MAIL),
    Rule(Q, "Gmail daily sending limit",
       "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending "
       "limits go to https://support.google.com/a/answer/166852 - gsmtp",
       text=r"daily user sending (quota|limit)", example_step=Step.DATA),
    Rule(Q, "Microsoft 365 daily recipient limit",
       "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
       "process message due to a permanent exception with message Cannot submit message.",
       text=r"SubmissionQuotaExceeded", example_step=Step.DATA),
    Rule(Q, "Microsoft 365 daily recipient limit",
       "550 5.1.90 Your message can't be sent because you've reached your daily limit for "
       "message recipients.", enhanced=r"5\.1\.90", example_step=Step.DATA),
    Rule(Q, "Microsoft 365 tenant external recipient rate limit",
       "550 5.7.233 Your message can't be sent because your organization has exceeded its "
       "tenant external recipient rate limit",
       text=r"tenant external recipient rate limit|5\.7\.233", example_step=Step.DATA),
    Rule(Q, "Amazon SES daily sending quota",
       "454 Throttling failure: Daily message quota exceeded.",
       text=r"daily message quota exceeded", example_step=Step.DATA),
    Rule(Q, "SendGrid plan's credits",
       "451 Authentication failed: Maximum credits exceeded",
       text=r"maximum credits exceeded", example_step=Step.AUTH),
    # -- a sender that may not send at all until someone acts -----------------------------
    Rule(B, "Microsoft 365 block for mailing invalid recipients",
       "550 5.2.255 Your account has been blocked for sending to too many invalid recipients "
       "(continuous invalid recipients)",
       text=r"continuous invalid recipients|too many invalid recipients",
       example_step=Step.RCPT),
    Rule(B, "Microsoft 365 restricted sender",
       "550 5.1.8 Access denied, bad outbound sender. AS(42004)",
       text=r"bad outbound sender|restricted from sending|banned sender",
       example_step=Step.MAIL),
    Rule(B, "Microsoft 365: no permission to send as this sender",
       "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
       text=r"permissions? to send as this sender", example_step=Step.DATA),
    Rule(B, "Amazon SES sending paused for the account",
       "554 Message rejected: Sending paused for this account. For more information, please "
       "check the AWS Management Console.",
       text=r"sending (paused|suspended) for this account", example_step=Step.DATA),
    Rule(B, "SendGrid unverified sender identity",
       "550 The from address does not match a verified Sender Identity. Mail cannot be sent "
       "until this error is resolved.",
       text=r"verified Sender Identity", example_step=Step.DATA),
    Rule(B, "the sending host is on a blocklist",
       "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
       codes=frozenset(range(500, 600)), text=r"blocked using|block ?list|spamhaus",
       example_step=Step.GREETING),
    # Postfix (smtpd_delay_reject = yes, its default) and others answer a refused sender at
    # each RCPT, not at MAIL: the sender's trouble, not this registrant's.
    Rule(B, "the relay refuses the sender address",
       "554 5.7.1 <arrangementer@example.org>: Sender address rejected: Access denied",
       steps=SENDING_STEPS, codes=frozenset(range(500, 600)),
       text=r"sender address rejected", example_step=Step.RCPT),
    # -- too many connections at once ------------------------------------------------------
    Rule(C, "Microsoft 365 connections per mailbox",
       "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
       text=r"sender thread limit", example_step=Step.DATA),
    Rule(C, "too many connections",
       "421 4.7.0 Too many connections, try again later",
       codes=frozenset(range(400, 500)),
       text=r"too many (concurrent |simultaneous |open )?(smtp )?(connections|sessions)"
            r"|concurrent connections|connection limit", example_step=Step.GREETING),
    # -- the sending rate ------------------------------------------------------------------
    Rule(R, "Google Workspace SMTP relay peak rate",
       "450 4.2.1 Peak SMTP relay limit exceeded for customer. For more information on SMTP "
       "relay sending limits please contact your administrator",
       text=r"peak SMTP relay limit", example_step=Step.MAIL),
    Rule(R, "Amazon SES maximum send rate",
       "454 Throttling failure: Maximum sending rate exceeded.",
       text=r"maximum sending rate exceeded", example_step=Step.DATA),
    Rule(R, "Gmail rate limit for unusual traffic",
       "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating "
       "from your IP address. To protect our users from spam, mail sent from your IP address "
       "has been temporarily rate limited.",
       codes=frozenset(range(400, 500)), text=r"unusual rate|temporarily rate limited",
       example_step=Step.DATA),
    # -- the relay itself is having a moment -----------------------------------------------
    Rule(T, "the relay timed out", "421 4.4.2 smtp.example.org Error: timeout exceeded",
       codes=frozenset(range(400, 500)), enhanced=r"4\.4\.\d{1,3}", example_step=Step.DATA),
    Rule(T, "the relay's local error",
       "451 4.3.0 Error: queue file write error",
       codes=frozenset(range(400, 500)),
       text=r"queue file write error|local error in processing|insufficient system "
            r"(storage|resources)|temporary lookup failure", example_step=Step.DATA),
    # -- the words of a quota, a rate or a connection limit, from any relay ----------------
    Rule(Q, "the relay's sending quota",
       "421 4.7.0 Domain example.org has exceeded its sending limit, try again after "
       "2026-12-02 10:00 UTC",
       text=r"(daily|hourly|monthly|sending|message|recipient|send) (quota|limit)( was| has "
            r"been| is)? (exceeded|reached|hit)|(exceeded|reached) (its|the|your) "
            r"(daily |hourly |monthly )?(sending |message )?(quota|limit)",
       example_step=Step.DATA),
    Rule(R, "the relay's rate limit", "451 4.7.1 Rate limit exceeded, slow down",
       codes=frozenset(range(400, 500)),
       text=r"rate limit|too many (messages|mails|emails)|throttl|sending rate|slow down",
       example_step=Step.DATA),
    # -- a mail system status (RFC 3463 X.3.X) with none of the words above: the relay's own
    # passing trouble, not a rate. Slowing everyone for it would sink the run when a relay
    # fails a fifth of its messages at random; the message is retried with backoff.
    Rule(T, "the relay's temporary failure", "451 4.3.0 Temporary failure",
       codes=frozenset(range(400, 500)), enhanced=r"4\.3\.\d{1,3}", example_step=Step.DATA),
)


# -- the fallback: the code class -----------------------------------------------------------

# Postfix, Exchange and SES say "slow down" with these: product.md promises that a relay
# that throttles slows the run down rather than failing it.
THROTTLING_CODES: frozenset[int] = frozenset({421, 451, 454})


def _fallback(step: Step, code: int) -> Verdict:
    if not 400 <= code <= 599:  # garbled, or not SMTP at all
        return Verdict(T, "an unreadable reply")
    if code >= 500:
        if step in (Step.RCPT, Step.DATA):
            return Verdict(RP, "refused for this recipient")
        what = {Step.GREETING: "refuses the connection", Step.AUTH: "refuses the login",
                Step.MAIL: "refuses the sender address"}[step]
        return Verdict(B, f"the relay {what}")
    if step is Step.RCPT and code in (450, 451, 452):
        return Verdict(RT, "temporarily refused for this recipient")
    if code in THROTTLING_CODES:
        return Verdict(R, "the relay asks to slow down")
    return Verdict(T, "a temporary failure")


_ENHANCED = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")


def classify(step: Step, code: int, text: str, *, now: dt.datetime) -> Verdict:
    """What the reply ``code text`` to ``step`` means. ``now`` (aware) anchors a relative
    "try again in 10 minutes"; a relay that asks to wait longer than :data:`LONG_WAIT` is
    treated as a quota whatever the rule said, since waiting connections help nobody."""
    found = _ENHANCED.match(text)
    enhanced = found.group(1) if found else None
    verdict = next((Verdict(rule.reply_class, rule.name, rule=rule) for rule in RULES
                    if rule.matches(step, code, enhanced, text)), None)
    if verdict is None:
        verdict = _fallback(step, code)
    until = retry_after(text, now=now)
    if until is None:
        return verdict
    cls = verdict.reply_class
    if until - now > LONG_WAIT and cls in (R, C, T, Q):
        cls = Q
    return Verdict(cls, verdict.name, until, verdict.rule)


# -- "try again after ..." -----------------------------------------------------------------

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
          "hr": 3600, "hour": 3600, "d": 86400, "day": 86400}
_RELATIVE = re.compile(
    r"(?:retry|try again|again|wait|come back|resume)\w*\s+(?:in|after)\s+(?:about\s+)?"
    r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)\b",
    re.IGNORECASE)
_ABSOLUTE = re.compile(
    r"(?:after|until|at|from)\s+(\d{4}-\d{2}-\d{2})[T ](\d{1,2}:\d{2}(?::\d{2})?)"
    r"(?:\.\d+)?\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?", re.IGNORECASE)


def retry_after(text: str, *, now: dt.datetime) -> dt.datetime | None:
    """The time a reply asks to try again at, in UTC, if it says: "try again after
    2026-12-02 10:00 UTC", "retry in 10 minutes", "try again in 30 seconds". A time
    without a zone is read as UTC. None when the text says no time."""
    found = _ABSOLUTE.search(text)
    if found:
        date, clock, zone = found.groups()
        if clock.count(":") == 1:
            clock += ":00"
        offset = "+00:00" if zone is None or zone.upper() in ("Z", "UTC", "GMT") else zone
        if len(offset) == 5:  # +0100
            offset = offset[:3] + ":" + offset[3:]
        try:
            when = dt.datetime.fromisoformat(f"{date}T{clock.zfill(8)}{offset}")
        except ValueError:
            return None
        return when.astimezone(dt.UTC)
    found = _RELATIVE.search(text)
    if found:
        unit = found.group(2).lower().rstrip("s") or "s"
        seconds = float(found.group(1)) * _UNITS[unit]
        return (now + dt.timedelta(seconds=seconds)).astimezone(dt.UTC)
    return None


# -- the README's table ----------------------------------------------------------------------

WHAT_HAPPENS: dict[ReplyClass, str] = {
    RP: "that registrant is `failed` (`--retry-failed` tries again)",
    RT: "that registrant is retried later, up to `max_attempts`",
    R: "the whole run slows down, then the message is retried",
    Q: "the run stops; the rows not sent stay `pending`; `status` says which quota and when "
       "it frees",
    C: "the run closes one connection (never the last) and retries",
    T: "that message is retried with backoff; nobody else slows down",
    B: "the run stops; the rows not sent stay `pending`; fix what the reply says, then rerun",
}


def classification_table() -> str:
    """The README's table of replies (Markdown)."""
    rows = ["| class | what it is | step | a real reply |", "| --- | --- | --- | --- |"]
    for rule in RULES:
        example = rule.example.replace("|", "\\|")
        rows.append(f"| {rule.reply_class} | {rule.name} | {rule.step_of_example} | "
                    f"`{example}` |")
    rows.append("")
    rows.append("| class | what invitemail does |")
    rows.append("| --- | --- |")
    rows += [f"| {cls} | {what} |" for cls, what in WHAT_HAPPENS.items()]
    return "\n".join(rows) + "\n"
