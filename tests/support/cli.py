"""The CLI run in-process, with stdout and stderr apart."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import NamedTuple

from click.testing import CliRunner

from invitemail.cli import main


class Run(NamedTuple):
    """What a CLI run left behind."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together, for "never a traceback" checks."""
        return self.stdout + self.stderr


def run_cli(*args: str | Path) -> Run:
    """Run ``invitemail ARGS`` in-process, stdout and stderr apart (click 8.2+ keeps them so)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # An exception the CLI let through: show the traceback a user would have seen.
        stderr += "".join(traceback.format_exception(result.exception))
    return Run(result.exit_code, result.stdout, stderr)
