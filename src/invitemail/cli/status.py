"""`status`: what the journal says, and how every row of the registrant list was taken."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from invitemail.cli.shared import delimiter_of, handle_errors, rows_line, say, variants_text
from invitemail.errors import InvitemailError

if TYPE_CHECKING:
    from invitemail.inputs.registrants import Scan


def _scan_list(folder: Path, registrants: Path | None, encoding: str | None,
               delimiter: str | None, sheet: str | None) -> tuple[Path, Scan | None]:
    """The registrant list read for `status`; None, after a warning, when it cannot be read
    (`status` then tells what the journal says only)."""
    from invitemail.inputs.config import REGISTRANTS_FILE
    from invitemail.inputs.registrants import default_registrants, scan_file

    path = registrants or folder / REGISTRANTS_FILE
    try:
        path = registrants or default_registrants(folder)
        return path, scan_file(path, encoding=encoding, sheet=sheet,
                               delimiter=delimiter_of(delimiter))
    except InvitemailError as err:
        say(f"warning: {str(err).splitlines()[0]}; the counts are the journal's only", err=True)
        return path, None


@click.command()
@click.argument("event", default=".", type=click.Path(path_type=Path))
@click.option("--template", "-t", default="invitation", show_default=True,
              help="Which template's journal to show.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write one row per registrant (state, attempts, last reply) to FILE.csv "
              "or FILE.xlsx.")
@click.option("--excel", is_flag=True, help="Write the .csv report for Excel set to Danish "
              "(or another language with a decimal comma): ; between the cells.")
@click.option("--registrants", type=click.Path(path_type=Path, dir_okay=False),
              help="Count the rows of FILE (.csv or .xlsx) instead of the event's list.")
@click.option("--sheet", metavar="NAME", help="The workbook's sheet with the registrants "
              "(default: the first).")
@click.option("--encoding", help="The registrant file's encoding (default: detected).")
@click.option("--delimiter", type=click.Choice([",", ";", "tab"]),
              help="The registrant file's delimiter (default: detected).")
@handle_errors
def status(event: Path, template: str, report_path: Path | None, excel: bool,
           registrants: Path | None, sheet: str | None, encoding: str | None,
           delimiter: str | None) -> None:
    """What the journal says: sent, failed, pending, uncertain; and how every row of the
    registrant list was taken."""
    from invitemail.inputs.config import find_event_file
    from invitemail.journal.safeguard import diagnose
    from invitemail.journal.store import Journal, JournalError, State
    from invitemail.outputs.report import check_report_path, write_report
    from invitemail.send.delivery import removed_from_list
    from invitemail.send.limits import stop_lines

    if report_path is not None:
        check_report_path(report_path, excel=excel)
    elif excel:
        raise click.UsageError("--excel is for the report: give --report FILE.csv too")
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
        say(f"{folder}: nothing has been sent for this event yet (no journal).")
        path, scan = _scan_list(folder, registrants, encoding, delimiter, sheet)
        if scan is not None:
            say(f"{path}: {rows_line(scan)}")
        return
    with journal:
        counts = journal.counts(template)
        total = sum(counts.values())
        path, scan = _scan_list(folder, registrants, encoding, delimiter, sheet)
        removed = {} if scan is None else removed_from_list(
            journal, template, (*scan.addresses, *scan.left_out))
        for state in removed.values():  # shown as removed, not as still to send
            counts[state] -= 1
        if not total:
            others = journal.templates()
            say(f"{folder}: nothing in the journal for template {template!r}"
                + (f" (it has: {', '.join(others)})" if others else "") + ".")
        else:
            say(f"{folder}: template {template!r}, {total} registrants: "
                + ", ".join([f"{counts[s]} {s.value}" for s in State if counts[s]]
                             + ([f"{len(removed)} removed from the list"] if removed else [])))
        if scan is not None:
            say(f"{path}: {rows_line(scan, journal_keys=journal.states(template))}")
        _say_variants(journal, template)
        if total:
            for row in journal.rows(template, [State.FAILED]):
                if row.key not in removed:
                    say(f"  failed: {row.address} (line {row.line}): {row.last_reply}")
            for row in journal.rows(template, [State.UNCERTAIN]):
                if row.key not in removed:
                    say(f"  uncertain: {row.address} (line {row.line}): {row.last_reply}")
            for row in journal.rows(template):
                if row.key in removed:
                    say(f"  removed from the list: {row.address} (was line {row.line}, "
                        f"{row.state.value}); not sent to")
            for line in stop_lines(journal, folder, template,
                                   waiting=counts[State.PENDING] > 0):
                say(line)
            if report_path is not None:
                written = write_report(report_path, journal.rows(template), excel=excel)
                say(f"wrote {written} rows to {report_path}")
        from invitemail.send.due_report import status_lines

        for line in status_lines(folder, journal, None if scan is None else scan.addresses):
            say(line)
    if problem is not None:  # what the journal says is not all that was sent
        raise problem


def _say_variants(journal: Any, template: str) -> None:
    """For the follow-up: which template each registrant got, counted and listed."""
    from invitemail.send.followup import FOLLOWUP_TEMPLATE

    if template != FOLLOWUP_TEMPLATE:
        return
    variants = journal.variants(template)
    if not variants:
        return
    counts: dict[str, int] = {}
    for variant in variants.values():
        counts[variant] = counts.get(variant, 0) + 1
    say(f"  follow-ups: {variants_text(counts)}")
    for row in journal.rows(template):
        if row.key in variants:
            say(f"  {variants[row.key]}: {row.address} ({row.state.value})")


def _event_uid(folder: Path) -> str | None:
    """The event's uid, to check the journal against; None when event.toml cannot be read
    (`status` still shows the journal)."""
    from invitemail.inputs.config import load_config

    try:
        return load_config(folder).event.uid
    except InvitemailError:
        return None
