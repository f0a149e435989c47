"""The pipeline: event folder -> checked registrants -> messages -> transport -> journal.

Nothing here prints or knows about click; the CLI turns what these functions return (and the
errors they raise) into output and exit codes. Time is passed in (``now``) so tests control
it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invitemail import pool as parallel
from invitemail.errors import Problem, ProblemsError, TemplateError, position
from invitemail.inputs.addresses import Mailbox, is_loopback_host
from invitemail.inputs.config import EventConfig, load_config
from invitemail.inputs.kept_rows import KeptRows
from invitemail.inputs.registrants import (
    Registrant,
    RegistrantSource,
    Scan,
    default_registrants,
    open_registrants,
    unique_registrants,
)
from invitemail.journal.store import CalendarRecord, Journal, JournalError
from invitemail.mime import ics
from invitemail.mime.dates import describe_when
from invitemail.mime.inline import inline_body
from invitemail.mime.message import (
    MessageParts,
    build_message,
    encode_mailbox,
    encode_text_header,
    make_message_id,
)
from invitemail.render.body import Body
from invitemail.render.failures import RenderFailures
from invitemail.render.renderer import Rendered, Renderer
from invitemail.send.followup import FollowUp, open_followup

CANCEL_TEMPLATE = "cancellation"
UPDATE_TEMPLATE = "update"
TEST_PREFIX = {"da": "[TEST] ", "en": "[TEST] "}

_CALENDAR_WORDS = {
    "da": {"id": "Møde-ID", "password": "Adgangskode", "join": "Deltag",
           "cancelled": "Arrangementet er aflyst."},
    "en": {"id": "Meeting ID", "password": "Password", "join": "Join",
           "cancelled": "The event is cancelled."},
}


def _a_row(problem: Problem, report: CheckReport) -> bool:
    """A problem of one registrant row: what --skip-invalid leaves out (a problem of
    event.toml has a line too, but no row to leave out)."""
    return problem.line is not None and problem in report.scan.problems


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
    calendar: CalendarRecord | None  # None: the message carries no calendar (a follow-up)
    template: str  # the template rendered: the campaign's, or a follow-up's thanks or missed


@dataclass
class CheckReport:
    """What `check` found: every problem at once, and what would be sent."""

    scan: Scan
    config_warnings: list[Problem]
    messages: int = 0
    template_errors: list[TemplateError] = field(default_factory=list)
    event_problems: list[Problem] = field(default_factory=list)
    # For the follow-up: how many messages of each template (thanks, missed) were built.
    variants: Counter[str] = field(default_factory=Counter)

    @property
    def problems(self) -> list[Problem]:
        return [*self.config_warnings, *self.event_problems, *self.scan.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.template_errors


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """How a campaign was opened, so that a worker process can open the same one."""

    event: Path
    template: str
    registrants: Path | None
    encoding: str | None
    delimiter: str | None
    now: dt.datetime
    stage: str | None = None
    attendance: Path | None = None
    assume: str | None = None
    sheet: str | None = None


class Campaign:
    """One event, one template, one registrant list."""

    spec: CampaignSpec | None = None  # set by open(); None: build in this process only

    def __init__(self, config: EventConfig, source: RegistrantSource, renderer: Renderer, *,
                 template: str = "invitation", now: dt.datetime | None = None,
                 followup: FollowUp | None = None) -> None:
        self.config = config
        self.followup = followup  # for the follow-up: who gets thanks and who missed
        self.source = source
        self.kept = KeptRows(source)  # the check's registrants, for the sending (short lists)
        self.renderer = renderer
        self.template = template
        # The journal's name for what this campaign sends: the template, or a stage of the
        # schedule ("reminder@1 day@..."; schedule.py) or a reschedule, each journaled apart.
        self.stage = template
        self.now = now or _utcnow()
        self.history: dict[str, CalendarRecord] = {}
        self._shared_contexts: dict[str, dict[str, Any]] = {}
        self._calendars = ics.CalendarBuilder()
        self.latest: CalendarRecord | None = None
        self.load_history()

    def load_history(self) -> None:
        """Each registrant's calendar as sent, from the journal. A journal that cannot be
        read, or is another event's, gives none here: `send` refuses it (safeguard.py)."""
        try:
            journal = Journal.open(self.config.folder, create=False,
                                   event_uid=self.config.event.uid)
            if journal is not None:
                with journal:
                    self.history = journal.calendars()
        except JournalError:
            self.history = {}
        # The newest calendar any registrant got: the reference for registrants that have none.
        self.latest = max(self.history.values(), key=lambda r: (r.sequence, r.start),
                          default=None)

    @classmethod
    def open(cls, event: Path, *, template: str = "invitation", registrants: Path | None = None,
             encoding: str | None = None, delimiter: str | None = None,
             now: dt.datetime | None = None, sheet: str | None = None,
             stage: str | None = None, attendance: Path | None = None,
             assume: str | None = None, attendance_required: bool = False) -> Campaign:
        """``sheet``: the workbook's sheet of registrants; ``stage``: the journal name (a
        reminder of the schedule); ``attendance``: the platform's report, for the follow-up
        (``assume``: the follow-up every registrant is shown without one, in `check` and
        `preview`)."""
        config = load_config(event)
        renderer = Renderer(config.folder / "templates")
        if template not in renderer.names():
            raise TemplateError(f"there is no template {template!r}",
                                hint="pick one of: " + ", ".join(renderer.names()))
        followup = open_followup(template, attendance, assume=assume,
                                 required=attendance_required)
        source = open_registrants(registrants or default_registrants(config.folder),
                                  encoding=encoding, delimiter=delimiter, sheet=sheet,
                                  default_language=config.event.language,
                                  local_test=is_loopback_host(config.smtp.host))
        campaign = cls(config, source, renderer, template=template, now=now, followup=followup)
        campaign.stage = stage or template
        campaign.spec = CampaignSpec(event=event, template=template, registrants=registrants,
                                     encoding=encoding, delimiter=delimiter, now=campaign.now,
                                     stage=stage, attendance=attendance, assume=assume,
                                     sheet=sheet)
        return campaign

    def use_stage(self, stage: str) -> None:
        """Journal (and name the Message-IDs of) what this campaign sends as ``stage``."""
        self.stage = stage
        if self.spec is not None:
            self.spec = dataclasses.replace(self.spec, stage=stage)

    # -- the content -----------------------------------------------------------------------

    def context(self, registrant: Registrant, *, test: bool = False,
                changes: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Everything a template can use (the README's table lists it)."""
        return self._context(registrant, self._group(registrant, test, changes), test, changes)

    def template_for(self, registrant: Registrant) -> str:
        """The template this registrant's message is rendered from: the campaign's, or for
        the follow-up `thanks` or `missed`."""
        if self.followup is None:
            return self.template
        return self.followup.variant(registrant.key)

    def _context(self, registrant: Registrant, group: str, test: bool,
                 changes: list[dict[str, str]] | None) -> dict[str, Any]:
        join_url = registrant.join_url or self.config.meeting.join_url
        shared = self._shared_contexts.get(group)
        if shared is None:
            shared = self._shared_context(registrant, join_url, test, changes or [])
            if len(self._shared_contexts) > 4096:  # personal links: keep memory bounded
                self._shared_contexts.clear()
            self._shared_contexts[group] = shared
        return {**shared, "registrant": registrant.as_context()}

    def _group(self, registrant: Registrant, test: bool,
               changes: list[dict[str, str]] | None) -> str:
        """What the context depends on besides the registrant's own values: registrants with
        the same group share everything but ``registrant``."""
        join_url = registrant.join_url or self.config.meeting.join_url
        return repr((registrant.language, join_url, registrant.timezone, test, changes or [],
                     self.template_for(registrant)))

    def _shared_context(self, registrant: Registrant, join_url: str, test: bool,
                        changes: list[dict[str, str]]) -> dict[str, Any]:
        """The part of the context that depends on the language, the join link, the time
        zone and the template only, built once per such group."""
        c, language = self.config, registrant.language
        event = c.event
        details = self._calendar_description(registrant, join_url)
        return {
            "lang": language,
            "template": self.template_for(registrant),
            "test": test,
            "event": {"title": event.title_in(language),
                      "description": event.description_in(language),
                      "duration": event.duration, "timezone": event.timezone,
                      "uid": event.uid, "sequence": event.sequence,
                      "recording_url": event.recording_url, "slides_url": event.slides_url,
                      "next_url": event.next_url},
            "meeting": {"platform": c.meeting.platform, "id": c.meeting.id,
                        "password": c.meeting.password, "join_url": join_url,
                        "web_join_url": c.meeting.web_join_url,
                        "waiting_room": c.meeting.waiting_room,
                        "recorded": c.meeting.recorded},
            "sender": {"name": c.sender.name, "address": c.sender.address,
                       "reply_to": c.sender.reply_to.address if c.sender.reply_to else None},
            "support": {"phone": c.support.phone, "hours": c.support.hours_in(language),
                        "email": c.support.email},
            "privacy": {"policy_url": c.privacy.policy_url_in(language)},
            "when": describe_when(event.start, event.end, language,
                                  registrant_zone=registrant.timezone or None, now=self.now),
            "links": ics.calendar_links(title=event.title_in(language), start=event.start,
                                        end=event.end,
                                        details=details, location=join_url),
            "changes": changes,
        }

    def _calendar_description(self, registrant: Registrant, join_url: str) -> str:
        words = _CALENDAR_WORDS.get(registrant.language, _CALENDAR_WORDS["en"])
        title = self.config.event.title_in(registrant.language)
        if self.template == CANCEL_TEMPLATE:
            return f"{title}\n\n{words['cancelled']}"
        m = self.config.meeting
        return (f"{title}\n\n{words['join']}: {join_url}\n"
                f"{words['id']}: {m.id}\n{words['password']}: {m.password}")

    def build(self, registrant: Registrant, *, test_to: str | None = None) -> Built:
        """Render and encode one registrant's message.

        Raises TemplateError (the template fails) or HeaderValueError (a value would break
        a header).
        """
        c = self.config
        test = test_to is not None
        join_url = registrant.join_url or c.meeting.join_url
        previous = self.history.get(registrant.key) or self.latest
        rendered, subject = self._render(registrant, previous, test)
        cancel = self.template == CANCEL_TEMPLATE
        recipient = test_to or registrant.email
        html = inline_body(rendered.html_body)
        if self.followup is not None:  # the event is over: no calendar (followup.py)
            return self._without_calendar(registrant, recipient, subject, rendered.text_body,
                                          html, test)
        uid = ics.registrant_uid(c.event.uid, registrant.email)
        if test:
            uid = "test-" + uid  # a test invite must not collide with the real entry
        sequence = self.sequence_for(registrant, previous)
        entry = ics.CalendarEntry(
            uid=uid, sequence=sequence, method="CANCEL" if cancel else "REQUEST",
            start=c.event.start, end=c.event.end, title=c.event.title_in(registrant.language),
            description=self._calendar_description(registrant, join_url),
            location="" if cancel else join_url,
            organizer_name=c.sender.name, organizer_address=c.sender.address,
            attendee_name=registrant.name, attendee_address=recipient, stamp=self.now)
        message_id = make_message_id(c.sender.mailbox.domain, c.event.uid, self.stage,
                                     sequence, registrant.key, unique=test)
        data = build_message(MessageParts(
            sender=c.sender.mailbox,
            recipient=Mailbox(registrant.name, recipient),
            reply_to=c.sender.reply_to,
            subject=subject,
            date=self.now.astimezone(c.event.zone),
            message_id=message_id,
            text=rendered.text_body,
            html=html,
            calendar=self._calendars.build(entry),
            method=entry.method,
        ))
        record = dataclasses.replace(self.current_record(registrant), sequence=sequence)
        return Built(registrant, recipient, message_id, subject, data, record, self.template)

    def _without_calendar(self, registrant: Registrant, recipient: str, subject: str,
                          text: Body, html: Body, test: bool) -> Built:
        """A message of text and HTML only: the follow-up's."""
        c = self.config
        message_id = make_message_id(c.sender.mailbox.domain, c.event.uid, self.template,
                                     registrant.key, unique=test)
        data = build_message(MessageParts(
            sender=c.sender.mailbox, recipient=Mailbox(registrant.name, recipient),
            reply_to=c.sender.reply_to, subject=subject, date=self.now.astimezone(c.event.zone),
            message_id=message_id, text=text, html=html, calendar=None, method=""))
        return Built(registrant, recipient, message_id, subject, data, None,
                     self.template_for(registrant))

    def _render(self, registrant: Registrant, previous: CalendarRecord | None,
                test: bool) -> tuple[Rendered, str]:
        changes = self.changes(registrant, previous) if self.template == UPDATE_TEMPLATE else []
        group = self._group(registrant, test, changes)
        try:
            rendered = self.renderer.render(self.template_for(registrant), registrant.language,
                                            self._context(registrant, group, test, changes),
                                            row=position(self.source.label, registrant.line),
                                            group=group)
        except TemplateError as err:
            raise self._without_password(err) from None
        subject = rendered.subject
        if test:
            subject = TEST_PREFIX.get(registrant.language, "[TEST] ") + subject
        return rendered, subject

    def _without_password(self, err: TemplateError) -> TemplateError:
        """A template error can quote the value it failed on; never the meeting password."""
        password = self.config.meeting.password
        if len(password) < 4 or (password not in err.message and password not in (err.hint or "")):
            return err
        return TemplateError(err.message.replace(password, "[meeting.password]"),
                             hint=(err.hint or "").replace(password, "[meeting.password]") or None)

    def validate(self, registrant: Registrant) -> None:
        """What `check` needs of a message without encoding it: the templates render and
        nothing that goes in a header has a line break. Raises like :meth:`build`."""
        previous = self.history.get(registrant.key) or self.latest
        _, subject = self._render(registrant, previous, False)
        encode_mailbox(Mailbox(registrant.name, registrant.email))
        encode_text_header(subject)

    # -- the calendar's lifecycle -----------------------------------------------------------

    def current_record(self, registrant: Registrant) -> CalendarRecord:
        """What this registrant's calendar entry says once this template's message arrives."""
        c = self.config
        return CalendarRecord(
            sequence=c.event.sequence, start=c.event.start.isoformat(),
            duration=c.event.duration, join_url=registrant.join_url or c.meeting.join_url,
            password_digest=password_digest(c.event.uid, c.meeting.password),
            template=self.template)

    def changes(self, registrant: Registrant,
                previous: CalendarRecord | None) -> list[dict[str, str]]:
        """What changed since ``previous`` was sent: time, link, password (in that order)."""
        if previous is None:
            return []
        now = self.current_record(registrant)
        found: list[dict[str, str]] = []
        language = registrant.language
        if (previous.start, previous.duration) != (now.start, now.duration):
            start = dt.datetime.fromisoformat(previous.start).astimezone(self.config.event.zone)
            end = start + dt.timedelta(minutes=previous.duration)

            def full(a: dt.datetime, b: dt.datetime) -> str:
                return str(describe_when(a, b, language, registrant_zone=None,
                                         now=self.now)["full"])

            found.append({"field": "time", "old": full(start, end),
                          "new": full(self.config.event.start, self.config.event.end)})
        if previous.join_url != now.join_url:
            found.append({"field": "link", "old": previous.join_url, "new": now.join_url})
        if previous.password_digest != now.password_digest:
            # The old password is not kept (the journal holds no password).
            found.append({"field": "password", "old": "",
                          "new": self.config.meeting.password})
        return found

    def entry_changed(self, registrant: Registrant, previous: CalendarRecord | None) -> bool:
        """The calendar entry an update would send differs from ``previous``: a time, link
        or password changed, or ``previous`` was a cancellation (the update restores it)."""
        return previous is not None and (previous.template == CANCEL_TEMPLATE
                                         or bool(self.changes(registrant, previous)))

    def sequence_for(self, registrant: Registrant, previous: CalendarRecord | None) -> int:
        """The calendar SEQUENCE: event.sequence, raised past what was sent when the entry
        changes (an update or a cancellation) and the user forgot to raise it."""
        sequence = self.config.event.sequence
        if previous is None:
            return sequence
        if self.template == CANCEL_TEMPLATE or (self.template == UPDATE_TEMPLATE
                                                and self.entry_changed(registrant, previous)):
            return max(sequence, previous.sequence + 1)
        return max(sequence, previous.sequence)

    def _lifecycle_problems(self, changed: int, checked: int) -> list[Problem]:
        where = str(self.config.path)
        if self.template == UPDATE_TEMPLATE:
            if not self.history:
                return [Problem(where, None, "no invitation has been sent for this event yet, "
                                "so there is nothing to update; send the invitation instead")]
            # A reschedule (its own stage) is checked by reschedule.py: the start or the
            # sequence changed since the cancellation.
            if checked and not changed and self.stage == self.template:
                return [Problem(where, None, "nothing changed since the last message: the "
                                "time, the link and the password are as sent; edit event.toml "
                                "first")]
        elif self.template != CANCEL_TEMPLATE and changed:
            return [Problem(where, None, f"the time, link or password changed since {changed} "
                            "registrant(s) got their calendar entry, and no update was sent; "
                            "send `--template update` so their calendars follow",
                            warning=True)]
        return []

    # -- check -----------------------------------------------------------------------------

    def start_workers(self) -> None:
        """Start the processes that will build the messages (for a large list) now, so that
        they start while :meth:`check` runs here, and are ready when it is done."""
        parallel.start_workers(self)

    def check(self, *, on_message: Callable[[Built, Any], None] | None = None,
              inspect: parallel.Inspect | None = None) -> CheckReport:
        """Read every row and check every message; send nothing.

        With ``on_message``, every message is built and given to it, with what ``inspect``
        (a module-level function, run where the message was built) said of it, or None.
        """
        report = CheckReport(scan=Scan(), config_warnings=list(self.config.warnings))
        report.event_problems.extend(self.config.placeholders)
        event = self.config.event
        if self.followup is not None:
            # Before the end a report cannot say who attended: with one, that is an error (the
            # start in event.toml or the report is wrong); without, `check` and `preview`
            # may look at the follow-up ahead of time.
            if event.end > self.now:
                report.event_problems.append(Problem(
                    str(self.config.path), None, f"the event ends {event.end:%Y-%m-%d %H:%M}: "
                    "it is not over yet, and the follow-up thanks people for coming",
                    warning=self.followup.attendance is None))
        elif event.start < self.now and self.template != CANCEL_TEMPLATE:
            report.event_problems.append(Problem(
                str(self.config.path), None,
                f"event.start {event.start:%Y-%m-%d %H:%M} is in the past"))
        changed = checked = 0

        def counted(registrants: Iterator[Registrant]) -> Iterator[Registrant]:
            nonlocal changed, checked
            for registrant in registrants:
                previous = self.history.get(registrant.key)
                if previous is not None or self.template == UPDATE_TEMPLATE:
                    checked += 1
                    if self.entry_changed(registrant, previous or self.latest):
                        changed += 1
                yield registrant

        failures = RenderFailures(self.source.label)
        rows = counted(self.kept.keep(unique_registrants(self.source, report.scan)))
        for registrant, outcome in parallel.outcomes(self, rows, encode=on_message is not None,
                                                     inspect=inspect):
            if outcome.kind == "template":
                failures.add(registrant, outcome.value)
                continue
            if outcome.kind == "header":
                report.scan.problems.append(Problem(self.source.label, registrant.line,
                                                    f"{outcome.value}; it cannot go in a header"))
                failures.header_keys.add(registrant.key)
                continue
            failures.built_languages.add(registrant.language)
            report.messages += 1
            if self.followup is not None:
                report.variants[self.template_for(registrant)] += 1
            if on_message is not None:
                on_message(outcome.value, outcome.inspected)
        # Rows that share an address and disagree (found as the rows went by): the first
        # one's message was built before that came to light.
        report.messages -= len(report.scan.left_out - failures.keys)
        report.template_errors.extend(failures.settle(report.scan))
        self.source.left_out |= report.scan.left_out
        report.scan.problems.sort(key=lambda p: (p.line is None, p.line or 0))
        if self.followup is None:
            report.event_problems.extend(self._lifecycle_problems(changed, checked))
        else:
            report.event_problems.extend(self.followup.problems(
                address.lower() for address in report.scan.addresses))
        if not report.scan.valid and not report.scan.errors:
            report.scan.problems.append(Problem(self.source.label, None,
                                                "has a header but no registrants"))
        return report

    def require_valid(self, report: CheckReport, *, skip_invalid: bool = False) -> None:
        if report.template_errors:
            first = report.template_errors[0]
            raise TemplateError("\n".join(e.message for e in report.template_errors),
                                hint=f"{first.hint}; nothing was sent" if first.hint
                                else "fix the template; nothing was sent")
        errors = report.errors
        if skip_invalid:
            errors = [p for p in errors if not _a_row(p, report)]
        if not errors:
            return
        if not all(_a_row(p, report) for p in errors):  # --skip-invalid leaves these as is
            raise ProblemsError(report.problems, hint="fix what is listed above (--skip-invalid "
                                "only leaves out bad rows, it does not help here); nothing "
                                "was sent")
        raise ProblemsError(report.problems, hint="fix these rows (or give --skip-invalid "
                            "to send to the valid ones); nothing was sent")

    def messages(self, registrants: Iterable[Registrant], *, test_to: str | None = None,
                 expected: int | None = None) -> Iterator[Built]:
        """The registrants' messages, in order. ``expected`` is how many registrants will
        come when it is far fewer than the file has (a preview, a rerun): a few are built
        here rather than by worker processes started for them."""
        for _, outcome in parallel.outcomes(self, registrants, encode=True, test_to=test_to,
                                            expected=expected):
            if outcome.kind == "ok":
                yield outcome.value
            elif outcome.kind == "template":
                raise outcome.value
            # "header": reported by check, never sent


@functools.lru_cache(maxsize=16)  # the same event and password for every message of a run
def password_digest(event_uid: str, password: str) -> str:
    """Enough to notice a changed meeting password without storing it."""
    return hashlib.sha256(f"invitemail\0{event_uid}\0{password}".encode()).hexdigest()[:16]


# Every variable a template can use; the README's table is generated from this and a test
# keeps both in step with what `Campaign.context` really provides.
TEMPLATE_VARIABLES: dict[str, str] = {
    "lang": '"da" or "en": the language of this message',
    "template": "the template's name: invitation, reminder, update, cancellation, ...; in "
                "the follow-up, thanks or missed",
    "test": "true in a `send --test-to` message",
    "event.title": "event.toml's [event] title, in the registrant's language",
    "event.description": "[event] description in the registrant's language, or none",
    "event.duration": "minutes",
    "event.timezone": 'the IANA name, e.g. "Europe/Copenhagen"',
    "event.uid": "the event's calendar identity",
    "event.sequence": "[event] sequence",
    "event.recording_url": "[event] recording_url (for the follow-up), or none",
    "event.slides_url": "[event] slides_url (for the follow-up), or none",
    "event.next_url": "[event] next_url: the next event (for the follow-up), or none",
    "meeting.platform": '"Zoom" unless event.toml says otherwise',
    "meeting.id": "the meeting ID",
    "meeting.password": "the meeting password",
    "meeting.join_url": "the registrant's personal link when the CSV has one, else the "
                        "meeting's",
    "meeting.web_join_url": "the join-in-a-browser link, or none",
    "meeting.waiting_room": "true or false",
    "meeting.recorded": "true or false",
    "sender.name": "the From display name",
    "sender.address": "the From address",
    "sender.reply_to": "the Reply-To address, or none",
    "support.phone": "[support] phone",
    "support.hours": "[support] hours, in the registrant's language",
    "support.email": "[support] email",
    "privacy.policy_url": "[privacy] policy_url, in the registrant's language",
    "registrant.email": "the address the message goes to",
    "registrant.name": "the full name (the name column, or first and last name), may be empty",
    "registrant.first_name": "may be empty",
    "registrant.last_name": "may be empty",
    "registrant.language": '"da" or "en"',
    "registrant.join_url": "the personal join link, may be empty",
    "registrant.timezone": "the registrant's IANA time zone, may be empty",
    "registrant.<column>": 'any other CSV column, by its header in lower case with "_" for '
                           'spaces (e.g. "Organisation" -> registrant.organisation)',
    "when.date": '"torsdag den 10. december 2026" / "Thursday, 10 December 2026"',
    "when.time": '"14.00" / "14:00"',
    "when.end_time": '"15.00" / "15:00"',
    "when.zone": 'the event\'s time zone by name: "Danmark-tid" / "Denmark Time"',
    "when.full": 'date, time, end and zone: "torsdag den 10. december 2026 kl. 14.00-15.00 '
                 '(Danmark-tid)"',
    "when.local": 'the time in the registrant\'s own time zone when it differs: "08.00-09.00 i '
                  'New York", else none',
    "when.relative": 'how soon it starts, from the time of sending: "i morgen kl. 14.00", '
                     '"in 1 hour (at 14:00)"; "er begyndt" / "has started" once it has '
                     'started (see when.started)',
    "when.started": 'true once the event has started at the time of sending (then write '
                    '"er begyndt" / "has started", not "begynder" / "starts" before '
                    'when.relative), else false',
    "links.google": "add-to-calendar link for Google Calendar",
    "links.outlook": "add-to-calendar link for Outlook.com",
    "links.office365": "add-to-calendar link for Microsoft 365",
    "links.yahoo": "add-to-calendar link for Yahoo Calendar",
    "changes": 'in `update`: a list of {field: "time" | "link" | "password", old, new} (old is '
               'empty for the password, which is never stored); empty otherwise',
}


def variables_table() -> str:
    """The README's table of template variables (Markdown)."""
    rows = ["| variable | what it holds |", "| --- | --- |"]
    rows += [f"| `{name}` | {text} |" for name, text in TEMPLATE_VARIABLES.items()]
    return "\n".join(rows) + "\n"
