"""`--template followup`: after the event, `thanks` to those who attended and `missed` to
the rest, chosen per registrant from the platform's attendance report (attendance.py).

The follow-up is journaled under one name, ``followup`` (a registrant gets one follow-up,
whichever it is); the journal notes which of the two each registrant got. It carries no
calendar invitation: the event is over, and a REQUEST would put it back in calendars.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from invitemail.errors import ExitCode, InvitemailError, Problem
from invitemail.inputs.attendance import Attendance, read_attendance

FOLLOWUP_TEMPLATE = "followup"
THANKS, MISSED = "thanks", "missed"
VARIANTS = (THANKS, MISSED)
# How many report rows that are not registrants are named one by one; the rest are counted.
SHOWN_OUTSIDERS = 20


class FollowUpUsage(InvitemailError):
    """The follow-up was asked for without what it needs (exit 2: wrong usage)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True, slots=True)
class FollowUp:
    """Which of ``thanks`` and ``missed`` each registrant gets."""

    attendance: Attendance | None
    # Without a report (`check` and `preview` before it is downloaded): every registrant is
    # shown this one.
    assume: str | None = None

    def variant(self, key: str) -> str:
        """The template for the registrant whose Registrant.key is ``key``: registrants
        absent from the report count as not attended."""
        if self.attendance is None:
            return self.assume or THANKS
        return THANKS if self.attendance.attended(key) else MISSED

    def problems(self, registrant_keys: Iterable[str]) -> list[Problem]:
        """Warnings naming the report's rows that are nobody on the registrant list (they
        are not mailed)."""
        if self.attendance is None:
            return []
        found: list[Problem] = []
        outsiders = self.attendance.not_registered(registrant_keys)
        for person in outsiders[:SHOWN_OUTSIDERS]:
            state = "attended" if person.attended else "did not attend"
            where, _, line = person.where.rpartition(":")
            found.append(Problem(where or person.where, int(line) if line.isdigit() else None,
                                 f"{person.address} ({person.name or 'no name'}, {state}) is "
                                 "not on the registrant list; not mailed", warning=True))
        if len(outsiders) > SHOWN_OUTSIDERS:
            found.append(Problem(self.attendance.source, None,
                                 f"{len(outsiders) - SHOWN_OUTSIDERS} more people in the report "
                                 "are not on the registrant list; not mailed", warning=True))
        for where, name in self.attendance.no_address[:SHOWN_OUTSIDERS]:
            path, _, line = where.rpartition(":")
            found.append(Problem(path or where, int(line) if line.isdigit() else None,
                                 f"{name} has no email address in the report; not mailed",
                                 warning=True))
        return found


def open_followup(template: str, attendance: Path | None, *, assume: str | None = None,
                  required: bool = False) -> FollowUp | None:
    """The follow-up's choice for ``template`` (None for any other template). ``required``:
    the command sends, so the report must be given."""
    if template != FOLLOWUP_TEMPLATE:
        if attendance is not None:
            raise FollowUpUsage(f"--attendance is for the follow-up, not for {template!r}",
                                hint="give --template followup with --attendance FILE")
        return None
    if attendance is None:
        if required:
            raise FollowUpUsage(
                "the follow-up needs the attendance report, to know who attended",
                hint="download the attendee report from Zoom (or the attendance list from "
                "Teams) and give it: --attendance FILE")
        return FollowUp(None, assume or THANKS)
    return FollowUp(read_attendance(attendance))
