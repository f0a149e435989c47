"""Where an event folder's journal lives (``.invitemail/journal.sqlite``), and making that
place safely: the folder 0700 and the file 0600, never through a symbolic link (sqlite would
follow it, and write wherever it points)."""

from __future__ import annotations

import os
from pathlib import Path

from invitemail.journal.errors import JournalError

JOURNAL_DIR = ".invitemail"
JOURNAL_FILE = "journal.sqlite"
RUN_LOG = "run.log"  # a send run's steps before the journal has them (runlog.py)


def journal_path(folder: Path) -> Path:
    return folder / JOURNAL_DIR / JOURNAL_FILE


def prepare_journal_file(folder: Path, *, create: bool) -> Path | None:
    """The journal's path in ``folder``, the file made (empty) when it is absent and
    ``create``; None when it is absent and not. A link on the way is a JournalError."""
    directory = folder / JOURNAL_DIR
    path = directory / JOURNAL_FILE
    for where in (directory, path, path.with_name(path.name + "-wal"),
                  path.with_name(path.name + "-shm"), directory / RUN_LOG):
        if where.is_symlink():  # sqlite would follow it, and write wherever it points
            raise JournalError(
                f"{where}: is a symbolic link (to {os.readlink(where)}); invitemail keeps "
                "its journal only in a real folder, never through a link",
                hint=f"remove the link {where} (if it pointed to a journal, move that "
                "file there instead)")
    if not path.exists():
        if not create:
            return None
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        except OSError as err:
            raise JournalError(f"{directory}: cannot create the journal: {err.strerror}",
                               hint="check the folder's permissions and free space"
                               ) from None
    return path
