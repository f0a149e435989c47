"""The journal and the folder lock are never written through a symbolic link: a link in
``.invitemail/`` (planted, or left by a copy) would let sqlite write wherever it points."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from invitemail.journal.store import Journal, JournalError
from support.cli import run_cli
from support.event import write_event


@pytest.mark.parametrize("name", [".invitemail", ".invitemail/journal.sqlite",
                                  ".invitemail/journal.sqlite-wal"])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_in_the_journal_folder_is_refused_and_its_target_untouched(
        tmp_path: Path, name: str, dangling: bool) -> None:
    folder = write_event(tmp_path / "event")
    target = tmp_path / "elsewhere"
    if not dangling:
        if name == ".invitemail":
            target.mkdir()
        else:
            target.write_text("keep me", encoding="utf-8")
    link = folder / name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(target)
    with pytest.raises(JournalError) as raised:
        Journal.open(folder)
    assert f"{link}: is a symbolic link (to {target})" in str(raised.value)
    if dangling:
        assert not target.exists()
    elif name == ".invitemail":
        assert list(target.iterdir()) == []
    else:
        assert target.read_text(encoding="utf-8") == "keep me"


def test_send_refuses_a_linked_journal_folder_without_a_traceback(tmp_path: Path) -> None:
    folder = write_event(tmp_path / "event")
    (tmp_path / "elsewhere").mkdir()
    (folder / ".invitemail").symlink_to(tmp_path / "elsewhere")
    result = run_cli("send", str(folder), "--yes")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "is a symbolic link" in result.output
    assert os.listdir(tmp_path / "elsewhere") == []
