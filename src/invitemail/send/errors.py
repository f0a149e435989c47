"""The send stage's errors, in one place (as aiosmtplib keeps its own).

:class:`TransportError` is the family: the relay cannot be used as configured, or the run
stopped because of what the relay said. Each text names ``host:port`` and each error carries
the hint that says what to do next; the CLI turns them into output with the exit code
:class:`~invitemail.errors.ExitCode` gives. The texts that depend on a reply are made here too
(:func:`relay_stop`, :func:`too_many_failures`), so the wording lives beside its class.
"""

from __future__ import annotations

import datetime as dt

from invitemail.errors import ExitCode, InvitemailError
from invitemail.send.replies import ReplyClass, Verdict

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "InsecureAuthError",
    "QuotaReached",
    "RelayStop",
    "SenderBlocked",
    "TooManyFailures",
    "TransportError",
    "relay_stop",
    "too_many_failures",
]


class TransportError(InvitemailError):
    """The relay cannot be used as configured; the text names ``host:port``."""

    exit_code = ExitCode.INPUT


class ConnectError(TransportError):
    """The relay cannot be reached, or TLS cannot be set up with it."""


class AuthenticationError(TransportError):
    """The relay refused the login (names the user, never the password)."""


class InsecureAuthError(TransportError):
    """AUTH over a plaintext connection without ``smtp.allow_insecure_auth = true``."""


class TooManyFailures(TransportError):
    """``sending.max_consecutive_failures`` attempts failed in a row."""

    def __init__(self, message: str, *, reply: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reply = reply


class RelayStop(TransportError):
    """The relay refuses every message for now: the run stops, the rows not sent stay
    pending. ``reason`` names what (``"Gmail daily sending limit (550 5.4.5 ...)"``) and
    ``until`` is when the relay said to try again, if it did."""

    def __init__(self, message: str, *, reason: str, until: dt.datetime | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.until = until


class QuotaReached(RelayStop):
    """A sender-wide quota (daily limit, credits) is used up."""


class SenderBlocked(RelayStop):
    """The relay will not take mail from this sender until someone acts."""


def relay_stop(where: str, verdict: Verdict, reply: str) -> RelayStop:
    """What a *sender-quota* or *sender-blocked* reply stops the run with."""
    until = verdict.until
    frees = f" (it frees at {until:%Y-%m-%d %H:%M} UTC)" if until else ""
    reason = f"{verdict.name} ({reply})"
    if verdict.reply_class is ReplyClass.SENDER_QUOTA:
        return QuotaReached(
            f"{where}: {verdict.name} is reached: {reply}{frees}", reason=reason,
            until=until,
            hint="the registrants not sent to stay pending (not failed); run the same "
            "command again " + ("after that time" if until else "when the quota frees "
                                "(the README's Relays section lists the relays' limits)"))
    return SenderBlocked(
        f"{where} takes no mail from this sender now: {verdict.name}: {reply}{frees}",
        reason=reason, until=until,
        hint="the registrants not sent to stay pending (not failed); do what the relay's "
        "reply says (or ask its administrator), then run the same command again")


def too_many_failures(where: str, count: int, reply: str) -> TooManyFailures:
    """What ``sending.max_consecutive_failures`` failed attempts in a row stop the run with."""
    return TooManyFailures(
        f"{where}: stopped after {count} failed attempts in a row; the relay's last reply: "
        f"{reply}",
        reply=reply,
        hint="find out why the relay refuses (its reply says), then run the same command "
        "again to continue",
    )
