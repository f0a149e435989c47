"""The part of aiosmtplib that invitemail uses beyond its documented API, in one place.

aiosmtplib's ``SMTP.data()`` sends the DATA command and the message in one call, so a failure
cannot tell "refused before the hand-over" from "lost after it", which decides between
retrying a message and marking it uncertain. So the transport sends DATA itself and writes the
message on the connection's protocol (``SMTP.protocol``, an attribute, not a documented API),
then reads the final reply: the same steps ``data()`` takes, split in two. MAIL and RCPT go
through ``execute_command`` with the address bytes as they are, without aiosmtplib's address
parsing (``email.utils``, for every message).

Only this module touches ``SMTP.protocol``. ``tests/test_aiosmtplib_contract.py`` checks every
attribute, signature and behaviour it leans on against a real server, and ``pyproject.toml``
bounds aiosmtplib to the releases that test passed on: a release that changes them fails that
test by name rather than a send half way.
"""

from __future__ import annotations

import inspect

from aiosmtplib import SMTP, SMTPResponse, SMTPServerDisconnected

__all__ = ["TESTED_RANGE", "command", "read_reply", "write_message"]

# The aiosmtplib releases the contract test passed on; pyproject.toml says the same.
TESTED_RANGE: str = ">=3.0,<6"


async def command(client: SMTP, *words: bytes) -> SMTPResponse:
    """Send one command line made of ``words`` and return the reply (``MAIL``, ``RCPT``,
    ``DATA``). Raises SMTPServerDisconnected when the connection is gone."""
    return await client.execute_command(*words)


def write_message(client: SMTP, payload: bytes) -> None:
    """Write ``payload`` (the dot-stuffed message and its final dot) after a 354 reply.

    Raises SMTPServerDisconnected when the connection is gone: then nothing was written."""
    protocol = client.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    protocol.write(payload)


async def read_reply(client: SMTP, *, timeout: float) -> SMTPResponse:
    """The reply to what :func:`write_message` wrote, within ``timeout`` seconds.

    Raises SMTPServerDisconnected (the connection broke) or SMTPTimeoutError."""
    protocol = client.protocol
    if protocol is None:
        raise SMTPServerDisconnected("Connection lost")
    return await protocol.read_response(timeout=timeout)


def leaned_on() -> dict[str, inspect.Signature]:
    """The signatures this module relies on (the contract test compares them)."""
    from aiosmtplib.protocol import SMTPProtocol

    return {
        "SMTP.execute_command": inspect.signature(SMTP.execute_command),
        "SMTPProtocol.write": inspect.signature(SMTPProtocol.write),
        "SMTPProtocol.read_response": inspect.signature(SMTPProtocol.read_response),
    }
