"""The login step of a connection: the settings checked before any connection is made
(:func:`check_credentials`), then AUTH with the password (:func:`login`) or an OAuth2 access
token (:func:`sign_in`, through :mod:`invitemail.auth.xoauth2`).

A refusal the reply table knows (a quota, a blocked sender) or a temporary one is judged by
its class, like any reply; any other 5xx is this login's fault and stops the run with an
:class:`AuthenticationError` that names the user, never the password or the token.
"""

from __future__ import annotations

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from invitemail.auth import xoauth2
from invitemail.auth.credentials import TokenCredential
from invitemail.inputs.config import Smtp
from invitemail.send.errors import AuthenticationError, InsecureAuthError
from invitemail.send.outcomes import Failure, Result, fatal
from invitemail.send.replies import Step
from invitemail.send.session import Session

__all__ = ["TokenRefused", "check_credentials", "login", "new_token", "sign_in"]


class TokenRefused(Failure):
    """The relay refused the access token: its result stops the run unless a new token,
    on a new connection, is taken."""

    def __init__(self, refusal: xoauth2.Refusal, result: Result) -> None:
        super().__init__(result)
        self.refusal = refusal


def check_credentials(smtp: Smtp, password: str | TokenCredential | None) -> None:
    """Raise what makes a login impossible before any connection is made."""
    if smtp.username is None:
        return
    what = "access token" if smtp.auth.xoauth2 else "password"
    if smtp.security == "none" and not smtp.allow_insecure_auth:
        raise InsecureAuthError(
            f"{smtp.where}: refusing to send the {what} of {smtp.username!r} over an "
            "unencrypted connection (smtp.security is \"none\")",
            hint='use smtp.security = "starttls" or "tls"; only on a network you trust, '
            "set smtp.allow_insecure_auth = true",
        )
    if smtp.auth.xoauth2 != isinstance(password, TokenCredential):
        given = "an access token" if isinstance(password, TokenCredential) else "no access token"
        raise AuthenticationError(
            f"{smtp.where}: smtp.auth is {smtp.auth.method!r}, and {given} was given for user "
            f"{smtp.username!r}", hint="this is a bug in the caller: report it")
    if isinstance(password, TokenCredential):
        return
    if password is None:
        raise AuthenticationError(
            f"{smtp.where}: no password was given for user {smtp.username!r}",
            hint="set INVITEMAIL_SMTP_PASSWORD, or run in a terminal to be asked for it",
        )
    try:
        password.encode("utf-8")  # what AUTH sends
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by os.environ as surrogates
        raise AuthenticationError(
            f"{smtp.where}: the password for user {smtp.username!r} is not valid UTF-8 text "
            "(INVITEMAIL_SMTP_PASSWORD holds bytes in another encoding)",
            hint="set INVITEMAIL_SMTP_PASSWORD to the password encoded as UTF-8 (check the "
            "encoding of the script or file that sets it), or unset it to be asked for it",
        ) from None


def _judged(refusal: Result, code: int) -> bool:
    """Whether a refused login is handled by its class rather than stopping the run."""
    known = refusal.verdict is not None and refusal.verdict.rule is not None
    return known or 400 <= code <= 499


async def login(run: Session, client: SMTP, username: str) -> None:
    """AUTH with the password; raises :class:`Failure` when the relay refuses it."""
    where = run.smtp.where
    try:
        await client.login(username, run.password or "")
    except SMTPAuthenticationError as error:
        reply = run.reply_text(error.code, error.message)
        refusal = run.refused(Step.AUTH, error.code, error.message)
        if _judged(refusal, error.code):
            raise Failure(refusal) from None
        raise Failure(fatal(AuthenticationError(
            f"{where} refused the login of user {username!r}: {reply}",
            hint="check smtp.username and the password (the one typed at the prompt, or "
            "INVITEMAIL_SMTP_PASSWORD)",
        ))) from None
    except (SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError):
        raise
    except SMTPException as error:  # no AUTH, or no method both sides know
        offered = ", ".join(client.server_auth_methods) or "none"
        raise Failure(fatal(AuthenticationError(
            f"{where} offers no login method invitemail can use for user {username!r} "
            f"(offered: {offered}): {run.text(str(error))}",
            hint="check smtp.security (many relays offer AUTH only over TLS) and "
            "smtp.username; remove smtp.username if the relay needs no login",
        ))) from None


async def sign_in(run: Session, client: SMTP, credential: TokenCredential, user: str) -> None:
    """AUTH XOAUTH2; raises :class:`Failure`, or :class:`TokenRefused` when a new token
    may help."""
    try:
        refusal = await xoauth2.sign_in(client, credential, user, run.smtp.where)
    except xoauth2.Unusable as err:
        raise Failure(fatal(AuthenticationError(err.message, hint=err.hint))) from None
    if refusal is None:
        return
    judged = run.refused(Step.AUTH, refusal.code, refusal.message)
    if _judged(judged, refusal.code):  # judged by its class, as for a password
        raise Failure(judged)
    stop = xoauth2.refused(run.smtp.where, user, run.reply_text(refusal.code, refusal.message),
                           refusal, credential)
    raise TokenRefused(refusal, fatal(AuthenticationError(stop.message, hint=stop.hint)))


async def new_token(credential: TokenCredential, refusal: xoauth2.Refusal) -> None:
    """A new token after a refusal; raises :class:`Failure` when none can be had."""
    try:
        await xoauth2.new_token(credential, refusal)
    except xoauth2.Unusable as err:
        raise Failure(fatal(AuthenticationError(err.message, hint=err.hint))) from None
