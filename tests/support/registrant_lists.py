"""An event folder with a registrant list written byte for byte, sending to a test relay.

Shared by the tests of how every row of a list is taken (test_rows_accounted.py,
test_encoding_evidence.py, test_conflicting_duplicates.py): each writes the exact bytes an
export would have, runs the CLI, and asserts what a coordinator reads.
"""

from __future__ import annotations

from pathlib import Path

from support.cli import Run, run_cli
from support.event import EventBuilder
from support.relay import SmtpServer


def relay_event(folder: Path, server: SmtpServer, registrants: bytes | str) -> Path:
    """An event folder whose [smtp] is ``server`` (plaintext, no login) and whose
    registrants.csv holds ``registrants`` (text is written as UTF-8, newlines as given)."""
    data = registrants.encode("utf-8") if isinstance(registrants, str) else registrants
    return EventBuilder(registrants=data).plain_relay(server.port).write(folder).folder


def lines(text: str, folder: Path) -> list[str]:
    """The lines of an output, with the event folder written ``{event}``."""
    return text.replace(str(folder), "{event}").splitlines()


def send(folder: Path, *options: str) -> Run:
    return run_cli("send", folder, "--yes", *options)


def recipients(server: SmtpServer) -> list[str]:
    """Who the relay took a message for, each once per message, sorted."""
    return sorted(address for transaction in server.transactions
                  for address in transaction.rcpt_tos)
