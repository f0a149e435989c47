"""What `status` says: the journal's counts for a template, how every row of the registrant
list was taken, the failed, uncertain and removed ones, limits and the timeline. Lines for
the front end to print (each with whether it goes to stderr); the library prints nothing.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from invitemail.errors import InvitemailError
from invitemail.inputs.cells import registrant_key
from invitemail.inputs.config import REGISTRANTS_FILE, find_event_file, load_config
from invitemail.inputs.registrants import Scan, default_registrants, scan_file
from invitemail.journal.safeguard import diagnose
from invitemail.journal.store import Journal, JournalError, State
from invitemail.outputs.report import check_report_path, write_report
from invitemail.send.delivery import removed_from_list
from invitemail.send.due_report import status_lines
from invitemail.send.followup import FOLLOWUP_TEMPLATE, VARIANTS
from invitemail.send.limits import stop_lines


@dataclass
class Lines:
    """What `status` says, in order, and the journal's problem to raise once it is said."""

    lines: list[tuple[str, bool]] = field(default_factory=list)  # (text, to stderr)
    problem: InvitemailError | None = None

    def say(self, text: str, *, err: bool = False) -> None:
        self.lines.append((text, err))


def journal_status(event: Path, template: str, *, report_path: Path | None = None,
                   excel: bool = False, registrants: Path | None = None,
                   sheet: str | None = None, encoding: str | None = None,
                   delimiter: str | None = None) -> Lines:
    """`status` of ``event`` for ``template``; with ``report_path``, one row per registrant
    written there too. Raises when the journal cannot be read (the diagnosis says why);
    a journal that is not all that was sent comes back as ``problem``, after the lines."""
    out = Lines()
    if report_path is not None:
        check_report_path(report_path, excel=excel)
    folder = find_event_file(event).parent
    uid = _event_uid(folder)
    problem = diagnose(folder, uid) if uid is not None else None
    try:
        journal = Journal.open(folder, create=False, event_uid=uid)
    except JournalError:  # another event's, damaged: the diagnosis says more, when there is one
        if problem is not None:
            raise problem from None
        raise
    if journal is None:
        if problem is not None:
            raise problem
        out.say(f"{folder}: nothing has been sent for this event yet (no journal).")
        path, scan = _scan_list(out, folder, registrants, encoding, delimiter, sheet)
        if scan is not None:
            out.say(f"{path}: {rows_line(scan)}")
        return out
    with journal:
        counts = journal.counts(template)
        total = sum(counts.values())
        path, scan = _scan_list(out, folder, registrants, encoding, delimiter, sheet)
        removed = {} if scan is None else removed_from_list(
            journal, template, (*scan.addresses, *scan.left_out))
        for state in removed.values():  # shown as removed, not as still to send
            counts[state] -= 1
        if not total:
            others = journal.templates()
            out.say(f"{folder}: nothing in the journal for template {template!r}"
                + (f" (it has: {', '.join(others)})" if others else "") + ".")
        else:
            out.say(f"{folder}: template {template!r}, {total} registrants: "
                + ", ".join([f"{counts[s]} {s.value}" for s in State if counts[s]]
                             + ([f"{len(removed)} removed from the list"] if removed else [])))
        if scan is not None:
            out.say(f"{path}: {rows_line(scan, journal_keys=journal.states(template))}")
        _say_variants(out, journal, template)
        if total:
            for row in journal.rows(template, [State.FAILED]):
                if row.key not in removed:
                    out.say(f"  failed: {row.address} (line {row.line}): {row.last_reply}")
            for row in journal.rows(template, [State.UNCERTAIN]):
                if row.key not in removed:
                    out.say(f"  uncertain: {row.address} (line {row.line}): {row.last_reply}")
            for row in journal.rows(template):
                if row.key in removed:
                    out.say(f"  removed from the list: {row.address} (was line {row.line}, "
                        f"{row.state.value}); not sent to")
            for line in stop_lines(journal, folder, template,
                                   waiting=counts[State.PENDING] > 0):
                out.say(line)
            if report_path is not None:
                written = write_report(report_path, journal.rows(template), excel=excel)
                out.say(f"wrote {written} rows to {report_path}")
        for line in status_lines(folder, journal, None if scan is None else scan.addresses):
            out.say(line)
    out.problem = problem  # what the journal says is not all that was sent
    return out


def _say_variants(out: Lines, journal: Journal, template: str) -> None:
    """For the follow-up: which template each registrant got, counted and listed."""
    if template != FOLLOWUP_TEMPLATE:
        return
    variants = journal.variants(template)
    if not variants:
        return
    counts: dict[str, int] = {}
    for variant in variants.values():
        counts[variant] = counts.get(variant, 0) + 1
    out.say(f"  follow-ups: {variants_text(counts)}")
    for row in journal.rows(template):
        if row.key in variants:
            out.say(f"  {variants[row.key]}: {row.address} ({row.state.value})")


def _event_uid(folder: Path) -> str | None:
    """The event's uid, to check the journal against; None when event.toml cannot be read
    (`status` still shows the journal)."""
    try:
        return load_config(folder).event.uid
    except InvitemailError:
        return None


def _scan_list(out: Lines, folder: Path, registrants: Path | None, encoding: str | None,
               delimiter: str | None, sheet: str | None) -> tuple[Path, Scan | None]:
    """The registrant list read for `status`; None, after a warning, when it cannot be read
    (`status` then tells what the journal says only)."""
    path = registrants or folder / REGISTRANTS_FILE
    try:
        path = registrants or default_registrants(folder)
        return path, scan_file(path, encoding=encoding, sheet=sheet,
                               delimiter=delimiter)
    except InvitemailError as err:
        out.say(f"warning: {str(err).splitlines()[0]}; the counts are the journal's only", err=True)
        return path, None


def variants_text(variants: dict[str, int]) -> str:
    """``"3 thanks, 2 missed"``: a follow-up's messages by the template each got."""
    return ", ".join(f"{variants[v]} {v}" for v in VARIANTS if variants.get(v))


def rows_line(scan: Scan, *, journal_keys: Container[str] | None = None) -> str:
    """How every row of the list was taken: registrants, duplicates, problems."""
    def count(number: int, what: str, plural: str = "s") -> str:
        return f"{number} {what}{plural if number != 1 else ''}"

    registrants = count(scan.valid, "registrant")
    if journal_keys is not None:
        absent = sum(1 for a in scan.addresses if registrant_key(a) not in journal_keys)
        registrants += f" ({absent} not in the journal yet)" if absent else ""
    parts = [registrants]
    if scan.duplicates:
        parts.append(count(scan.duplicates, "duplicate"))
    if scan.invalid:
        parts.append(f"{scan.invalid} with {'problems' if scan.invalid != 1 else 'a problem'}"
                     " (never sent)")
    if scan.ignored:
        parts.append(count(scan.ignored, "repeated header row"))
    return f"{count(scan.rows, 'row')} read: " + ", ".join(parts)
