"""What a coordinator ran into on a first real run: the password prompt, the gallery's counts
and heading, local test servers' addresses, and the test suite's own output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


# -- the SpamAssassin table stays out of pytest's progress dots unless -v -------------------

TABLE_TEST = """
import pytest
from test_deliverability import show_when_verbose

def test_table(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    show_when_verbose(request, capsys, [f"ROW-{n:03}" for n in range(76)])

def test_after() -> None:
    pass
"""


def _pytest(folder: Path, *options: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--rootdir", str(folder), str(folder / "test_table.py"), *options],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_score_table_is_quiet_without_verbose_and_shown_with_it(tmp_path: Path) -> None:
    (tmp_path / "test_table.py").write_text(TABLE_TEST, encoding="utf-8")
    quiet = _pytest(tmp_path, "-q")
    assert "ROW-" not in quiet
    assert ".." in quiet  # the progress dots, unbroken
    shown = _pytest(tmp_path, "-v")
    rows = [line for line in shown.splitlines() if line.startswith("ROW-")]
    assert rows == [f"ROW-{n:03}" for n in range(76)]
