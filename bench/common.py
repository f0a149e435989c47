"""What every part of the bench shares: its paths and settings, the issue's targets, how it
prints, and one measurement's record.

The bench uses the tests' own helpers (tests/support: the event builder, the free port, the
scripted relay): importing this module puts the tests folder on ``sys.path``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(1, str(TESTS))  # ``support``: after bench/ itself, before site-packages

CACHE = BENCH / ".cache"
RESULTS = BENCH / "results.json"
EXAMPLE = ROOT / "examples" / "djoef-webinar"
MAILMERGE = "mailmerge==2.3.0"
CONNECTIONS = 8
LATENCY = 0.050  # seconds added to every chunk the server sends, in (d)
LATENCY_FAR = 0.100  # and in (d) again, for (a) and (c): a relay further away (issue 17)
SEED = 20261210
CHILD_TIMEOUT = 3600.0  # seconds; a measurement that takes longer is killed and fails

# Targets from issue 4 (ratios from one run, so the machine's noise cancels).
# Issue 17 (pipelining) raised (a)/(c) from issue 4's 0.60 and 0.90: invitemail over the
# ceiling of raw aiosmtplib, which pays four round trips per message where it pays one.
TARGET_AC_0 = 1.2
TARGET_AB_0 = 3.0
TARGET_AC_50 = 2.0
TARGET_AC_100 = 2.0
TARGET_AB_50 = 10.0
TARGET_RSS_MB = 150.0
TARGET_CHECK_S = 3.0
TARGET_HELP_S = 0.3


class BenchError(Exception):
    """The benchmark cannot run (a missing tool, a failed set-up)."""


def out(text: str = "") -> None:
    """A line of the results, on stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """Progress on stderr; the results go to stdout."""
    print(f"... {text}", file=sys.stderr, flush=True)



@dataclass
class Measurement:
    key: str
    label: str
    messages: int = 0
    seconds: float | None = None
    rate: float | None = None  # messages per second over ``seconds``
    send_rate: float | None = None  # messages per second while messages were arriving
    peak_rss_mb: float | None = None
    ok: bool = True
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    # issue 12: achieved/cap and refused, second half and whole run; or the time ratio
    pace: list[float] = field(default_factory=list)



def compile_ahead() -> int:
    """Compile invitemail's modules to bytecode beside them, as installing its wheel does
    (pip compiles what it installs); how many files were compiled now. Without this, an
    editable install run with ``PYTHONDONTWRITEBYTECODE`` set would compile every module
    from source in each measured command, and in its fork server, before doing any work."""
    import compileall
    import io
    from contextlib import redirect_stdout

    import invitemail

    package = Path(invitemail.__file__).resolve().parent
    before = sum(1 for _ in package.rglob("__pycache__/*.pyc"))
    with redirect_stdout(io.StringIO()):
        compileall.compile_dir(str(package), quiet=2)
    return sum(1 for _ in package.rglob("__pycache__/*.pyc")) - before
