"""The aiosmtplib internals invitemail.send.smtp_adapter leans on, checked one by one.

When a new aiosmtplib release changes any of them, a test here fails by name, before a send
goes wrong half way; then adapt smtp_adapter (and raise the bound in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import tomllib
from importlib.metadata import version
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtplib import SMTP, SMTPServerDisconnected, SMTPTimeoutError
from aiosmtplib.protocol import SMTPProtocol
from packaging.requirements import Requirement

from invitemail.send import smtp_adapter
from support.ports import free_port
from support.relay import HOST, Script, SmtpServer

ROOT = Path(__file__).resolve().parents[1]


def _requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = [Requirement(d) for d in project["dependencies"] if d.startswith("aiosmtplib")]
    assert len(found) == 1
    return found[0]


def test_contract_pyproject_bounds_aiosmtplib_as_the_adapter_says() -> None:
    requirement = _requirement()
    assert str(requirement.specifier) == ",".join(sorted(smtp_adapter.TESTED_RANGE.split(",")))
    assert any(spec.operator == "<" for spec in requirement.specifier), "no upper bound"
    assert requirement.specifier.contains(version("aiosmtplib")), (
        f"aiosmtplib {version('aiosmtplib')} is installed, outside {requirement.specifier}")


def test_contract_execute_command_takes_bytes_words_and_a_timeout() -> None:
    parameters = inspect.signature(SMTP.execute_command).parameters
    assert [p.kind for p in parameters.values()][:2] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL]
    assert "timeout" in parameters
    assert inspect.iscoroutinefunction(SMTP.execute_command)


def test_contract_protocol_write_and_read_response_signatures() -> None:
    assert list(inspect.signature(SMTPProtocol.write).parameters) == ["self", "data"]
    assert not inspect.iscoroutinefunction(SMTPProtocol.write)  # written at once, no await
    read = inspect.signature(SMTPProtocol.read_response)
    assert list(read.parameters) == ["self", "timeout"]
    assert inspect.iscoroutinefunction(SMTPProtocol.read_response)
    assert set(smtp_adapter.leaned_on()) == {"SMTP.execute_command", "SMTPProtocol.write",
                                             "SMTPProtocol.read_response",
                                             "SMTPProtocol.connection_lost"}
    # The pipe hands a lost connection on to aiosmtplib's protocol.
    assert list(inspect.signature(SMTPProtocol.connection_lost).parameters) == ["self", "exc"]


def test_contract_the_client_has_a_protocol_only_while_connected() -> None:
    async def scenario() -> None:
        async with SmtpServer() as server:
            client = SMTP(hostname=HOST, port=server.port, start_tls=False, timeout=5)
            assert client.protocol is None
            await client.connect()
            assert isinstance(client.protocol, SMTPProtocol)
            client.close()
            assert client.protocol is None
            with pytest.raises(SMTPServerDisconnected):
                smtp_adapter.write_message(client, b"x\r\n.\r\n")
            with pytest.raises(SMTPServerDisconnected):
                await smtp_adapter.read_reply(client, timeout=1)
            with pytest.raises(SMTPServerDisconnected):
                await smtp_adapter.command(client, b"NOOP")

    asyncio.run(scenario())


def test_contract_data_split_in_write_and_read_delivers_the_exact_bytes() -> None:
    async def scenario() -> None:
        async with SmtpServer() as server:
            client = SMTP(hostname=HOST, port=server.port, start_tls=False, timeout=5)
            await client.connect()
            await client.ehlo()
            # Words go on the line as given: no address parsing, no quoting of their own.
            mail = await smtp_adapter.command(client, b"MAIL", b"FROM:<a@example.org>")
            rcpt = await smtp_adapter.command(client, b"RCPT", b"TO:<b@example.org>")
            start = await smtp_adapter.command(client, b"DATA")
            assert (mail.code, rcpt.code, start.code) == (250, 250, 354)
            body = b"Subject: hi\r\n\r\n..a line that starts with a dot\r\nend\r\n"
            smtp_adapter.write_message(client, body + b".\r\n")
            final = await smtp_adapter.read_reply(client, timeout=5)
            assert final.code == 250 and isinstance(final, aiosmtplib.SMTPResponse)
            # The connection stays in step: the next command gets its own reply.
            assert (await smtp_adapter.command(client, b"NOOP")).code == 250
            await client.quit()
        [transaction] = server.transactions
        assert transaction.mail_from == "a@example.org"
        assert transaction.rcpt_tos == ("b@example.org",)
        assert transaction.data == b"Subject: hi\r\n\r\n.a line that starts with a dot\r\nend\r\n"

    asyncio.run(scenario())


def test_contract_read_reply_times_out_with_smtp_timeout_error() -> None:
    async def scenario() -> None:
        async with SmtpServer(script=Script(reply_delay=2.0)) as server:
            client = SMTP(hostname=HOST, port=server.port, start_tls=False, timeout=5)
            await client.connect()
            await client.ehlo()
            await smtp_adapter.command(client, b"MAIL", b"FROM:<a@example.org>")
            await smtp_adapter.command(client, b"RCPT", b"TO:<b@example.org>")
            await smtp_adapter.command(client, b"DATA")
            smtp_adapter.write_message(client, b"Subject: hi\r\n\r\nx\r\n.\r\n")
            with pytest.raises(SMTPTimeoutError):
                await smtp_adapter.read_reply(client, timeout=0.1)
            client.close()

    asyncio.run(scenario())


def test_contract_aiosmtplib_loses_replies_to_a_group_so_the_pipe_reads_them() -> None:
    """Why :class:`smtp_adapter.Pipe` exists: aiosmtplib's protocol reads one reply per
    command awaited. If a release learns to read pipelined replies, this says so."""
    async def scenario() -> None:
        async with SmtpServer() as server:
            client = SMTP(hostname=HOST, port=server.port, start_tls=False, timeout=5)
            await client.connect()
            await client.ehlo()
            assert client.protocol is not None
            client.protocol.write(b"NOOP\r\nNOOP\r\n")
            assert (await smtp_adapter.read_reply(client, timeout=1)).code == 250
            with pytest.raises(SMTPTimeoutError):  # the second reply was dropped
                await smtp_adapter.read_reply(client, timeout=0.3)
            client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("tls", ["none", "tls", "starttls"])
def test_contract_the_pipe_takes_the_connection_over_and_gives_it_back(tls: str) -> None:
    async def scenario() -> None:
        async with SmtpServer(tls=tls) as server:  # type: ignore[arg-type]
            context = ssl.create_default_context(cafile=str(server.ca_file))
            client = SMTP(hostname=HOST, port=server.port, use_tls=tls == "tls",
                          start_tls=False, tls_context=context, timeout=5)
            await client.connect()
            await client.ehlo()
            if tls == "starttls":
                await client.starttls()
                await client.ehlo()
            pipe = smtp_adapter.Pipe(client)
            assert pipe.is_open
            pipe.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
            codes = [(await pipe.read_reply(timeout=5)).code for _ in range(3)]
            assert codes == [250, 250, 354]
            pipe.write(b"Subject: hi\r\n\r\nx\r\n.\r\nNOOP\r\n")
            assert [(await pipe.read_reply(timeout=5)).code for _ in range(2)] == [250, 250]
            with pytest.raises(SMTPTimeoutError):
                await pipe.read_reply(timeout=0.1)
            pipe.release()  # aiosmtplib's own commands work again
            assert (await smtp_adapter.command(client, b"NOOP")).code == 250
            await client.quit()
        [transaction] = server.transactions
        assert transaction.rcpt_tos == ("b@example.org",) and transaction.data.endswith(b"x\r\n")

    asyncio.run(scenario())


def test_contract_a_lost_connection_reaches_the_pipe_and_aiosmtplib() -> None:
    async def scenario() -> None:
        async with SmtpServer(script=Script(vanish_after_data=1)) as server:
            client = SMTP(hostname=HOST, port=server.port, start_tls=False, timeout=5)
            await client.connect()
            await client.ehlo()
            pipe = smtp_adapter.Pipe(client)
            pipe.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
            for _ in range(3):
                await pipe.read_reply(timeout=5)
            pipe.write(b"Subject: hi\r\n\r\nx\r\n.\r\n")
            with pytest.raises(SMTPServerDisconnected):
                await pipe.read_reply(timeout=5)
            assert not pipe.is_open
            with pytest.raises(SMTPServerDisconnected):
                pipe.write(b"NOOP\r\n")
            await asyncio.sleep(0)
            assert not client.is_connected  # aiosmtplib heard of it too
            client.close()

    asyncio.run(scenario())


def test_contract_the_pipe_reads_multiline_and_garbled_replies() -> None:
    async def scenario() -> None:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 hi\r\n")
            await reader.readline()
            writer.write(b"250-relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            await reader.readline()
            writer.write(b"250-first\r\n250 second\r\nthis is not SMTP\r\n")
            await writer.drain()
            await reader.read()

        server = await asyncio.start_server(relay, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        client = SMTP(hostname=HOST, port=port, start_tls=False, timeout=5)
        await client.connect()
        await client.ehlo()
        assert client.supports_extension("pipelining")
        pipe = smtp_adapter.Pipe(client)
        pipe.write(b"NOOP\r\n")
        reply = await pipe.read_reply(timeout=5)
        assert (reply.code, reply.message) == (250, "first\nsecond")
        with pytest.raises(aiosmtplib.SMTPResponseException) as raised:
            await pipe.read_reply(timeout=5)
        assert raised.value.code == -1 and "this is not SMTP" in raised.value.message
        client.close()
        server.close()

    asyncio.run(scenario())


def test_contract_the_protocol_holds_the_asyncio_transport_the_pipe_takes_over() -> None:
    async def scenario() -> None:
        async with SmtpServer() as server:
            client = SMTP(hostname=HOST, port=server.port, start_tls=False, timeout=5)
            await client.connect()
            protocol = client.protocol
            assert protocol is not None
            transport = protocol.transport
            assert isinstance(transport, asyncio.WriteTransport)
            assert transport.get_protocol() is protocol and not transport.is_closing()
            client.close()
            assert transport.is_closing()

    asyncio.run(scenario())


async def _one_reply(payload: bytes, *, piped: bool) -> tuple[int, str]:
    """The reply a relay that answers NOOP with ``payload`` gives, as aiosmtplib reads it
    (``piped`` False) or as the pipe does; (code, message), or (code, "") for an error."""
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readline()
        writer.write(b"250 relay\r\n")
        await reader.readline()
        writer.write(payload)
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(relay, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    client = SMTP(hostname=HOST, port=port, start_tls=False, timeout=5)
    try:
        await client.connect()
        await client.ehlo()
        try:
            if piped:
                pipe = smtp_adapter.Pipe(client)
                pipe.write(b"NOOP\r\n")
                reply = await pipe.read_reply(timeout=5)
            else:
                reply = await smtp_adapter.command(client, b"NOOP")
        except aiosmtplib.SMTPResponseException as error:
            return error.code, ""
        assert isinstance(reply, aiosmtplib.SMTPResponse)
        return reply.code, reply.message
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("payload", [
    b"250 ok\r\n",
    b"250-first\r\n250 second\r\n",
    b"250-first\r\n250-  spaced  \t\r\n250 third\r\n",
    b"250\r\n",
    b"251 bare line feed\n",
    b"250 caf\xc3\xa9 \xe2\x80\x94 utf-8\r\n",
    b"250 not utf-8: \xff\xfe\r\n",
    b"452-4.3.1 first\r\n452 4.3.1 second line\r\n",
    b"this is not SMTP\r\n",
    b"25x broken code\r\n",
])
def test_contract_the_pipe_parses_a_reply_as_aiosmtplib_does(payload: bytes) -> None:
    """The pipe builds :class:`SMTPResponse` itself; what a reply means must not depend on
    whether it came pipelined. A garbled reply is code -1 either way."""
    plain = asyncio.run(_one_reply(payload, piped=False))
    piped = asyncio.run(_one_reply(payload, piped=True))
    assert piped == plain
    assert aiosmtplib.SMTPResponse(*plain) == (plain[0], plain[1])  # (code, message) fields


def test_contract_a_refused_connection_carries_the_os_error_as_its_cause() -> None:
    port = free_port()  # a port nobody listens on

    async def scenario() -> None:
        client = SMTP(hostname=HOST, port=port, start_tls=False, timeout=5)
        with pytest.raises(aiosmtplib.SMTPConnectError) as raised:
            await client.connect()
        cause = smtp_adapter.connect_cause(raised.value)
        assert isinstance(cause, ConnectionRefusedError) and cause.errno

    asyncio.run(scenario())


def test_contract_a_relay_closing_before_its_greeting_is_a_disconnect_as_the_cause() -> None:
    async def scenario() -> None:
        async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(rude, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        client = SMTP(hostname=HOST, port=port, start_tls=False, timeout=5)
        with pytest.raises(aiosmtplib.SMTPConnectError) as raised:
            await client.connect()
        assert isinstance(smtp_adapter.connect_cause(raised.value), SMTPServerDisconnected)
        client.close()
        server.close()

    asyncio.run(scenario())


def test_contract_the_error_classes_the_connect_judges_rely_on() -> None:
    """invitemail.send.connect_failures tries a connect timeout before a silent relay, and
    calls a timeout "timed out": the classes must nest so."""
    assert issubclass(aiosmtplib.SMTPConnectTimeoutError, aiosmtplib.SMTPConnectError)
    assert issubclass(aiosmtplib.SMTPConnectTimeoutError, TimeoutError)
    assert issubclass(aiosmtplib.SMTPReadTimeoutError, SMTPTimeoutError)
    assert issubclass(SMTPTimeoutError, TimeoutError)
    assert issubclass(SMTPServerDisconnected, aiosmtplib.SMTPException)
    assert issubclass(aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPResponseException)


# Each internal smtp_adapter names, and the test that checks it.
COVERED = {
    "SMTP.protocol": test_contract_the_client_has_a_protocol_only_while_connected,
    "SMTPProtocol.write": test_contract_data_split_in_write_and_read_delivers_the_exact_bytes,
    "SMTPProtocol.read_response": test_contract_read_reply_times_out_with_smtp_timeout_error,
    "SMTPProtocol.transport":
        test_contract_the_protocol_holds_the_asyncio_transport_the_pipe_takes_over,
    "SMTPProtocol.connection_lost": test_contract_a_lost_connection_reaches_the_pipe_and_aiosmtplib,
    "SMTPResponse": test_contract_the_pipe_parses_a_reply_as_aiosmtplib_does,
    "SMTPConnectError.__cause__":
        test_contract_a_refused_connection_carries_the_os_error_as_its_cause,
}


def test_contract_every_internal_the_adapter_names_has_a_check() -> None:
    assert set(COVERED) == set(smtp_adapter.INTERNALS)


def test_contract_only_the_adapter_reaches_into_aiosmtplib() -> None:
    """No other module uses ``.protocol``, imports an aiosmtplib submodule, or reads a
    private attribute of something that is not its own (``self``, ``cls``)."""
    import ast

    package = ROOT / "src" / "invitemail"
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "smtp_adapter.py":
            continue
        where = path.relative_to(package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "aiosmtplib."):
                found.append(f"{where}:{node.lineno}: from {node.module} import")
            if not isinstance(node, ast.Attribute):
                continue
            if node.attr == "protocol":
                found.append(f"{where}:{node.lineno}: .protocol")
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if private and not own and "aiosmtplib" in path.read_text(encoding="utf-8"):
                found.append(f"{where}:{node.lineno}: .{node.attr}")
    assert found == []
