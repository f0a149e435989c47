"""The pipeline: event folder -> checked registrants -> messages -> transport -> journal.

Nothing here prints or knows about click; the CLI turns what these functions return (and the
errors they raise) into output and exit codes. Time is passed in (``now``) so tests control
it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invitemail import ics
from invitemail.addresses import Mailbox
from invitemail.config import REGISTRANTS_FILE, EventConfig, load_config
from invitemail.dates import describe_when
from invitemail.errors import Problem, ProblemsError, TemplateError
from invitemail.journal import CalendarRecord
from invitemail.message import HeaderValueError, MessageParts, build_message, make_message_id
from invitemail.registrants import (
    Registrant,
    RegistrantFile,
    Scan,
    open_registrants,
    unique_registrants,
)
from invitemail.render import Renderer

CANCEL_TEMPLATE = "cancellation"
UPDATE_TEMPLATE = "update"
TEST_PREFIX = {"da": "[TEST] ", "en": "[TEST] "}

_CALENDAR_WORDS = {
    "da": {"id": "Møde-ID", "password": "Adgangskode", "join": "Deltag",
           "cancelled": "Arrangementet er aflyst."},
    "en": {"id": "Meeting ID", "password": "Password", "join": "Join",
           "cancelled": "The event is cancelled."},
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Built:
    """One message, ready to send."""

    registrant: Registrant
    recipient: str  # the envelope recipient (the registrant, or the --test-to address)
    message_id: str
    subject: str
    data: bytes
    calendar: CalendarRecord


@dataclass
class CheckReport:
    """What `check` found: every problem at once, and what would be sent."""

    scan: Scan
    config_warnings: list[Problem]
    messages: int = 0
    template_errors: list[str] = field(default_factory=list)
    event_problems: list[Problem] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [*self.config_warnings, *self.event_problems, *self.scan.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.template_errors


class Campaign:
    """One event, one template, one registrant list."""

    def __init__(self, config: EventConfig, source: RegistrantFile, renderer: Renderer, *,
                 template: str = "invitation", now: dt.datetime | None = None) -> None:
        self.config = config
        self.source = source
        self.renderer = renderer
        self.template = template
        self.now = now or _utcnow()

    @classmethod
    def open(cls, event: Path, *, template: str = "invitation", registrants: Path | None = None,
             encoding: str | None = None, delimiter: str | None = None,
             now: dt.datetime | None = None) -> Campaign:
        config = load_config(event)
        renderer = Renderer(config.folder / "templates")
        if template not in renderer.names():
            raise TemplateError(f"there is no template {template!r}",
                                hint="pick one of: " + ", ".join(renderer.names()))
        source = open_registrants(registrants or config.folder / REGISTRANTS_FILE,
                                  encoding=encoding, delimiter=delimiter,
                                  default_language=config.event.language)
        return cls(config, source, renderer, template=template, now=now)

    # -- the content -----------------------------------------------------------------------

    def context(self, registrant: Registrant, *, test: bool = False) -> dict[str, Any]:
        """Everything a template can use (the README's table lists it)."""
        c, language = self.config, registrant.language
        join_url = registrant.join_url or c.meeting.join_url
        event = c.event
        details = self._calendar_description(registrant, join_url)
        return {
            "lang": language,
            "template": self.template,
            "test": test,
            "event": {"title": event.title, "description": event.description,
                      "duration": event.duration, "timezone": event.timezone,
                      "uid": event.uid, "sequence": event.sequence},
            "meeting": {"platform": c.meeting.platform, "id": c.meeting.id,
                        "password": c.meeting.password, "join_url": join_url,
                        "web_join_url": c.meeting.web_join_url,
                        "waiting_room": c.meeting.waiting_room,
                        "recorded": c.meeting.recorded},
            "sender": {"name": c.sender.name, "address": c.sender.address,
                       "reply_to": c.sender.reply_to.address if c.sender.reply_to else None},
            "support": {"phone": c.support.phone, "hours": c.support.hours_in(language),
                        "email": c.support.email},
            "privacy": {"policy_url": c.privacy.policy_url},
            "registrant": registrant.as_context(),
            "when": describe_when(event.start, event.end, language,
                                  registrant_zone=registrant.timezone or None, now=self.now),
            "links": ics.calendar_links(title=event.title, start=event.start, end=event.end,
                                        details=details, location=join_url),
            "changes": [],
        }

    def _calendar_description(self, registrant: Registrant, join_url: str) -> str:
        words = _CALENDAR_WORDS.get(registrant.language, _CALENDAR_WORDS["en"])
        if self.template == CANCEL_TEMPLATE:
            return f"{self.config.event.title}\n\n{words['cancelled']}"
        m = self.config.meeting
        return (f"{self.config.event.title}\n\n{words['join']}: {join_url}\n"
                f"{words['id']}: {m.id}\n{words['password']}: {m.password}")

    def build(self, registrant: Registrant, *, test_to: str | None = None) -> Built:
        """Render and encode one registrant's message.

        Raises TemplateError (the template fails) or HeaderValueError (a value would break
        a header).
        """
        c = self.config
        test = test_to is not None
        row = f"{self.source.label}:{registrant.line}"
        rendered = self.renderer.render(self.template, registrant.language,
                                        self.context(registrant, test=test), row=row)
        subject = rendered.subject
        if test:
            subject = TEST_PREFIX.get(registrant.language, "[TEST] ") + subject
        join_url = registrant.join_url or c.meeting.join_url
        cancel = self.template == CANCEL_TEMPLATE
        recipient = test_to or registrant.email
        uid = ics.registrant_uid(c.event.uid, registrant.email)
        if test:
            uid = "test-" + uid  # a test invite must not collide with the real entry
        sequence = c.event.sequence
        entry = ics.CalendarEntry(
            uid=uid, sequence=sequence, method="CANCEL" if cancel else "REQUEST",
            start=c.event.start, end=c.event.end, title=c.event.title,
            description=self._calendar_description(registrant, join_url),
            location="" if cancel else join_url,
            organizer_name=c.sender.name, organizer_address=c.sender.address,
            attendee_name=registrant.name, attendee_address=recipient, stamp=self.now)
        message_id = make_message_id(c.sender.mailbox.domain, c.event.uid, self.template,
                                     sequence, registrant.key, unique=test)
        data = build_message(MessageParts(
            sender=c.sender.mailbox,
            recipient=Mailbox(registrant.name, recipient),
            reply_to=c.sender.reply_to,
            subject=subject,
            date=self.now,
            message_id=message_id,
            text=rendered.text,
            html=rendered.html,
            calendar=ics.build_ics(entry),
            method=entry.method,
        ))
        record = CalendarRecord(sequence=sequence, start=c.event.start.isoformat(),
                                duration=c.event.duration, join_url=join_url,
                                password_digest=password_digest(c.event.uid, c.meeting.password),
                                template=self.template)
        return Built(registrant, recipient, message_id, subject, data, record)

    # -- check -----------------------------------------------------------------------------

    def check(self, *, on_message: Callable[[Built], None] | None = None) -> CheckReport:
        """Read every row and build every message; send nothing."""
        report = CheckReport(scan=Scan(), config_warnings=list(self.config.warnings))
        event = self.config.event
        if event.start < self.now and self.template != CANCEL_TEMPLATE:
            report.event_problems.append(Problem(
                str(self.config.path), None,
                f"event.start {event.start:%Y-%m-%d %H:%M} is in the past"))
        seen_template_errors: dict[str, int] = {}
        for registrant in unique_registrants(self.source, report.scan):
            try:
                built = self.build(registrant)
            except TemplateError as err:
                first = str(err).split(" (rendering for ")[0]
                if first not in seen_template_errors:
                    report.template_errors.append(str(err))
                seen_template_errors[first] = seen_template_errors.get(first, 0) + 1
                continue
            except HeaderValueError as err:
                report.scan.problems.append(Problem(self.source.label, registrant.line,
                                                    f"{err}; it cannot go in a header"))
                continue
            report.messages += 1
            if on_message is not None:
                on_message(built)
        if not report.scan.valid and not report.scan.errors:
            report.scan.problems.append(Problem(self.source.label, None,
                                                "has a header but no registrants"))
        return report

    def require_valid(self, report: CheckReport, *, skip_invalid: bool = False) -> None:
        if report.template_errors:
            raise TemplateError("\n".join(report.template_errors),
                                hint="fix the template; nothing was sent")
        errors = report.errors
        if skip_invalid:
            errors = [p for p in errors if p.line is None]
        if errors:
            raise ProblemsError(report.problems, hint="fix these rows (or give --skip-invalid "
                                "to send to the valid ones); nothing was sent")

    def messages(self, registrants: Iterable[Registrant], *,
                 test_to: str | None = None) -> Iterator[Built]:
        for registrant in registrants:
            try:
                yield self.build(registrant, test_to=test_to)
            except HeaderValueError:
                continue  # reported by check; never sent


def password_digest(event_uid: str, password: str) -> str:
    """Enough to notice a changed meeting password without storing it."""
    return hashlib.sha256(f"invitemail\0{event_uid}\0{password}".encode()).hexdigest()[:16]
