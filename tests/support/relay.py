"""Real SMTP servers for the tests: aiosmtpd on 127.0.0.1 with a recording handler and faults.

Not mocks: the client under test speaks real SMTP over a real socket, with TLS from
``trustme`` certificates and AUTH when asked. Each server plays a :class:`Script` of faults
(random 451s, dropped connections, 550 for some addresses, 421 at connect, slow replies...)
and records every message it took in :attr:`SmtpServer.transactions`.

In the test's own event loop (the transport tests)::

    async with SmtpServer(script=Script(temp_fail_rate=0.1)) as server:
        await deliver(..., smtp=server.smtp_settings(), ...)
    assert server.received_by("a@example.org") == 1

In a thread of its own (the CLI tests, which run ``asyncio.run`` themselves)::

    with SmtpServer(tls="starttls", auth=("user", "secret")) as server:
        ...

With ``Script(group_replies=True)`` it answers a pipelined group as Postfix does: it handles
every command the client has sent and writes all their replies at once (aiosmtpd alone answers
line by line, so a client that waited for every reply would pass too); :attr:`SmtpServer.writes`
counts those writes, so a test can count the round trips a message costs. ``Script.answer``
gives a reply of its own to the n-th MAIL, RCPT, DATA or DOT (the end of a message's data), and
``Script.cut`` (a :class:`Cut`) closes the connection once at a given point of a group::

    async with SmtpServer(script=Script(group_replies=True, cut=Cut("DOT", 2))) as relay:
        ...
    assert relay.writes == ... and relay.seen["RSET"] == 1

Why not aiosmtpd's ``Controller``: its ready-check opens a connection of its own, which would
count as a connection and use up a scripted "421 at connect"; and it needs a fixed port.
:class:`SmtpServer` binds port 0 and is ready when ``create_server`` returns.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import random
import shutil
import ssl
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from invitemail.inputs.config import Smtp

HOST = "127.0.0.1"
SERVER_NAME = "smtp.test"

Security = Literal["none", "starttls", "tls"]

# ``answer(verb, n)``: a reply of its own to the n-th MAIL, RCPT, DATA or DOT, or None.
Answer = Callable[[str, int], str | None]


@dataclass(frozen=True)
class Cut:
    """Close the connection at the ``n``-th ``verb`` (MAIL, RCPT, DATA, DOT, RSET, ...):
    ``when`` "before" handling it (the command arrived, nothing after it is answered), "mid"
    (DOT only: the data started to arrive), or "after" the write that carries its reply."""

    verb: str
    n: int
    when: str = "before"


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A private CA, a certificate it signed for 127.0.0.1/localhost, and the CA as a file."""

    ca: trustme.CA
    server_cert: trustme.LeafCert
    ca_file: Path  # give this to smtp.ca_file

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context


