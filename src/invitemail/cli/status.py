"""`status`: what the journal says, and how every row of the registrant list was taken."""

from __future__ import annotations

from pathlib import Path

import click

from invitemail.cli.shared import delimiter_of, handle_errors, say


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
    from invitemail.send.status import journal_status

    if report_path is None and excel:
        raise click.UsageError("--excel is for the report: give --report FILE.csv too")
    said = journal_status(event, template, report_path=report_path, excel=excel,
                          registrants=registrants, sheet=sheet, encoding=encoding,
                          delimiter=delimiter_of(delimiter))
    for line, to_stderr in said.lines:
        say(line, err=to_stderr)
    if said.problem is not None:
        raise said.problem
