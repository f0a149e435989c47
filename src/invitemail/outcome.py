"""What building one registrant's message gave: a tagged type, matched by its class.

The steps here are what the worker processes run (pool.py), so they are module-level
functions of what builds the messages, given as a :class:`MessageBuilder` (the campaign),
which this module never imports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from invitemail.errors import TemplateError
from invitemail.inputs.registrants import Registrant, RegistrantSource, unique_registrants
from invitemail.journal.store import CalendarRecord
from invitemail.mime.message import HeaderValueError, restamp_header
from invitemail.send.envelope import dot_stuff, unstuffed

__all__ = ["Built", "Checked", "HeaderRefused", "Inspect", "Made", "MessageBuilder", "Outcome",
           "TemplateFailed", "outcome_of", "warm_up"]


@dataclass(frozen=True, slots=True)
class Built:
    """One message, ready to send.

    It holds its bytes in one form (``content``): the message as build_message wrote it, or,
    when it was built for sending (:meth:`for_sending`, in the worker that built it), its
    wire form, so that the process that speaks SMTP only splices the Date in
    (:meth:`wire_dated`).
    :attr:`data` and :attr:`wire` give either form from either."""

    registrant: Registrant
    recipient: str  # the envelope recipient (the registrant, or the --test-to address)
    message_id: str
    subject: str
    content: bytes  # :attr:`data`, or :attr:`wire` when ``stuffed``
    calendar: CalendarRecord | None  # None: the message carries no calendar (a follow-up)
    template: str  # the template rendered: the campaign's, or a follow-up's thanks or missed
    stuffed: bool = False
    ascii: bool | None = None  # whether the bytes are all ASCII, once a worker looked

    @property
    def data(self) -> bytes:
        """The message: CRLF line endings (every line), as build_message wrote it."""
        return unstuffed(self.content) if self.stuffed else self.content

    @property
    def wire(self) -> bytes:
        """The message as it goes on the wire after DATA: dot-stuffed, with the final dot."""
        return self.content if self.stuffed else dot_stuff(self.content, crlf=True)

    def for_sending(self) -> Built:
        """This message holding its wire form (made where it was built, off the process
        that speaks SMTP)."""
        if self.stuffed:
            return self
        wire = self.wire
        # The constructor, not dataclasses.replace (which costs as much as the Date splice).
        return Built(self.registrant, self.recipient, self.message_id, self.subject, wire,
                     self.calendar, self.template, True, wire.isascii())

    def wire_dated(self, value: bytes) -> bytes:
        """The message as it is handed over: its wire form with ``value`` as its Date
        (``mime.message.DateHeaders.at``); one copy, and ASCII as :attr:`ascii` says."""
        return restamp_header(self.wire, value)

    def __reduce__(self) -> tuple[Callable[..., Built], tuple[Any, ...]]:
        # Pickled as the constructor's arguments (one tuple): a frozen slots dataclass
        # otherwise goes through dataclasses' __getstate__/__setstate__, in Python, in the
        # process that unpickles it (the one that speaks SMTP). The calendar record goes
        # as its fields, for the same reason (its class is not this module's).
        calendar = self.calendar
        return _built, (self.registrant, self.recipient, self.message_id, self.subject,
                        self.content, None if calendar is None else _record_fields(calendar),
                        self.template, self.stuffed, self.ascii)


def _record_fields(record: CalendarRecord) -> tuple[int, str, int, str, str, str]:
    return (record.sequence, record.start, record.duration, record.join_url,
            record.password_digest, record.template)


def _built(registrant: Registrant, recipient: str, message_id: str, subject: str,
           content: bytes, calendar: tuple[int, str, int, str, str, str] | None,
           template: str, stuffed: bool, ascii: bool | None) -> Built:
    """A Built from its pickled form (:meth:`Built.__reduce__`)."""
    return Built(registrant, recipient, message_id, subject, content,
                 None if calendar is None else CalendarRecord(*calendar), template, stuffed,
                 ascii)


Inspect = Callable[[Built], Any]  # run where a message was built (a module-level function)


@dataclass(frozen=True, slots=True)
class Made:
    """The message was built; ``inspected`` is what ``inspect`` said of it, or None."""

    built: Built
    inspected: Any = None

    def __reduce__(self) -> tuple[type[Made], tuple[Built, Any]]:
        return Made, (self.built, self.inspected)  # the constructor: see Built.__reduce__


@dataclass(frozen=True, slots=True)
class Checked:
    """The message renders and its headers can be encoded (checked, not built)."""


@dataclass(frozen=True, slots=True)
class TemplateFailed:
    """The template failed for this registrant (or for everyone: see RenderFailures)."""

    error: TemplateError


@dataclass(frozen=True, slots=True)
class HeaderRefused:
    """A value would break a header (a line break in a name or a subject)."""

    reason: str


Outcome = Made | Checked | TemplateFailed | HeaderRefused


class MessageBuilder(Protocol):
    """What builds the messages (the campaign)."""

    @property
    def source(self) -> RegistrantSource: ...

    def build(self, registrant: Registrant, *, test_to: str | None = None,
              wire: bool = False) -> Built: ...

    def validate(self, registrant: Registrant) -> None: ...


def outcome_of(builder: MessageBuilder, registrant: Registrant, *, encode: bool,
               test_to: str | None = None, inspect: Inspect | None = None,
               wire: bool = False) -> Outcome:
    """Build (``encode``) or check one registrant's message; ``wire``: built for sending
    (:meth:`Built.for_sending`)."""
    try:
        if encode:
            built = builder.build(registrant, test_to=test_to, wire=wire)
            inspected = inspect(built) if inspect is not None else None
            return Made(built, inspected)
        builder.validate(registrant)
        return Checked()
    except TemplateError as err:  # a copy without the traceback, to cross processes
        return TemplateFailed(TemplateError(err.message, hint=err.hint))
    except HeaderValueError as err:
        return HeaderRefused(str(err))


WARM_ROWS = 200  # rows a worker looks through for the languages to build once at start


def warm_up(builder: MessageBuilder) -> None:
    """Build the first registrant's message in each language of the first rows and throw
    them away: those templates are parsed and their skeletons rendered before the first
    real chunk arrives. (A failure is the check's to report.)"""
    languages: set[str] = set()
    with contextlib.suppress(Exception):
        for registrant in islice(unique_registrants(builder.source), WARM_ROWS):
            if registrant.language not in languages:
                languages.add(registrant.language)
                builder.build(registrant)
