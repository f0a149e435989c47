"""What the commands share: output, the error decorator, the event options, and the lines
that several commands print. The CLI is the only click user and the only one that prints.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from invitemail.errors import ExitCode, InvitemailError

if TYPE_CHECKING:
    from rich.console import Console

    from invitemail.campaign import Campaign, CheckReport

F = TypeVar("F", bound=Callable[..., Any])


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # No colour and no markup tricks when the output is not a terminal.
    return Console(file=stream, highlight=False, soft_wrap=True,
                   no_color=not stream.isatty() or "NO_COLOR" in os.environ)


def terminal_console() -> Console | None:
    """A console for standard output when it may be a terminal (a progress bar), else None
    (plain progress lines), without importing rich for a pipe or a file: rich decides a
    stream is not a terminal when it is not a TTY and neither TTY_COMPATIBLE nor
    FORCE_COLOR says otherwise."""
    if not sys.stdout.isatty() and not {"TTY_COMPATIBLE", "FORCE_COLOR"} & os.environ.keys():
        return None
    return console()


def say(text: str = "", *, err: bool = False) -> None:
    click.echo(text, err=err)


def say_error(err: InvitemailError) -> None:
    """The library's error as the CLI shows it: the sentence, then what to do."""
    say(f"Error: {err}", err=True)
    if err.hint:
        say(f"Hint: {err.hint}", err=True)


def handle_errors(command: F) -> F:
    """Turn the library's errors into a message and an exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return command(*args, **kwargs)
        except InvitemailError as err:
            if debug:
                traceback.print_exc()
            say_error(err)
            sys.exit(int(err.exit_code))
        except KeyboardInterrupt:
            say("Interrupted; nothing more was done.", err=True)
            sys.exit(int(ExitCode.PARTIAL))

    return wrapper  # type: ignore[return-value]


def event_options(command: F) -> F:
    """The argument and options every command that reads an event shares."""
    decorators = [
        click.argument("event", default=".", type=click.Path(path_type=Path)),
        click.option("--template", "-t", default="invitation", show_default=True,
                     help="invitation, reminder, update, cancellation, or a template of the "
                     "event's templates/ folder."),
        click.option("--registrants", type=click.Path(path_type=Path, dir_okay=False),
                     help="Read registrants from FILE (.csv or .xlsx) instead of "
                     "EVENT/registrants.csv (or EVENT/registrants.xlsx)."),
        click.option("--sheet", metavar="NAME", help="The workbook's sheet with the "
                     "registrants (default: the first)."),
        click.option("--encoding", help="The registrant file's encoding (default: detected; "
                     "UTF-8 or cp1252)."),
        click.option("--delimiter", type=click.Choice([",", ";", "tab"]),
                     help="The registrant file's delimiter (default: detected)."),
        click.option("--attendance", type=click.Path(path_type=Path, dir_okay=False),
                     help="With --template followup: the platform's attendee or participants "
                     "report (Zoom, Teams); attendees get thanks, the others missed."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command



def delimiter_of(option: str | None) -> str | None:
    """--delimiter as the reader takes it (``tab`` is the tab character)."""
    return "\t" if option == "tab" else option


def open_campaign(event: Path, template: str, registrants: Path | None, encoding: str | None,
                  delimiter: str | None, sheet: str | None = None,
                  attendance: Path | None = None, *, assume: str | None = None,
                  sending: bool = False) -> Campaign:
    from invitemail.campaign import Campaign

    return Campaign.open(event, template=template, registrants=registrants, encoding=encoding,
                         delimiter=delimiter_of(delimiter), sheet=sheet,
                         attendance=attendance, assume=assume, attendance_required=sending)


def print_problems(report: CheckReport) -> None:
    for problem in report.problems:
        say(str(problem), err=True)
    for error in report.template_errors:
        say_error(error)
