"""One SMTP connection to the relay: set-up, login, one transaction at a time.

The transport's workers each own one :class:`Connection`; it opens the connection when
needed, reuses it (RSET after a refusal), and turns whatever happens into a :class:`Result`:
sent, refused (with the :class:`~invitemail.send.replies.Verdict` that says what the refusal
means), uncertain (the connection broke after the message was handed over), or fatal (the
settings are wrong). With :mod:`invitemail.send.smtp_adapter` and :mod:`invitemail.send.pipeline`
(pipelined transactions on it), the only modules that import aiosmtplib; what it needs of
the run (:mod:`invitemail.send.transport`) is :class:`Session`.
"""

from __future__ import annotations

import enum
import os
import re
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from invitemail.auth import xoauth2
from invitemail.errors import ExitCode, InvitemailError
from invitemail.inputs.config import Smtp
from invitemail.send import smtp_adapter
from invitemail.send.replies import ReplyClass, Step, Verdict

if TYPE_CHECKING:
    from invitemail.auth.credentials import TokenCredential

QUIT_TIMEOUT: float = 5.0  # seconds to wait for a polite QUIT at the end


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one recipient."""

    key: str  # the journal's key for this recipient (opaque to the transport)
    sender: str  # MAIL FROM address
    recipient: str  # the ONE RCPT TO address
    data: bytes  # the whole message, CRLF line endings
    # True when every line of ``data`` is known to end in CRLF, with no other CR or LF in it
    # (invitemail's own messages are written so): the transport skips checking that.
    crlf: bool = False


class TransportError(InvitemailError):
    """The relay cannot be used as configured; the text names ``host:port``."""

    exit_code = ExitCode.INPUT


class ConnectError(TransportError):
    """The relay cannot be reached, or TLS cannot be set up with it."""


class AuthenticationError(TransportError):
    """The relay refused the login (names the user, never the password)."""


class Session(Protocol):
    """What a connection needs of the run it works for."""

    smtp: Smtp
    password: str | None
    credential: TokenCredential | None  # smtp.auth = "xoauth2": the access token's source
    tls_context: ssl.SSLContext | None
    local_hostname: str
    connected_once: bool  # a connection was set up: later failures are passing ones

    @property
    def stopping(self) -> bool: ...

    async def wait_for_turn(self) -> bool:
        """The rate limiter's permission to start a transaction; False if the run halted."""

    def opened(self) -> None:
        """A connection was opened (the relay answered the greeting)."""

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        """Right before the message data goes out."""

    def text(self, reply: str) -> str:
        """``reply`` as it may be shown and stored (without the password)."""

    def reply_text(self, code: int, message: str) -> str:
        """A relay's reply as it may be shown and stored."""

    def refused(self, step: Step, code: int, message: str) -> Result:
        """A refusal, judged by its class."""


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")


def dot_stuff(data: bytes, *, crlf: bool = False) -> bytes:
    """The message as it goes on the wire after DATA (RFC 5321 4.5.2), with the final dot.

    Stray CRs and LFs become CRLF, unless ``crlf`` says there are none."""
    if not crlf:
        ends = data.count(b"\r\n")
        if data.count(b"\n") != ends or data.count(b"\r") != ends:  # a stray CR or LF:
            data = _LINE_ENDINGS.sub(b"\r\n", data)  # make every line end in CRLF
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    # Counting and searching rather than a regex: this runs over every message, in the
    # process that also speaks SMTP; most messages have no line that starts with a dot.
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." if data.startswith(b".") else b"") + data + b".\r\n"


_NOT_ON_A_COMMAND_LINE = frozenset("\r\n\0<> ")


def _quoted(address: str, encoding: str) -> bytes:
    """``<address>`` for MAIL FROM or RCPT TO. The addresses were validated when the list
    was read; this only refuses what would break the command line."""
    if not address or not _NOT_ON_A_COMMAND_LINE.isdisjoint(address):
        raise ValueError(f"{address!r} cannot go on an SMTP command line")
    return b"<" + address.encode(encoding) + b">"


class Kind(enum.Enum):
    SENT = "sent"
    REFUSED = "refused"  # not delivered; the verdict says what to do
    UNCERTAIN = "uncertain"  # handed over, no final reply
    FATAL = "fatal"  # the run cannot go on
    NOT_STARTED = "not started"  # the run stopped before this attempt began


# What a network failure before the hand-over, or an address that cannot go on the wire, is.
NETWORK = Verdict(ReplyClass.TRANSIENT, "a network failure")
UNSENDABLE = Verdict(ReplyClass.RECIPIENT_PERMANENT, "an address that cannot be sent to")


