"""The README stays true: its variables table, its commands, every command's help."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path

import click
import pytest

from invitemail.campaign import TEMPLATE_VARIABLES, Campaign, variables_table
from invitemail.cli import main
from invitemail.inputs.registrants import unique_registrants

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The README and the pages under docs/ (whose text may later move into the README).
DOCS = README + "".join(page.read_text(encoding="utf-8")
                        for page in sorted((ROOT / "docs").glob("*.md")))
EXAMPLE = ROOT / "examples" / "djoef-webinar"


def _flatten(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        names: set[str] = set()
        for key, inner in value.items():
            names |= _flatten(inner, f"{prefix}.{key}" if prefix else key)
        return names
    return {prefix}


def test_docs_variables_table_matches_the_code() -> None:
    table = README.split("<!-- variables:start -->\n", 1)[1].split("<!-- variables:end -->")[0]
    assert table == variables_table(), (
        "README's variables table is out of date; replace it with the output of "
        "invitemail.campaign.variables_table()")


def test_docs_every_context_variable_is_documented() -> None:
    campaign = Campaign.open(EXAMPLE, now=dt.datetime(2031, 12, 1, tzinfo=dt.UTC))
    registrant = next(unique_registrants(campaign.source))
    context = campaign.context(registrant)
    provided = _flatten({k: v for k, v in context.items() if k != "registrant"})
    provided |= {f"registrant.{k}" for k in ("email", "name", "first_name", "last_name",
                                             "language", "join_url", "timezone")}
    documented = {name for name in TEMPLATE_VARIABLES if name != "registrant.<column>"}
    assert provided == documented


def _readme_commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOCS, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("invitemail "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("args", _readme_commands(), ids=" ".join)
def test_docs_readme_commands_parse(args: list[str]) -> None:
    """Every `invitemail ...` line in the README names a real command and real options."""
    command = main.get_command(click.Context(main), args[0])
    assert command is not None, f"README shows a command that does not exist: {args[0]}"
    command.make_context(args[0], args[1:], parent=click.Context(main))


@pytest.mark.parametrize("name", sorted(main.commands))
def test_docs_every_command_has_help_and_is_in_the_readme(name: str) -> None:
    command = main.commands[name]
    assert command.help, f"{name} has no help text"
    assert f"invitemail {name}" in DOCS


def test_docs_the_example_event_stays_ahead_of_the_calendar() -> None:
    """The README's walkthrough runs `check` on the example, which refuses an event in the
    past: this fails a year before the example's date comes, so it is moved in time (with
    the dates the tests expect) before anyone who follows the README meets the refusal."""
    from invitemail.inputs.config import load_config

    start = load_config(EXAMPLE).event.start
    a_year_from_now = dt.datetime.now(dt.UTC) + dt.timedelta(days=366)
    assert start > a_year_from_now, (
        f"examples/djoef-webinar starts {start:%Y-%m-%d}: move [event] start and uid a few "
        "years ahead, and the example dates in tests/test_browser.py, test_gallery.py, "
        "test_docs.py and test_deliverability.py with them")
