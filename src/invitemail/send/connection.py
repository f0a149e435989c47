"""One SMTP connection to the relay: set-up, login, one transaction at a time.

The transport's workers each own one :class:`Connection`; it opens the connection when
needed, reuses it (RSET after a refusal), and turns whatever happens into a
:class:`~invitemail.send.outcomes.Result`: sent, refused (with the
:class:`~invitemail.send.replies.Verdict` that says what the refusal means), uncertain (the
connection broke after the message was handed over), or fatal (the settings are wrong). What
it needs of the run is :class:`~invitemail.send.session.Session`; the login is
:mod:`invitemail.send.login`, what a failed set-up means :mod:`invitemail.send.connect_failures`,
and pipelined transactions on it :mod:`invitemail.send.pipeline`. It uses aiosmtplib's
documented API only; what goes beyond it is :mod:`invitemail.send.smtp_adapter`.
"""

from __future__ import annotations

from aiosmtplib import (
    SMTP,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
)

from invitemail.send import login, smtp_adapter
from invitemail.send.connect_failures import judge_connect_failure
from invitemail.send.envelope import Envelope, quoted
from invitemail.send.errors import ConnectError
from invitemail.send.outcomes import NETWORK, UNSENDABLE, Failure, Kind, Result, fatal
from invitemail.send.replies import Step
from invitemail.send.session import Session

__all__ = ["QUIT_TIMEOUT", "Connection", "network_failure"]

QUIT_TIMEOUT: float = 5.0  # seconds to wait for a polite QUIT at the end


def _step_of(error: SMTPResponseException) -> Step:
    """The step a refusal of a transaction answers."""
    if isinstance(error, SMTPSenderRefused):
        return Step.MAIL
    if isinstance(error, SMTPRecipientRefused):
        return Step.RCPT
    return Step.DATA


def network_failure(error: BaseException, *, handed_over: bool) -> str:
    """A sentence for a connection that broke or timed out in a transaction."""
    what = "timed out" if isinstance(error, TimeoutError) else "connection lost"
    when = "after" if handed_over else "before"
    detail = str(error) or type(error).__name__
    return f"{what} {when} the message was handed over: {detail}"


