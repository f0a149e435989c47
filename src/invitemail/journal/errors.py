"""What can go wrong with the journal, as sentences: the file, what happened, what to do.

store.py (where the journal meets sqlite3) hands every error of sqlite3 or of the file
system to :func:`sqlite_error` or :func:`os_error`, so no command ever shows a traceback for
a full disk, a damaged file or a read-only one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from invitemail.errors import InvitemailError

# SQLite's primary result codes (https://sqlite.org/rescode.html).
BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


class JournalError(InvitemailError):
    """The journal cannot be opened, read or written; the text names the file."""


class JournalDamaged(JournalError):
    """The file is not a database, or a damaged one."""

    detail: str = ""  # what sqlite said


class JournalFull(JournalError):
    """The disk holding the journal is full."""


class ForeignJournal(JournalError):
    """The journal belongs to another event (a copied event folder)."""

    def __init__(self, path: Path, uid: str) -> None:
        super().__init__(f"{path} is the journal of another event, {uid!r}: the event folder "
                         "was copied, or its event.uid changed",
                         hint="`invitemail send --new-journal` moves it aside (it is kept) and "
                         "starts a journal for this event")
        self.uid = uid


class ClaimError(JournalError):
    """A row could not be claimed: it is no longer in a state this run may send from."""


def os_error(err: OSError, path: Path) -> JournalError:
    """An error of the file system with the journal (or its folder) at ``path``."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        code = FULL
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        code = READONLY
    else:
        code = IOERR
    return sqlite_error(code, "", err.strerror or str(err), path)


def sqlite_error(code: int, name: str, detail: str, path: Path) -> JournalError:
    """The error for SQLite's primary result ``code`` (``name`` the extended one, e.g.
    SQLITE_IOERR_WRITE) with the journal at ``path``."""
    if code == IOERR and name:
        detail += f" ({name})"
    if code == IOERR and _nearly_full(path):  # e.g. no room to make the -shm file
        code = FULL
    if code in (CANTOPEN, IOERR, READONLY) and _disk_flags(path) & os.ST_RDONLY:
        code, detail = READONLY, "its disk is mounted read-only"
    if code == FULL:
        return JournalFull(f"the disk holding {path} is full ({detail})",
                           hint="free space on that disk, then run the same command again; "
                           "what was sent is recorded and is not sent again")
    if code in (CORRUPT, NOTADB):
        damaged = JournalDamaged(f"{path} is damaged: {detail}",
                                 hint="run `invitemail send --restore-journal`: it moves the "
                                 "file aside (it is kept) and rebuilds the journal from the "
                                 "record of what was sent")
        damaged.detail = detail
        return damaged
    if code == READONLY:
        return JournalError(f"cannot write {path}: {detail}",
                            hint="make the file and its folder writable (or the disk: is it "
                            "mounted read-only?), then run the same command again")
    if code == CANTOPEN:
        return JournalError(f"cannot open {path}: {detail}",
                            hint="check that the folder exists and that you may read and "
                            "write it")
    if code in (BUSY, LOCKED):
        return JournalError(f"{path} is in use by another program: {detail}",
                            hint="wait for it to finish, then run the same command again")
    if code == IOERR:
        return JournalError(f"cannot read or write {path}: {detail}",
                            hint="check the disk: is it full, removed or read-only?")
    return JournalError(f"{path}: the journal cannot be used: {detail}",
                        hint="run `invitemail status` to see what it holds; if it is damaged, "
                        "run `invitemail send --restore-journal`")


def _statvfs(path: Path) -> os.statvfs_result | None:
    try:
        return os.statvfs(path.parent if path.parent.exists() else path.parent.parent)
    except OSError:
        return None


def _nearly_full(path: Path) -> bool:
    """Less than a megabyte free where the journal is: a write error there is a full disk."""
    disk = _statvfs(path)
    return disk is not None and disk.f_bavail * disk.f_frsize < 1 << 20


def _disk_flags(path: Path) -> int:
    disk = _statvfs(path)
    return disk.f_flag if disk is not None else 0
