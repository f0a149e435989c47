"""The command line: the only part that uses click, and the only one that prints.

Each command parses its options, calls the library, and turns the library's errors into a
sentence on stderr and the exit code product.md promises (shared.handle_errors). One module
a group of commands: account.py (init, login, logout), inspect.py (check, preview),
send.py, status.py. Heavy imports (Jinja2, aiosmtplib, icalendar, babel) happen inside the
commands so that ``invitemail --help`` stays fast.
"""

from __future__ import annotations

import click

from invitemail import __version__
from invitemail.cli import account, inspect, send, status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="invitemail")
@click.option("--debug", is_flag=True, help="Show a traceback with errors (for bug reports).")
def main(debug: bool) -> None:
    """Send event invitations from a registrant list: check, preview, send, status.

    Every command takes the event folder (with event.toml and registrants.csv) as EVENT,
    default the current folder. Start with `invitemail init DIR`.
    """
    send.take_password_from_environment()


for command in (account.init, inspect.check, inspect.preview, send.send, account.login,
                account.logout, status.status):
    main.add_command(command)
