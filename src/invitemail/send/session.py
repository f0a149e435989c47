"""What a connection needs of the run it works for: :class:`Session`.

The run (:mod:`invitemail.send.transport`) is one; a connection
(:mod:`invitemail.send.connection`), its set-up (:mod:`invitemail.send.login`,
:mod:`invitemail.send.connect_failures`) and its pipelined form
(:mod:`invitemail.send.pipeline`) see only this, never the run's queue or workers.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Protocol

from invitemail.inputs.config import Smtp
from invitemail.send.envelope import Envelope
from invitemail.send.outcomes import Result
from invitemail.send.replies import Step

if TYPE_CHECKING:
    from invitemail.auth.credentials import TokenCredential

__all__ = ["Session"]


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
