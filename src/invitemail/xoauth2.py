"""The SMTP side of OAuth2: ``AUTH XOAUTH2`` with the access token a credential gives.

The exchange (Google's and Microsoft's documented form)::

    C: AUTH XOAUTH2 <base64("user=" user "\\x01auth=Bearer " token "\\x01\\x01")>
    S: 235 2.7.0 Accepted
or
    S: 334 <base64 of a JSON error, {"status":"401",...}>
    C: <an empty line>
    S: 535 5.7.3 Authentication unsuccessful

:func:`login` signs one connection in. A refused token raises :class:`Refused`: the
connection (:mod:`invitemail.connection`) closes, asks the credential for a new token once
(:func:`refresh`) and connects again; a second refusal is :func:`fatal`, and stops the run
with the hint to sign in again. A temporary refusal (4xx) is judged like any other reply.
Goes through :mod:`invitemail.smtp_adapter`: no aiosmtplib here.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

from invitemail import smtp_adapter
from invitemail.connection import AuthenticationError, Failure, Kind, Result, Session
from invitemail.credentials import LoginError, TokenCredential
from invitemail.replies import Step

if TYPE_CHECKING:
    from aiosmtplib import SMTP

MECHANISM = "xoauth2"


class Refused(Failure):
    """The relay refused the token (5xx): close, refresh once, connect again. Its result
    is the fatal one, for when there is no second chance."""

    def __init__(self, token: str, result: Result) -> None:
        super().__init__(result)
        self.token = token


def initial_response(user: str, token: str) -> bytes:
    """The base64 argument of ``AUTH XOAUTH2``."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


def error_detail(challenge: str) -> str:
    """The relay's 334 challenge (base64 JSON) as a short text: ``status 401``."""
    try:
        data = json.loads(base64.b64decode(challenge.strip(), validate=True))
    except (binascii.Error, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [f"{key} {data[key]}" for key in ("status", "scope") if isinstance(data.get(key), str)]
    return ", ".join(parts)


def _fatal(message: str, hint: str) -> Result:
    error = AuthenticationError(message, hint=hint)
    return Result(Kind.FATAL, str(error), error=error)


def _credential(run: Session) -> TokenCredential:
    credential = run.credential
    assert credential is not None
    return credential


async def login(client: SMTP, run: Session, user: str) -> None:
    """Sign ``client`` in as ``user``; raises ``Failure`` (or :class:`Refused`)."""
    credential, where = _credential(run), run.smtp.where
    if MECHANISM not in client.server_auth_methods:
        offered = ", ".join(client.server_auth_methods) or "none"
        raise Failure(_fatal(
            f"{where} does not offer AUTH XOAUTH2 for user {user!r} (offered: {offered})",
            'check smtp.security (many relays offer AUTH only over TLS), or use auth = '
            '"password" if the relay takes passwords'))
    try:
        token = await credential.token()
    except LoginError as err:
        raise Failure(_fatal(str(err), err.hint or credential.hint)) from None
    reply = await smtp_adapter.command(client, b"AUTH", b"XOAUTH2",
                                       initial_response(user, token))
    detail = ""
    if reply.code == 334:  # the error, as JSON; an empty line gets the final reply
        detail = error_detail(reply.message)
        reply = await smtp_adapter.command(client, b"")
    if reply.code == 235:
        return
    refusal = run.refused(Step.AUTH, reply.code, reply.message)
    known = refusal.verdict is not None and refusal.verdict.rule is not None
    if known or 400 <= reply.code <= 499:
        raise Failure(refusal)
    text = run.reply_text(reply.code, reply.message) + (f" ({detail})" if detail else "")
    raise Refused(token, _fatal(
        f"{where} refused the XOAUTH2 login of user {user!r}: {text}",
        credential.hint + "; if the login is new, check that the mailbox may send with SMTP "
        "AUTH and that the app has the SMTP.Send (or mail) permission"))


async def refresh(run: Session, refused: Refused) -> None:
    """After :class:`Refused`: a new token, or ``Failure`` (the run stops)."""
    credential = _credential(run)
    try:
        await credential.refresh(refused.token)
    except LoginError as err:
        raise Failure(_fatal(str(err), err.hint or credential.hint)) from None
