"""The wiring: one event folder, one template, one registrant list -> messages.

:class:`Campaign` opens what a run needs (event.toml, the templates, the registrants, the
follow-up's attendance) and hands each stage its part: the template context
(render/context.py), the calendar's wording and lifecycle (mime/wording.py), the check
(check.py), and the building on every core (pool.py, which is given a picklable
:class:`CampaignRecipe` and never imports this module). Nothing here prints or knows about
click; the CLI turns what these functions return (and the errors they raise) into output and
exit codes. Time is passed in (``now``) so tests control it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invitemail import check as checking
from invitemail import pool
from invitemail.check import CheckReport as CheckReport
from invitemail.clock import utcnow as _utcnow
from invitemail.errors import TemplateError, position
from invitemail.inputs.addresses import Mailbox, is_loopback_host
from invitemail.inputs.config import EventConfig, load_config
from invitemail.inputs.kept_rows import KeptRows
from invitemail.inputs.registrants import (
    Registrant,
    RegistrantSource,
    default_registrants,
    open_registrants,
)
from invitemail.journal.store import CalendarRecord, Journal, JournalError
from invitemail.mime import ics, wording
from invitemail.mime.inline import inline_body
from invitemail.mime.message import (
    MessageParts,
    build_message,
    encode_mailbox,
    encode_text_header,
    make_message_id,
)
from invitemail.mime.wording import CANCEL_TEMPLATE as CANCEL_TEMPLATE
from invitemail.mime.wording import UPDATE_TEMPLATE as UPDATE_TEMPLATE
from invitemail.mime.wording import password_digest as password_digest
from invitemail.outcome import Built as Built
from invitemail.outcome import (
    Checked,
    HeaderRefused,
    Inspect,
    Made,
    Outcome,
    TemplateFailed,
    outcome_of,
    warm_up,
)
from invitemail.render import context as contexts
from invitemail.render.body import Body
from invitemail.render.context import TEMPLATE_VARIABLES as TEMPLATE_VARIABLES
from invitemail.render.context import variables_table as variables_table
from invitemail.render.renderer import Rendered, Renderer
from invitemail.send.followup import FollowUp, open_followup

TEST_PREFIX = {"da": "[TEST] ", "en": "[TEST] "}



@dataclass(frozen=True, slots=True)
class CampaignRecipe:
    """How a campaign was opened: picklable, and called in a worker process to open the
    same one there (the same files, the same ``now``, the same stage)."""

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
    # What the fork server imports for the workers (pool.start_server, pool._pool).
    preload = "invitemail.preload"

    def __call__(self) -> Campaign:
        return Campaign.open(self.event, template=self.template, registrants=self.registrants,
                             encoding=self.encoding, delimiter=self.delimiter, now=self.now,
                             stage=self.stage, attendance=self.attendance, assume=self.assume,
                             sheet=self.sheet)


def campaign_recipe(event: Path, *, template: str, now: dt.datetime,
                    registrants: Path | None = None, encoding: str | None = None,
                    delimiter: str | None = None, sheet: str | None = None,
                    stage: str | None = None, attendance: Path | None = None,
                    assume: str | None = None) -> CampaignRecipe:
    """The recipe of :meth:`Campaign.open` with these arguments, at the clock ``now``."""
    return CampaignRecipe(event=event, template=template, registrants=registrants,
                          encoding=encoding, delimiter=delimiter, now=now, stage=stage,
                          attendance=attendance, assume=assume, sheet=sheet)


class Campaign:
    """One event, one template, one registrant list."""

    def __init__(self, config: EventConfig, source: RegistrantSource, renderer: Renderer, *,
                 template: str = "invitation", now: dt.datetime | None = None,
                 followup: FollowUp | None = None, stage: str | None = None,
                 recipe: CampaignRecipe | None = None) -> None:
        """``recipe``: how to open the same campaign in a worker process (None: build in
        this process only). The journal is not read here: see :attr:`history`."""
        self.config = config
        self.followup = followup  # for the follow-up: who gets thanks and who missed
        self.source = source
        self.kept = KeptRows(source)  # the check's registrants, for the sending (short lists)
        self.renderer = renderer
        self.template = template
        # The journal's name for what this campaign sends: the template, or a stage of the
        # schedule ("reminder@1 day@..."; schedule.py) or a reschedule, each journaled apart.
        self.stage = stage or template
        self.now = now or _utcnow()
        self.recipe = recipe
        self._history: dict[str, CalendarRecord] | None = None
        self._latest: CalendarRecord | None = None
        self._shared_contexts: dict[str, dict[str, Any]] = {}
        self._calendars = ics.CalendarBuilder()
        self._records: wording.KeptRecords = {}

    @property
    def history(self) -> dict[str, CalendarRecord]:
        """Each registrant's calendar as sent, from the journal: read by :meth:`open`, or
        when first asked for (a campaign made by hand)."""
        if self._history is None:
            self.load_history()
        assert self._history is not None
        return self._history

    @property
    def latest(self) -> CalendarRecord | None:
        """The newest calendar any registrant got: the reference for registrants that have
        none."""
        if self._history is None:
            self.load_history()
        return self._latest

    def load_history(self) -> None:
        """Read each registrant's calendar as sent from the journal (again). A journal that
        cannot be read, or is another event's, gives none here: `send` refuses it
        (safeguard.py)."""
        history: dict[str, CalendarRecord] = {}
        try:
            journal = Journal.open(self.config.folder, create=False,
                                   event_uid=self.config.event.uid)
            if journal is not None:
                with journal:
                    history = journal.calendars()
        except JournalError:
            history = {}
        self._history = history
        self._latest = max(history.values(), key=lambda r: (r.sequence, r.start),
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
        now = now or _utcnow()
        recipe = campaign_recipe(event, template=template, now=now, registrants=registrants,
                                 encoding=encoding, delimiter=delimiter, sheet=sheet,
                                 stage=stage, attendance=attendance, assume=assume)
        campaign = cls(config, source, renderer, template=template, now=now, followup=followup,
                       stage=stage, recipe=recipe)
        campaign.load_history()  # now, as when the campaign's workers open it
        return campaign

    def use_stage(self, stage: str) -> None:
        """Journal (and name the Message-IDs of) what this campaign sends as ``stage``."""
        self.stage = stage
        if self.recipe is not None:
            self.recipe = dataclasses.replace(self.recipe, stage=stage)

    # -- the content (render/context.py, mime/wording.py) ------------------------------------

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
        return contexts.context_for(self, registrant, group, test, changes,
                                    self._shared_contexts)

    def _group(self, registrant: Registrant, test: bool,
               changes: list[dict[str, str]] | None) -> str:
        return contexts.group_of(self, registrant, test, changes)

    def _calendar_description(self, registrant: Registrant, join_url: str) -> str:
        return wording.calendar_description(self, registrant, join_url)

    def build(self, registrant: Registrant, *, test_to: str | None = None,
              wire: bool = False) -> Built:
        """Render and encode one registrant's message; ``wire``: the Built holds its wire
        form, made as it is built (what Built.for_sending gives, for less).

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
                                          html, test, wire)
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
            calendar=(calendar := self._calendars.build(entry)),
            method=entry.method,
            calendar_base64=self._calendars.encoded(calendar),
        ), wire=wire)
        record = wording.sent_record(self, registrant, sequence, self._records)
        return Built(registrant, recipient, message_id, subject, data, record, self.template,
                     wire, data.isascii() if wire else None)

    def _without_calendar(self, registrant: Registrant, recipient: str, subject: str,
                          text: Body, html: Body, test: bool, wire: bool) -> Built:
        """A message of text and HTML only: the follow-up's."""
        c = self.config
        message_id = make_message_id(c.sender.mailbox.domain, c.event.uid, self.template,
                                     registrant.key, unique=test)
        data = build_message(MessageParts(
            sender=c.sender.mailbox, recipient=Mailbox(registrant.name, recipient),
            reply_to=c.sender.reply_to, subject=subject, date=self.now.astimezone(c.event.zone),
            message_id=message_id, text=text, html=html, calendar=None, method=""), wire=wire)
        return Built(registrant, recipient, message_id, subject, data, None,
                     self.template_for(registrant), wire, data.isascii() if wire else None)

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

    # -- the calendar's lifecycle (mime/wording.py) -----------------------------------------

    def current_record(self, registrant: Registrant) -> CalendarRecord:
        """What this registrant's calendar entry says once this template's message arrives."""
        return wording.current_record(self, registrant)

    def changes(self, registrant: Registrant,
                previous: CalendarRecord | None) -> list[dict[str, str]]:
        """What changed since ``previous`` was sent: time, link, password (in that order)."""
        return wording.changes(self, registrant, previous)

    def entry_changed(self, registrant: Registrant, previous: CalendarRecord | None) -> bool:
        """The calendar entry an update would send differs from ``previous``."""
        return wording.entry_changed(self, registrant, previous)

    def sequence_for(self, registrant: Registrant, previous: CalendarRecord | None) -> int:
        """The calendar SEQUENCE this registrant's message carries."""
        return wording.sequence_for(self, registrant, previous)

    # -- check (check.py) and the building on every core (pool.py) ---------------------------

    def start_workers(self) -> None:
        """Start the processes that will build the messages (for a large list) now, so that
        they start while :meth:`check` runs here, and are ready when it is done."""
        if self.recipe is not None and pool.pays(self.source.rows_estimate) \
                and not pool.started(self):  # once
            pool.start(self, self.recipe, warm=warm_up)

    def outcomes(self, registrants: Iterable[Registrant], *, encode: bool,
                 test_to: str | None = None, inspect: Inspect | None = None,
                 expected: int | None = None,
                 wire: bool = False) -> Iterator[tuple[Registrant, Outcome]]:
        """Each registrant with what building (``encode``) or checking its message gave, in
        order; on worker processes when it pays. ``inspect`` (a module-level function) is
        run on each message where it was built. ``expected``: how many registrants will
        come, when not the whole file. ``wire``: messages built for sending, each holding
        its wire form (Built.for_sending)."""
        rows = self.source.rows_estimate if expected is None else expected
        step = functools.partial(outcome_of, encode=encode, test_to=test_to, inspect=inspect,
                                 wire=wire)
        # A check is light: workers pay for it only on a long list, unless they were
        # started anyway (`send`), and then this process checks too until they are ready.
        light = not encode
        parallel = pool.pays(rows, light=light) or (
            light and pool.started(self) and pool.pays(rows))
        return pool.ordered_map(step, registrants, here=self, recipe=self.recipe,
                                parallel=parallel, help_here=light)

    def check(self, *, on_message: Callable[[Built, Any], None] | None = None,
              inspect: Inspect | None = None) -> CheckReport:
        """Read every row and check every message; send nothing (check.py)."""
        return checking.check(self, on_message=on_message, inspect=inspect)

    def require_valid(self, report: CheckReport, *, skip_invalid: bool = False) -> None:
        """Raise unless ``report`` lets the sending start (check.py)."""
        checking.require_valid(report, skip_invalid=skip_invalid)

    def messages(self, registrants: Iterable[Registrant], *, test_to: str | None = None,
                 expected: int | None = None, wire: bool = False) -> Iterator[Built]:
        """The registrants' messages, in order. ``expected`` is how many registrants will
        come when it is far fewer than the file has (a preview, a rerun): a few are built
        here rather than by worker processes started for them. ``wire``: built for sending
        (each holds its wire form, made where it was built)."""
        for _, outcome in self.outcomes(registrants, encode=True, test_to=test_to,
                                        expected=expected, wire=wire):
            match outcome:
                case Made(built):
                    yield built
                case TemplateFailed(error):
                    raise error
                case HeaderRefused() | Checked():  # reported by check, never sent
                    pass