@dataclass(frozen=True, slots=True)
class Result:
    kind: Kind
    reply: str
    verdict: Verdict | None = None  # for REFUSED
    error: TransportError | None = None


class Failure(Exception):
    """Carries a non-SENT :class:`Result` out of connection set-up."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reply)
        self.result = result


class _TokenRefused(Failure):
    """The relay refused the access token: its result stops the run unless a new token,
    on a new connection, is taken."""

    def __init__(self, refusal: xoauth2.Refusal, result: Result) -> None:
        super().__init__(result)
        self.refusal = refusal


def _step_of(error: SMTPResponseException) -> Step:
    """The step a refusal of a transaction answers."""
    if isinstance(error, SMTPSenderRefused):
        return Step.MAIL
    if isinstance(error, SMTPRecipientRefused):
        return Step.RCPT
    return Step.DATA


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
    reason = error.__cause__ if error.__cause__ is not None else error
    if isinstance(reason, socket.gaierror):
        return reason.strerror or str(reason)
    if isinstance(reason, OSError) and reason.errno:
        return os.strerror(reason.errno)
    return str(reason)


def _network_failure(error: BaseException, *, handed_over: bool) -> str:
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
                client, b"MAIL", b"FROM:" + _quoted(envelope.sender, encoding), *options)
            if response.code != 250:
                raise SMTPSenderRefused(response.code, response.message, envelope.sender)
            response = await smtp_adapter.command(
                client, b"RCPT", b"TO:" + _quoted(envelope.recipient, encoding))
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
            smtp_adapter.write_message(client, dot_stuff(envelope.data, crlf=envelope.crlf))
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
            reply = run.text(_network_failure(error, handed_over=handed_over))
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
        if not envelope.data.isascii() and client.supports_extension("8bitmime"):
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
        except _TokenRefused as refused:  # a new token once, on a new connection
            try:
                await xoauth2.new_token(credential, refused.refusal)
            except xoauth2.Unusable as err:
                raise Failure(self._fatal(AuthenticationError(err.message, hint=err.hint))) \
                    from None
        try:
            return await self._open_once()
        except _TokenRefused as refused:
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
            raise Failure(self._connect_failure(error)) from None
        run.opened()
        try:
            await self._hello(client)
            if smtp.security == "starttls":
                await self._starttls(client)
            if smtp.username is not None and run.credential is not None:
                await self._xoauth2(client, run.credential, smtp.username)
            elif smtp.username is not None:
                await self._login(client, smtp.username)
        except Failure:
            client.close()
            raise
        except (SMTPException, OSError) as error:
            client.close()
            raise Failure(self._connect_failure(error)) from None
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
            raise Failure(self._fatal(ConnectError(
                f"{where} does not offer STARTTLS, and smtp.security is \"starttls\"",
                hint='check smtp.port and smtp.security: a port that expects TLS from the '
                'start (usually 465) needs security = "tls"',
            )))
        await client.starttls()
        await self._hello(client)

    async def _login(self, client: SMTP, username: str) -> None:
        run = self.run
        where = run.smtp.where
        try:
            await client.login(username, run.password or "")
        except SMTPAuthenticationError as error:
            reply = run.reply_text(error.code, error.message)
            refusal = run.refused(Step.AUTH, error.code, error.message)
            # A reply the table knows (a quota, a blocked sender) or a temporary one is
            # handled by its class; any other 5xx is this login's fault.
            known = refusal.verdict is not None and refusal.verdict.rule is not None
            if known or 400 <= error.code <= 499:
                raise Failure(refusal) from None
            raise Failure(self._fatal(AuthenticationError(
                f"{where} refused the login of user {username!r}: {reply}",
                hint="check smtp.username and the password (the one typed at the prompt, or "
                "INVITEMAIL_SMTP_PASSWORD)",
            ))) from None
        except (SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError):
            raise
        except SMTPException as error:  # no AUTH, or no method both sides know
            offered = ", ".join(client.server_auth_methods) or "none"
            raise Failure(self._fatal(AuthenticationError(
                f"{where} offers no login method invitemail can use for user {username!r} "
                f"(offered: {offered}): {run.text(str(error))}",
                hint="check smtp.security (many relays offer AUTH only over TLS) and "
                "smtp.username; remove smtp.username if the relay needs no login",
            ))) from None

    async def _xoauth2(self, client: SMTP, credential: TokenCredential, user: str) -> None:
        run = self.run
        try:
            refusal = await xoauth2.sign_in(client, credential, user, run.smtp.where)
        except xoauth2.Unusable as err:
            raise Failure(self._fatal(AuthenticationError(err.message, hint=err.hint))) from None
        if refusal is None:
            return
        judged = run.refused(Step.AUTH, refusal.code, refusal.message)
        known = judged.verdict is not None and judged.verdict.rule is not None
        if known or 400 <= refusal.code <= 499:  # judged by its class, as for a password
            raise Failure(judged)
        stop = xoauth2.refused(run.smtp.where, user, run.reply_text(refusal.code,
                                                                    refusal.message),
                               refusal, credential)
        raise _TokenRefused(refusal, self._fatal(AuthenticationError(stop.message,
                                                                     hint=stop.hint)))

    def _fatal(self, error: TransportError) -> Result:
        return Result(Kind.FATAL, str(error), error=error)

    def _connect_failure(self, error: BaseException) -> Result:
        """Classify a failure to set up a connection."""
        run, smtp = self.run, self.run.smtp
        where = smtp.where
        verify = _in_chain(error, ssl.SSLCertVerificationError)
        if isinstance(verify, ssl.SSLCertVerificationError):
            detail = verify.verify_message or str(verify)
            if smtp.ca_file is None:
                hint = ("if the relay uses a private CA, set smtp.ca_file to the CA that "
                        "signed it")
            else:
                hint = (f"smtp.ca_file ({smtp.ca_file}) does not hold the CA that signed it; "
                        "set smtp.ca_file to the CA that signed it")
            return self._fatal(ConnectError(
                f"{where}: the relay's certificate could not be verified: {detail}", hint=hint))
        first = not run.connected_once  # a problem on the first connection is the settings'
        if isinstance(error, SMTPResponseException):  # e.g. "421 too many connections"
            reply = run.reply_text(error.code, error.message)
            garbled = not 100 <= error.code <= 599
            if garbled and first:  # not an SMTP server on that port, or a broken one
                return self._fatal(ConnectError(
                    f"{where} does not answer like an SMTP relay ({reply})",
                    hint="check smtp.host and smtp.port: is that the relay's SMTP port? (port "
                    '465 wants security = "tls", port 587 "starttls")'))
            if garbled:
                return Result(Kind.REFUSED, reply, NETWORK)
            refusal = run.refused(Step.GREETING, error.code, error.message)
            known = refusal.verdict is not None and refusal.verdict.rule is not None
            if error.code >= 500 and first and not known:
                return self._fatal(ConnectError(
                    f"{where} refused the connection: {reply}",
                    hint="check smtp.host and smtp.port; if they are right, the relay does not "
                    "take mail from this machine: ask its administrator"))
            return refusal
        tls = _in_chain(error, ssl.SSLError)
        if tls is not None:
            if first:
                # Without OpenSSL's source position ("(_ssl.c:1006)"), which changes with
                # every Python build and means nothing to a user.
                detail = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(tls))
                return self._fatal(ConnectError(
                    f"{where}: the TLS handshake failed: {detail}",
                    hint='check smtp.security and smtp.port: port 465 usually wants "tls", '
                    'port 587 "starttls"',
                ))
            return Result(Kind.REFUSED, run.text(f"TLS handshake failed: {tls}"), NETWORK)
        if isinstance(error, SMTPConnectTimeoutError):
            if first:
                return self._fatal(ConnectError(
                    f"{where}: no answer within {smtp.timeout:g} s",
                    hint="check smtp.host, smtp.port and the firewall, or raise smtp.timeout",
                ))
            return Result(Kind.REFUSED, run.text(f"timed out connecting: {error}"), NETWORK)
        if isinstance(error, TimeoutError):
            if first:  # it greeted, then went silent: the settings, not a passing hiccup
                return self._fatal(ConnectError(
                    f"{where} greeted, then did not answer within {smtp.timeout:g} s",
                    hint='check smtp.port and smtp.security (port 465 wants "tls", port 587 '
                    '"starttls"), or raise smtp.timeout'))
            return Result(Kind.REFUSED, f"timed out setting up the connection: {error}",
                           NETWORK)
        if isinstance(error, OSError | SMTPConnectError):
            if first and isinstance(error.__cause__, SMTPServerDisconnected):
                return self._fatal(ConnectError(
                    f"{where} closed the connection before greeting",
                    hint="check smtp.host and smtp.port; if they are right, the relay does not "
                    "take connections from this machine: ask its administrator"))
            detail = _os_reason(error)
            if first and not isinstance(error, SMTPServerDisconnected):
                return self._fatal(ConnectError(
                    f"cannot connect to {where}: {detail}",
                    hint="check smtp.host and smtp.port, and that this machine can reach the "
                    "relay",
                ))
            return Result(Kind.REFUSED, f"cannot connect: {detail}", NETWORK)
        return Result(Kind.REFUSED, f"connection failed: {run.text(str(error))}",
                       NETWORK)
