"""The SMTP side of OAuth2: ``AUTH XOAUTH2`` with the access token a credential gives.

The exchange (Google's and Microsoft's documented form)::

    C: AUTH XOAUTH2 <base64("user=" user "\\x01auth=Bearer " token "\\x01\\x01")>
    S: 235 2.7.0 Accepted
or
    S: 334 <base64 of a JSON error, {"status":"401",...}>
    C: <an empty line>
    S: 535 5.7.3 Authentication unsuccessful

:func:`sign_in` signs one connection in and returns the relay's refusal, if any; the
connection (:mod:`invitemail.send.connection`) judges it like any reply, and for a refused token
closes, gets a new token once (:func:`new_token`) and connects again; a second refusal stops
the run with the hint to sign in again. Goes through :mod:`invitemail.send.smtp_adapter`: no
aiosmtplib here (its SMTP class only as a type).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from invitemail.auth.credentials import LoginError, TokenCredential
from invitemail.send import smtp_adapter

if TYPE_CHECKING:
    from aiosmtplib import SMTP

MECHANISM = "xoauth2"


class Unusable(Exception):
    """No XOAUTH2 login can be tried: the relay does not offer it, or no token can be had."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Refusal:
    """The relay's final answer to a token it did not take."""

    code: int
    message: str
    detail: str  # from the 334 error challenge: "status 401, scope ..."
    token: str  # the token refused (so that a refresh is asked for once)


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


async def sign_in(client: SMTP, credential: TokenCredential, user: str,
                  where: str) -> Refusal | None:
    """Sign ``client`` in as ``user``: None when the relay took the token, else its
    refusal. Raises :class:`Unusable`."""
    if MECHANISM not in client.server_auth_methods:
        offered = ", ".join(client.server_auth_methods) or "none"
        raise Unusable(
            f"{where} does not offer AUTH XOAUTH2 for user {user!r} (offered: {offered})",
            'check smtp.security (many relays offer AUTH only over TLS), or use auth = '
            '"password" if the relay takes passwords')
    try:
        token = await credential.token()
    except LoginError as err:
        raise Unusable(str(err), err.hint or credential.hint) from None
    reply = await smtp_adapter.command(client, b"AUTH", b"XOAUTH2",
                                       initial_response(user, token))
    detail = ""
    if reply.code == 334:  # the error, as JSON; an empty line gets the final reply
        detail = error_detail(reply.message)
        reply = await smtp_adapter.command(client, b"")
    if reply.code == 235:
        return None
    return Refusal(reply.code, reply.message, detail, token)


def refused(where: str, user: str, reply: str, refusal: Refusal,
            credential: TokenCredential) -> Unusable:
    """What a second refusal (after a new token) stops the run with."""
    detail = f" ({refusal.detail})" if refusal.detail else ""
    return Unusable(f"{where} refused the XOAUTH2 login of user {user!r}: {reply}{detail}",
                    credential.hint + "; if the login is new, check that the mailbox may send "
                    "with SMTP AUTH and that the app has the SMTP.Send (or mail) permission")


async def new_token(credential: TokenCredential, refusal: Refusal) -> None:
    """A new token after ``refusal``; raises :class:`Unusable` when none can be had."""
    try:
        await credential.refresh(refusal.token)
    except LoginError as err:
        raise Unusable(str(err), err.hint or credential.hint) from None
