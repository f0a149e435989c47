"""What a failure to set up a connection means: a table of judges, read top to bottom.

On the first connection of a run a failure is the settings' (a wrong port, a wrong
``smtp.security``, an unknown CA): the run stops with a :class:`ConnectError` that says which
setting to check. Once a connection was set up, the same failure is a passing one (the
relay restarting, a network hiccup): the message is retried as a *transient* failure.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Callable

from aiosmtplib import (
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
)

from invitemail.send import smtp_adapter
from invitemail.send.errors import ConnectError
from invitemail.send.outcomes import NETWORK, Kind, Result, fatal
from invitemail.send.replies import Step
from invitemail.send.session import Session

__all__ = ["JUDGES", "judge_connect_failure"]

# A judge: (the run, the error, whether no connection was set up yet) -> its result, or
# None when the error is not of its kind.
Judge = Callable[[Session, BaseException, bool], Result | None]


def judge_connect_failure(run: Session, error: BaseException) -> Result:
    """Classify a failure to set up a connection: the first judge that knows it decides."""
    first = not run.connected_once  # a problem on the first connection is the settings'
    for judge in JUDGES:
        result = judge(run, error, first)
        if result is not None:
            return result
    return Result(Kind.REFUSED, f"connection failed: {run.text(str(error))}", NETWORK)


def _in_chain(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``error`` or the first of its causes that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _os_reason(error: BaseException) -> str:
    """"Connection refused" rather than aiosmtplib's "Error connecting to ... [Errno 111]"."""
    cause = smtp_adapter.connect_cause(error)
    reason = cause if cause is not None else error
    if isinstance(reason, socket.gaierror):
        return reason.strerror or str(reason)
    if isinstance(reason, OSError) and reason.errno:
        return os.strerror(reason.errno)
    return str(reason)


def _certificate(run: Session, error: BaseException, first: bool) -> Result | None:
    verify = _in_chain(error, ssl.SSLCertVerificationError)
    if not isinstance(verify, ssl.SSLCertVerificationError):
        return None
    smtp = run.smtp
    detail = verify.verify_message or str(verify)
    if smtp.ca_file is None:
        hint = "if the relay uses a private CA, set smtp.ca_file to the CA that signed it"
    else:
        hint = (f"smtp.ca_file ({smtp.ca_file}) does not hold the CA that signed it; "
                "set smtp.ca_file to the CA that signed it")
    return fatal(ConnectError(
        f"{smtp.where}: the relay's certificate could not be verified: {detail}", hint=hint))


def _reply(run: Session, error: BaseException, first: bool) -> Result | None:
    """A reply while setting up, e.g. "421 too many connections"."""
    if not isinstance(error, SMTPResponseException):
        return None
    where = run.smtp.where
    reply = run.reply_text(error.code, error.message)
    garbled = not 100 <= error.code <= 599
    if garbled and first:  # not an SMTP server on that port, or a broken one
        return fatal(ConnectError(
            f"{where} does not answer like an SMTP relay ({reply})",
            hint="check smtp.host and smtp.port: is that the relay's SMTP port? (port "
            '465 wants security = "tls", port 587 "starttls")'))
    if garbled:
        return Result(Kind.REFUSED, reply, NETWORK)
    refusal = run.refused(Step.GREETING, error.code, error.message)
    known = refusal.verdict is not None and refusal.verdict.rule is not None
    if error.code >= 500 and first and not known:
        return fatal(ConnectError(
            f"{where} refused the connection: {reply}",
            hint="check smtp.host and smtp.port; if they are right, the relay does not "
            "take mail from this machine: ask its administrator"))
    return refusal


def _tls(run: Session, error: BaseException, first: bool) -> Result | None:
    tls = _in_chain(error, ssl.SSLError)
    if tls is None:
        return None
    if not first:
        return Result(Kind.REFUSED, run.text(f"TLS handshake failed: {tls}"), NETWORK)
    # Without OpenSSL's source position ("(_ssl.c:1006)"), which changes with every Python
    # build and means nothing to a user.
    detail = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(tls))
    return fatal(ConnectError(
        f"{run.smtp.where}: the TLS handshake failed: {detail}",
        hint='check smtp.security and smtp.port: port 465 usually wants "tls", '
        'port 587 "starttls"',
    ))


def _connect_timeout(run: Session, error: BaseException, first: bool) -> Result | None:
    if not isinstance(error, SMTPConnectTimeoutError):
        return None
    if not first:
        return Result(Kind.REFUSED, run.text(f"timed out connecting: {error}"), NETWORK)
    smtp = run.smtp
    return fatal(ConnectError(
        f"{smtp.where}: no answer within {smtp.timeout:g} s",
        hint="check smtp.host, smtp.port and the firewall, or raise smtp.timeout",
    ))


def _silent(run: Session, error: BaseException, first: bool) -> Result | None:
    """It greeted, then went silent."""
    if not isinstance(error, TimeoutError):
        return None
    if not first:
        return Result(Kind.REFUSED, f"timed out setting up the connection: {error}", NETWORK)
    smtp = run.smtp  # the settings, not a passing hiccup
    return fatal(ConnectError(
        f"{smtp.where} greeted, then did not answer within {smtp.timeout:g} s",
        hint='check smtp.port and smtp.security (port 465 wants "tls", port 587 '
        '"starttls"), or raise smtp.timeout'))


def _unreachable(run: Session, error: BaseException, first: bool) -> Result | None:
    if not isinstance(error, OSError | SMTPConnectError):
        return None
    where = run.smtp.where
    if first and isinstance(smtp_adapter.connect_cause(error), SMTPServerDisconnected):
        return fatal(ConnectError(
            f"{where} closed the connection before greeting",
            hint="check smtp.host and smtp.port; if they are right, the relay does not "
            "take connections from this machine: ask its administrator"))
    detail = _os_reason(error)
    if first and not isinstance(error, SMTPServerDisconnected):
        return fatal(ConnectError(
            f"cannot connect to {where}: {detail}",
            hint="check smtp.host and smtp.port, and that this machine can reach the relay",
        ))
    return Result(Kind.REFUSED, f"cannot connect: {detail}", NETWORK)


JUDGES: tuple[Judge, ...] = (
    _certificate,  # before anything else: a certificate error is always the settings'
    _reply,
    _tls,
    _connect_timeout,  # before _silent: SMTPConnectTimeoutError is a TimeoutError too
    _silent,
    _unreachable,
)
