"""`check`: read every row and check every message, send nothing, report every problem.

The check reads the campaign as a :class:`CheckedCampaign` and never imports it; the
messages are built or checked where it pays (the campaign's ``outcomes``: worker processes
for a long list), and each outcome is matched by its type (outcome.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from invitemail.errors import Problem, ProblemsError, TemplateError
from invitemail.inputs.kept_rows import KeptRows
from invitemail.inputs.registrants import Registrant, RegistrantSource, Scan, unique_registrants
from invitemail.journal.store import CalendarRecord
from invitemail.mime.wording import CANCEL_TEMPLATE, UPDATE_TEMPLATE, CampaignView, entry_changed
from invitemail.outcome import (
    Built,
    Checked,
    HeaderRefused,
    Inspect,
    Made,
    Outcome,
    TemplateFailed,
)
from invitemail.render.failures import RenderFailures
from invitemail.send.followup import FollowUp

__all__ = ["CheckReport", "CheckedCampaign", "check", "lifecycle_problems", "require_valid"]


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


class CheckedCampaign(CampaignView, Protocol):
    """What the check reads of a campaign."""

    @property
    def stage(self) -> str: ...

    @property
    def followup(self) -> FollowUp | None: ...

    @property
    def history(self) -> Mapping[str, CalendarRecord]: ...

    @property
    def latest(self) -> CalendarRecord | None: ...

    @property
    def source(self) -> RegistrantSource: ...

    @property
    def kept(self) -> KeptRows: ...

    def template_for(self, registrant: Registrant) -> str: ...

    def outcomes(self, registrants: Iterable[Registrant], *, encode: bool,
                 inspect: Inspect | None = None) -> Iterator[tuple[Registrant, Outcome]]: ...


def check(campaign: CheckedCampaign, *, on_message: Callable[[Built, Any], None] | None = None,
          inspect: Inspect | None = None) -> CheckReport:
    """Read every row and check every message; send nothing.

    With ``on_message``, every message is built and given to it, with what ``inspect``
    (a module-level function, run where the message was built) said of it, or None.
    """
    config, source = campaign.config, campaign.source
    report = CheckReport(scan=Scan(), config_warnings=list(config.warnings))
    report.event_problems.extend(config.placeholders)
    report.event_problems.extend(_timing_problems(campaign))
    changed = checked = 0

    def counted(registrants: Iterator[Registrant]) -> Iterator[Registrant]:
        nonlocal changed, checked
        for registrant in registrants:
            previous = campaign.history.get(registrant.key)
            if previous is not None or campaign.template == UPDATE_TEMPLATE:
                checked += 1
                if entry_changed(campaign, registrant, previous or campaign.latest):
                    changed += 1
            yield registrant

    failures = RenderFailures(source.label)
    rows = counted(campaign.kept.keep(unique_registrants(source, report.scan)))
    for registrant, outcome in campaign.outcomes(rows, encode=on_message is not None,
                                                 inspect=inspect):
        match outcome:
            case TemplateFailed(error):
                failures.add(registrant, error)
            case HeaderRefused(reason):
                report.scan.problems.append(Problem(source.label, registrant.line,
                                                    f"{reason}; it cannot go in a header"))
                failures.header_keys.add(registrant.key)
            case Made() | Checked():
                failures.built_languages.add(registrant.language)
                report.messages += 1
                if campaign.followup is not None:
                    report.variants[campaign.template_for(registrant)] += 1
                if isinstance(outcome, Made) and on_message is not None:
                    on_message(outcome.built, outcome.inspected)
    # Rows that share an address and disagree (found as the rows went by): the first
    # one's message was built before that came to light.
    report.messages -= len(report.scan.left_out - failures.keys)
    report.template_errors.extend(failures.settle(report.scan))
    source.left_out |= report.scan.left_out
    report.scan.problems.sort(key=lambda p: (p.line is None, p.line or 0))
    if campaign.followup is None:
        report.event_problems.extend(lifecycle_problems(campaign, changed, checked))
    else:
        report.event_problems.extend(campaign.followup.problems(
            address.lower() for address in report.scan.addresses))
    if not report.scan.valid and not report.scan.errors:
        report.scan.problems.append(Problem(source.label, None,
                                            "has a header but no registrants"))
    return report


def _timing_problems(campaign: CheckedCampaign) -> list[Problem]:
    """An event in the past (or, for the follow-up, not over yet)."""
    event, where = campaign.config.event, str(campaign.config.path)
    if campaign.followup is not None:
        # Before the end a report cannot say who attended: with one, that is an error (the
        # start in event.toml or the report is wrong); without, `check` and `preview`
        # may look at the follow-up ahead of time.
        if event.end > campaign.now:
            return [Problem(where, None, f"the event ends {event.end:%Y-%m-%d %H:%M}: it is "
                            "not over yet, and the follow-up thanks people for coming",
                            warning=campaign.followup.attendance is None)]
    elif event.start < campaign.now and campaign.template != CANCEL_TEMPLATE:
        return [Problem(where, None, f"event.start {event.start:%Y-%m-%d %H:%M} is in the past")]
    return []


def lifecycle_problems(campaign: CheckedCampaign, changed: int, checked: int) -> list[Problem]:
    """An update with nothing to update, or a change no update was sent for: ``changed`` of
    the ``checked`` registrants with a calendar entry would get a different one now."""
    where = str(campaign.config.path)
    if campaign.template == UPDATE_TEMPLATE:
        if not campaign.history:
            return [Problem(where, None, "no invitation has been sent for this event yet, "
                            "so there is nothing to update; send the invitation instead")]
        # A reschedule (its own stage) is checked by reschedule.py: the start or the
        # sequence changed since the cancellation.
        if checked and not changed and campaign.stage == campaign.template:
            return [Problem(where, None, "nothing changed since the last message: the "
                            "time, the link and the password are as sent; edit event.toml "
                            "first")]
    elif campaign.template != CANCEL_TEMPLATE and changed:
        return [Problem(where, None, f"the time, link or password changed since {changed} "
                        "registrant(s) got their calendar entry, and no update was sent; "
                        "send `--template update` so their calendars follow",
                        warning=True)]
    return []


def _a_row(problem: Problem, report: CheckReport) -> bool:
    """A problem of one registrant row: what --skip-invalid leaves out (a problem of
    event.toml has a line too, but no row to leave out)."""
    return problem.line is not None and problem in report.scan.problems


def require_valid(report: CheckReport, *, skip_invalid: bool = False) -> None:
    """Raise unless what `check` found lets the sending start (``skip_invalid``: with the
    bad rows left out)."""
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
