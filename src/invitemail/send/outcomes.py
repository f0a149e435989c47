"""What a send run reports: per attempt (:class:`Result`), per envelope (:class:`Outcome`,
through :class:`Hooks`), and per run (:class:`DeliveryReport`). Data only, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from invitemail.send.envelope import Envelope
from invitemail.send.errors import TransportError
from invitemail.send.replies import ReplyClass, Verdict

__all__ = [
    "NETWORK",
    "UNSENDABLE",
    "DeliveryReport",
    "Failure",
    "Hooks",
    "Kind",
    "NoHooks",
    "Outcome",
    "Result",
    "State",
    "fatal",
]


class State(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final word on one envelope."""

    key: str
    state: State
    reply: str  # the relay's last reply, or a sentence for a network failure
    attempts: int


class Hooks(Protocol):
    """What the caller (the journal) hears, synchronously, from the workers."""

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        """Right before DATA, after MAIL FROM and RCPT TO were accepted (pipelined: after
        the 354, right before the write that carries the data).

        Make the journal row ``sending`` durable here: from now on a crash leaves it uncertain.
        """

    def finished(self, outcome: Outcome) -> None:
        """The final outcome of one envelope, before its worker starts another transaction."""

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        """Attempt number ``attempt`` failed for now (``reply`` says why); the envelope is
        tried again after ``delay`` seconds."""


class NoHooks:
    """Hooks that record nothing: a run that sends nothing (a login check), or a caller
    that only wants the report (the benchmark)."""

    def handing_over(self, envelope: Envelope, attempt: int) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        pass

    def retrying(self, envelope: Envelope, reply: str, attempt: int, delay: float) -> None:
        pass


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    retried: int = 0  # retry events (one per :meth:`Hooks.retrying` call)
    connections: int = 0  # connections opened (the relay answered the greeting)
    stopped: TransportError | None = None  # why the run stopped early, or None
    interrupted: bool = False  # the stop event was set
    throttled: int = 0  # sender-rate replies that slowed the whole run down
    connections_dropped: int = 0  # connections given up on a "too many connections" reply
    # Envelopes that were tried but had no final outcome when the run stopped early: each
    # attempt ended in a temporary refusal or failed before the data was handed over, so none
    # was delivered. No ``finished`` call was made for them; put them back to pending.
    deferred: list[str] = field(default_factory=list)


class Kind(enum.Enum):
    """What one attempt came to."""

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
    """One attempt's result, as a connection reports it to the run."""

    kind: Kind
    reply: str
    verdict: Verdict | None = None  # for REFUSED
    error: TransportError | None = None


def fatal(error: TransportError) -> Result:
    """The result that stops the run with ``error``."""
    return Result(Kind.FATAL, str(error), error=error)


class Failure(Exception):
    """Carries a non-SENT :class:`Result` out of connection set-up."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reply)
        self.result = result