@functools.cache
def tls_files() -> TlsFiles:
    """One CA per test session (making keys is the slow part)."""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost", SERVER_NAME)
    folder = Path(tempfile.mkdtemp(prefix="invitemail-ca-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsFiles(ca, cert, ca_file)


# -- what a server does and records ----------------------------------------------------------


@dataclass
class Script:
    """The faults one server plays. Attributes may be changed while it runs."""

    # A seeded random fraction of messages is answered with `temp_fail_reply` after their data.
    temp_fail_rate: float = 0.0
    seed: int = 0
    # The first N messages are answered with `temp_fail_reply` after their data.
    temp_fail_first: int = 0
    temp_fail_reply: str = "451 4.3.0 Temporary failure, please try again later"
    # Close the connection right after answering every Nth accepted message (0: never).
    drop_every: int = 0
    # RCPT TO one of these addresses is answered with `reject_reply` while `refusing` is true.
    reject: set[str] = field(default_factory=set)
    refusing: bool = True
    reject_reply: str = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    # The first K connections are greeted with `refuse_reply` and closed.
    refuse_connections: int = 0
    refuse_reply: str = "421 4.7.0 Too many connections, try again later"
    # Every RCPT TO is answered with this reply (e.g. "554 5.7.1 Relay access denied").
    fail_every_rcpt: str | None = None
    # The first K messages: take the data, then close the connection without answering.
    vanish_after_data: int = 0
    # Wait this long before answering the end of the data (for the first `reply_delay_count`
    # messages, or all when None), and before answering MAIL FROM (same, `mail_delay_count`).
    reply_delay: float = 0.0
    reply_delay_count: int | None = None
    mail_delay: float = 0.0
    mail_delay_count: int | None = None
    # Offer PIPELINING in the EHLO reply (aiosmtpd reads a pipelined group line by line).
    pipelining: bool = True
    # Hold the replies while more of the client's commands are already read, then write them
    # in one write (as Postfix does); SmtpServer.writes counts those writes.
    group_replies: bool = False
    # A reply of its own to the n-th MAIL, RCPT, DATA or DOT (counted over all connections;
    # a MAIL, RCPT or DATA out of order gets the usual 503/554 instead).
    answer: Answer | None = None
    # Close the connection once at this point (see Cut).
    cut: Cut | None = None


@dataclass(frozen=True)
class Transaction:
    """One message the server took."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int  # 1, 2, ... in the order the connections were opened
    user: str | None  # the AUTH login, if any
    tls: bool
    answered: bool = True  # False: the server hung up instead of answering (Script.vanish_...)


class RecordingHandler:
    """An aiosmtpd handler that records transactions and plays a :class:`Script`.

    It runs in the server's loop (maybe another thread); the counters are guarded by a lock.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.rng = random.Random(script.seed)
        self.transactions: list[Transaction] = []
        self.connections = 0  # every connection seen, refused ones included
        self.refused = 0  # connections greeted with Script.refuse_reply
        self.concurrent = 0
        self.max_concurrent = 0
        self.messages_seen = 0  # messages whose data arrived, whatever the answer
        self.temp_failures = 0  # messages answered with Script.temp_fail_reply
        self.rejections = 0  # RCPT TO refused
        self.mails_seen = 0
        self.accepted = 0  # messages answered 250
        self.live: set[ScriptedSMTP] = set()
        self.seen: Counter[str] = Counter()  # commands handled, by verb (DOT: a message's end)
        self.writes = 0  # replies written after the greeting (Script.group_replies: a group's)
        self.cut_done = False

    def cutting(self, verb: str, n: int, when: str) -> bool:
        """Whether Script.cut is (verb, n, when), the first time it is asked."""
        cut = self.script.cut
        with self.lock:
            if cut is None or self.cut_done or (cut.verb, cut.n, cut.when) != (verb, n, when):
                return False
            self.cut_done = True
            return True

    # -- connections (called by ScriptedSMTP) ----------------------------------------------

    def opened(self, server: ScriptedSMTP) -> int:
        with self.lock:
            self.connections += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.live.add(server)
            return self.connections

    def closed(self, server: ScriptedSMTP) -> None:
        with self.lock:
            self.concurrent -= 1
            self.live.discard(server)

    def refuse_this_connection(self) -> bool:
        with self.lock:
            if self.refused < self.script.refuse_connections:
                self.refused += 1
                return True
            return False

    # -- SMTP hooks -------------------------------------------------------------------------

    async def handle_EHLO(self, server: ScriptedSMTP, session: Any, envelope: Any,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.script.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: ScriptedSMTP, session: Any, envelope: Any,
                          address: str, mail_options: list[str]) -> str:
        with self.lock:
            self.mails_seen += 1
            count = self.script.mail_delay_count
            delay = self.script.mail_delay if count is None or self.mails_seen <= count else 0.0
        if delay:
            await asyncio.sleep(delay)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: ScriptedSMTP, session: Any, envelope: Any,
                          address: str, rcpt_options: list[str]) -> str:
        script = self.script
        if script.fail_every_rcpt is not None:
            with self.lock:
                self.rejections += 1
            return script.fail_every_rcpt.format(address=address)
        if script.refusing and address.lower() in {a.lower() for a in script.reject}:
            with self.lock:
                self.rejections += 1
            return script.reject_reply.format(address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: ScriptedSMTP, session: Any, envelope: Any) -> str:
        script = self.script
        n = self.seen["DOT"] + 1
        if self.cutting("DOT", n, "before"):  # the data came, and is never answered
            server.hang_up = "instead of the reply"
            return "250 2.0.0 Ok (never sent)"
        self.seen["DOT"] = n
        if self.cutting("DOT", n, "after"):
            server.close_after_write = True
        scripted = script.answer("DOT", n) if script.answer is not None else None
        if scripted is not None:
            return scripted
        with self.lock:
            self.messages_seen += 1
            number = self.messages_seen
        count = script.reply_delay_count
        if script.reply_delay and (count is None or number <= count):
            await asyncio.sleep(script.reply_delay)
        with self.lock:
            if number <= script.vanish_after_data:
                self._record(server, session, envelope, answered=False)
                server.hang_up = "instead of the reply"
                return "250 2.0.0 Ok (never sent)"
            if number <= script.temp_fail_first or (
                    script.temp_fail_rate and self.rng.random() < script.temp_fail_rate):
                self.temp_failures += 1
                return script.temp_fail_reply
            self._record(server, session, envelope, answered=True)
            self.accepted += 1
            if script.drop_every and self.accepted % script.drop_every == 0:
                server.hang_up = "after the reply"
            return f"250 2.0.0 Ok: queued as {self.accepted:06X}"

    def _record(self, server: ScriptedSMTP, session: Any, envelope: Any, *,
                answered: bool) -> None:
        auth = session.auth_data
        user = auth.login.decode() if isinstance(auth, LoginPassword) else None
        content = envelope.original_content or b""
        self.transactions.append(Transaction(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(content),
            connection=server.connection_number,
            user=user,
            tls=server.uses_tls(),
            answered=answered,
        ))


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP session with the hooks a script needs (421 greeting, hang-ups)."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = handler
        self.connection_number = 0
        self.hang_up: str | None = None  # "instead of the reply" | "after the reply"
        self.close_after_write = False  # Script.cut "after", a 421: close once replies are out
        self._counted = False
        self._greeted = False
        self._held: list[bytes] = []  # replies not written yet (Script.group_replies)
        self._smtp_methods = {verb: self._scripted(verb, method)
                              for verb, method in self._smtp_methods.items()}

    # -- Script.answer and Script.cut, around aiosmtpd's handling of each command -----------

    def _scripted(self, verb: str, method: Callable[[str | None], Awaitable[None]]
                  ) -> Callable[[str | None], Awaitable[None]]:
        async def handle(arg: str | None) -> None:
            recorder, script = self.recorder, self.recorder.script
            n = recorder.seen[verb] + 1
            if recorder.cutting(verb, n, "before"):
                self._abort()
                return
            recorder.seen[verb] = n
            if recorder.cutting(verb, n, "after"):
                self.close_after_write = True
            envelope = self.envelope
            in_order = envelope is not None and (
                (verb == "MAIL" and envelope.mail_from is None)
                or (verb == "RCPT" and envelope.mail_from is not None)
                or (verb == "DATA" and bool(envelope.rcpt_tos)))
            scripted = (script.answer(verb, n) if script.answer is not None
                        and verb in ("MAIL", "RCPT", "DATA") and in_order else None)
            if scripted is not None:
                await self.push(scripted)
            elif (verb == "DATA" and script.group_replies and envelope is not None
                  and envelope.mail_from is not None and not envelope.rcpt_tos):
                await self.push("554 5.5.1 Error: no valid recipients")  # RFC 2920 3.1
            elif verb == "DATA" and recorder.cutting("DOT", recorder.seen["DOT"] + 1, "mid"):
                await self.push("354 End data with <CR><LF>.<CR><LF>")
                await self._reader.readuntil(b"\r\n")  # the data starts to arrive
                self._abort()
            else:
                await method(arg)

        return handle

    def _abort(self) -> None:
        """Close the connection without writing the replies not written yet."""
        self._held.clear()
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrading = self._original_transport is not None  # STARTTLS calls this again
        super().connection_made(transport)
        if not upgrading:
            self.connection_number = self.recorder.opened(self)
            self._counted = True

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.recorder.closed(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self.recorder.refuse_this_connection():
            await self.push(self.recorder.script.refuse_reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def push(self, status: Any) -> None:
        if self.hang_up == "instead of the reply":
            self.hang_up = None
            self._abort()
            return
        grouped = self.recorder.script.group_replies
        if grouped and str(status).startswith("421") and self._greeted:
            self.close_after_write = True  # "421 ... closing the transmission channel"
        if not grouped:
            await super().push(status)
            self._greeted = True
        else:
            line = str(status)
            self._held.append(line.encode("utf-8") + b"\r\n")
            if line[3:4] == "-" or self._reader._buffer:  # type: ignore[attr-defined]
                return  # a reply's first lines (EHLO), or more commands are already read
            replies, self._held = b"".join(self._held), []
            self._writer.write(replies)
            if self._greeted:
                with self.recorder.lock:
                    self.recorder.writes += 1
            self._greeted = True
            await self._writer.drain()
        if self.hang_up == "after the reply" or self.close_after_write:
            self.hang_up = None
            self.close_after_write = False
            assert self.transport is not None
            self.transport.close()

    def uses_tls(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("sslcontext") is not None


# -- the server --------------------------------------------------------------------------------


class SmtpServer:
    """A scripted, recording SMTP server on 127.0.0.1 and a free port.

    ``tls``: "none", "starttls" (offered and required before MAIL) or "tls" (implicit).
    ``auth``: (user, password) to require AUTH; a wrong login gets 535. AUTH is offered over
    plaintext unless ``auth_require_tls`` (default: only when ``tls`` is "starttls"; aiosmtpd
    does not count implicit TLS as TLS for this check, so it is off for "tls").
    """

    def __init__(self, *, script: Script | None = None, tls: Security = "none",
                 auth: tuple[str, str] | None = None, auth_require_tls: bool | None = None,
                 timeout: float = 30.0) -> None:
        self.script = script if script is not None else Script()
        self.handler = RecordingHandler(self.script)
        self.tls: Security = tls
        self.auth = auth
        self.auth_require_tls = tls == "starttls" if auth_require_tls is None else auth_require_tls
        self.timeout = timeout
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tls_context = tls_files().server_context() if tls != "none" else None

    # -- what the tests look at ------------------------------------------------------------

    @property
    def transactions(self) -> list[Transaction]:
        with self.handler.lock:
            return list(self.handler.transactions)

    def received(self) -> Counter[str]:
        """How many messages each recipient got (answered or not)."""
        counts: Counter[str] = Counter()
        for transaction in self.transactions:
            counts.update(transaction.rcpt_tos)
        return counts

    def received_by(self, address: str) -> int:
        return self.received()[address]

    @property
    def connections(self) -> int:
        return self.handler.connections

    @property
    def max_concurrent(self) -> int:
        return self.handler.max_concurrent

    @property
    def concurrent(self) -> int:
        return self.handler.concurrent

    @property
    def seen(self) -> Counter[str]:
        """Commands handled, by verb; DOT counts the ends of messages' data."""
        with self.handler.lock:
            return Counter(self.handler.seen)

    @property
    def writes(self) -> int:
        """Replies written after the greeting: with Script.group_replies, one per round trip."""
        return self.handler.writes

    @property
    def ca_file(self) -> Path:
        return tls_files().ca_file

    def smtp_settings(self, **overrides: Any) -> Smtp:
        """An ``Smtp`` (event.toml's [smtp]) that points at this server."""
        values: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "security": self.tls,
            "username": self.auth[0] if self.auth else None,
            "timeout": 5.0,
            "ca_file": self.ca_file if self.tls != "none" else None,
            "allow_insecure_auth": False,
        }
        values.update(overrides)
        return Smtp(**values)

    # -- in the running loop ---------------------------------------------------------------

    async def start_async(self) -> SmtpServer:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server = await loop.create_server(
            self._new_session, host=HOST, port=0,
            ssl=self._tls_context if self.tls == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop_async(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with self.handler.lock:
            live = list(self.handler.live)
        for session in live:
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()
        for _ in range(3):  # let connection_lost callbacks run
            await asyncio.sleep(0)

    async def __aenter__(self) -> SmtpServer:
        return await self.start_async()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_async()

    # -- in a thread of its own ------------------------------------------------------------

    def start(self) -> SmtpServer:
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=serve, name="smtp-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the test SMTP server did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(10)

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- sessions ---------------------------------------------------------------------------

    def _new_session(self) -> ScriptedSMTP:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": exactly what the plaintext tests want.
            warnings.simplefilter("ignore")
            return ScriptedSMTP(
                self.handler,
                hostname=SERVER_NAME,
                tls_context=self._tls_context if self.tls == "starttls" else None,
                require_starttls=self.tls == "starttls",
                auth_required=self.auth is not None,
                auth_require_tls=self.auth_require_tls,
                authenticator=self._authenticate if self.auth is not None else None,
                timeout=self.timeout,
                loop=self._loop,
            )

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert self.auth is not None
        user, password = self.auth
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        # handled=False with no message: aiosmtpd answers "535 5.7.8 ... credentials invalid".
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


# -- time for the transport's injected clock and sleep -----------------------------------------


class FakeClock:
    """A clock that only moves when someone sleeps on it: ``clock=fake, sleep=fake.sleep``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += max(0.0, delay)
        await asyncio.sleep(0)