class Connection:
    """One worker's SMTP connection, opened when needed and reused."""

    def __init__(self, run: Session) -> None:
        self.run = run
        self.client: SMTP | None = None

    async def attempt(self, envelope: Envelope, attempt: int) -> Result:
        run = self.run
        if run.stopping:
            return Result(Kind.NOT_STARTED, "")
        failure = await self.ensure_open()
        if failure is not None:
            return failure
        if not await run.wait_for_turn():
            return Result(Kind.NOT_STARTED, "")
        assert self.client is not None
        return await self._transaction(self.client, envelope, attempt)

    async def ensure_open(self) -> Result | None:
        """Open the connection unless it is open: None, or why it could not be opened."""
        if self.client is None or not self.client.is_connected:
            self.drop()
            try:
                self.client = await self._open()
            except Failure as failure:
                return failure.result
        return None

    async def _transaction(self, client: SMTP, envelope: Envelope, attempt: int) -> Result:
        run = self.run
        try:
            options, encoding = self.mail_options(client, envelope)
            # MAIL and RCPT as aiosmtplib's mail() and rcpt() send them, without their
            # address parsing (email.utils, in this process, for every message).
            response = await smtp_adapter.command(
                client, b"MAIL", b"FROM:" + quoted(envelope.sender, encoding), *options)
            if response.code != 250:
                raise SMTPSenderRefused(response.code, response.message, envelope.sender)
            response = await smtp_adapter.command(
                client, b"RCPT", b"TO:" + quoted(envelope.recipient, encoding))
            if response.code not in (250, 251):
                raise SMTPRecipientRefused(response.code, response.message, envelope.recipient)
        except (SMTPException, OSError, ValueError) as error:
            return await self._failed(error, handed_over=False)
        except BaseException:
            self.drop()
            raise
        # Outside the try: an error of the caller's journal is not the relay's.
        run.handing_over(envelope, attempt)
        handed_over = False
        try:
            start = await smtp_adapter.command(client, b"DATA")
            if start.code != 354:
                raise SMTPDataError(start.code, start.message)
            # DATA, then the message, then its reply, as separate steps: a failure tells
            # "refused before" from "lost after" the hand-over (smtp_adapter says more).
            smtp_adapter.write_message(client, envelope.wire())
            handed_over = True
            final = await smtp_adapter.read_reply(client, timeout=run.smtp.timeout)
        except (SMTPException, OSError) as error:
            return await self._failed(error, handed_over=handed_over)
        except BaseException:
            self.drop()  # the connection is in an unknown state
            raise
        reply = run.reply_text(final.code, final.message)
        if final.code == 250:
            return Result(Kind.SENT, reply)
        if final.code == 421:  # "closing the transmission channel"
            self.drop()
        if 400 <= final.code <= 599:
            return run.refused(Step.DATA, final.code, final.message)
        self.drop()
        return Result(Kind.UNCERTAIN, reply)

    async def _failed(self, error: Exception, *, handed_over: bool) -> Result:
        """Classify a transaction that raised."""
        run = self.run
        if isinstance(error, SMTPResponseException):
            reply = run.reply_text(error.code, error.message)
            if handed_over:  # a garbled final reply: nobody knows what the relay did
                self.drop()
                return Result(Kind.UNCERTAIN, reply)
            if 400 <= error.code <= 599:
                await self.reset()
                return run.refused(_step_of(error), error.code, error.message)
            self.drop()  # a garbled reply: the connection is out of step
            return Result(Kind.REFUSED, reply, NETWORK)
        if isinstance(error, SMTPException | OSError):  # disconnects and timeouts
            self.drop()
            reply = run.text(network_failure(error, handed_over=handed_over))
            return Result(Kind.UNCERTAIN if handed_over else Kind.REFUSED, reply, NETWORK)
        await self.reset()  # ValueError: an address aiosmtplib will not put on the wire
        return Result(Kind.REFUSED, f"not sent: {error}", UNSENDABLE)

    @staticmethod
    def mail_options(client: SMTP, envelope: Envelope) -> tuple[list[bytes], str]:
        options: list[bytes] = []
        encoding = "ascii"
        if not (envelope.sender.isascii() and envelope.recipient.isascii()):
            if not client.supports_extension("smtputf8"):
                raise ValueError(
                    f"the relay does not offer SMTPUTF8, which the address "
                    f"{envelope.recipient!r} needs")
            options.append(b"SMTPUTF8")
            encoding = "utf-8"
        ascii = envelope.ascii if envelope.ascii is not None else envelope.data.isascii()
        if not ascii and client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        return options, encoding

    async def reset(self) -> None:
        """RSET after a failed transaction, so the connection can be reused."""
        client = self.client
        if client is None or not client.is_connected:
            self.drop()
            return
        try:
            await client.rset()
        except (SMTPException, OSError):
            self.drop()

    async def check_login(self) -> Result | None:
        """Connect, log in and quit: None when all went well, else what went wrong."""
        try:
            self.client = await self._open()
        except Failure as failure:
            return failure.result
        await self.close()
        return None

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit(timeout=min(QUIT_TIMEOUT, self.run.smtp.timeout))
        except (SMTPException, OSError):
            pass
        finally:
            client.close()

    # -- connection set-up -----------------------------------------------------------------

    async def _open(self) -> SMTP:
        credential = self.run.credential
        if credential is None:
            return await self._open_once()
        try:
            return await self._open_once()
        except login.TokenRefused as refused:  # a new token once, on a new connection
            await login.new_token(credential, refused.refusal)
        try:
            return await self._open_once()
        except login.TokenRefused as refused:
            raise Failure(refused.result) from None

    async def _open_once(self) -> SMTP:
        run, smtp = self.run, self.run.smtp
        client = SMTP(
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.security == "tls",
            start_tls=False,  # done below, so that a relay without it is an error
            tls_context=run.tls_context,
            timeout=smtp.timeout,
            local_hostname=run.local_hostname,
        )
        try:
            await client.connect()
        except (SMTPException, OSError) as error:
            client.close()
            raise Failure(judge_connect_failure(run, error)) from None
        run.opened()
        try:
            await self._hello(client)
            if smtp.security == "starttls":
                await self._starttls(client)
            if smtp.username is not None and run.credential is not None:
                await login.sign_in(run, client, run.credential, smtp.username)
            elif smtp.username is not None:
                await login.login(run, client, smtp.username)
        except Failure:
            client.close()
            raise
        except (SMTPException, OSError) as error:
            client.close()
            raise Failure(judge_connect_failure(run, error)) from None
        run.connected_once = True
        return client

    async def _hello(self, client: SMTP) -> None:
        try:
            await client.ehlo()
        except SMTPHeloError as error:
            if not (500 <= error.code <= 599 and client.is_connected):
                raise
            await client.helo()  # an old relay without ESMTP

    async def _starttls(self, client: SMTP) -> None:
        where = self.run.smtp.where
        if not client.supports_extension("starttls"):
            raise Failure(fatal(ConnectError(
                f"{where} does not offer STARTTLS, and smtp.security is \"starttls\"",
                hint='check smtp.port and smtp.security: a port that expects TLS from the '
                'start (usually 465) needs security = "tls"',
            )))
        await client.starttls()
        await self._hello(client)

