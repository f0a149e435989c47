"""Progress output when stdout is not a terminal: a plain line every few seconds."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from invitemail.outputs.progress import BarProgress, LineProgress, make_progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_progress_prints_every_few_seconds_not_every_message() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = LineProgress(stream, every=5.0, clock=clock)
    progress.started(100)
    for i in range(100):
        clock.now = i * 0.1  # 10 messages a second for 10 seconds
        if i % 10 == 3:
            progress.retrying("k", "451 try later", 2.0)
        progress.finished("k", "failed" if i == 50 else "sent", "250 ok")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "sending 100 messages"
    assert len(lines) == 2  # at 5 s only; the summary comes from the CLI
    assert lines[1] == ("progress: 51/100 done, sent 50, failed 1, uncertain 0, retries 5, "
                        "10.0/s")


def test_make_progress_picks_plain_lines_without_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with make_progress(console, "invitation") as progress:
        assert isinstance(progress, LineProgress)
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with make_progress(terminal, "invitation") as progress:
        assert isinstance(progress, BarProgress)
        progress.started(2)
        progress.finished("a", "sent", "250")
        progress.retrying("b", "451", 1.0)
    assert "sent 1" in terminal.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("environ", [{}, {"TTY_COMPATIBLE": "0"}, {"TTY_COMPATIBLE": "1"},
                                     {"FORCE_COLOR": ""}, {"FORCE_COLOR": "1"},
                                     {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}])
def test_the_cli_skips_rich_only_where_rich_would_say_no_terminal(
        monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """stdout is not a terminal here (captured): terminal_console gives no console exactly
    when rich's would not be a terminal."""
    from invitemail.cli.shared import console, terminal_console

    for key in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    found = terminal_console()
    assert (found is not None and found.is_terminal) == console().is_terminal
    if not environ:
        assert found is None
