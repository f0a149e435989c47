"""One `send` per event folder: an exclusive ``flock`` on ``.invitemail/lock``.

The lock is the kernel's: it goes with the process, however the process ends (a crash, a
kill -9), so there is never a stale lock to clean up. The file holds who took it (pid, host,
when) only for the message a second run prints; the lock itself is not the file's content.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

from invitemail.clock import utcnow as _utcnow
from invitemail.errors import InvitemailError

LOCK_DIR = ".invitemail"  # the journal's folder (journal.JOURNAL_DIR)
LOCK_FILE = "lock"


class FolderBusy(InvitemailError):
    """Another `send` holds the event folder."""



class FolderLock:
    """The lock of one event folder, held until :meth:`release` (or the process ends)."""

    def __init__(self, fd: int, path: Path, *, created: bool = False) -> None:
        self.fd = fd
        self.path = path
        self.created = created  # this run made .invitemail/: tidy it away if nothing came

    @classmethod
    def acquire(cls, folder: Path, *,
                clock: Callable[[], dt.datetime] = _utcnow) -> FolderLock:
        """Take the folder's lock at once, or raise FolderBusy naming the process that has it."""
        directory = folder / LOCK_DIR
        path = directory / LOCK_FILE
        created = not directory.exists()
        while True:
            fd = _open(directory, path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _holder(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise InvitemailError(f"{path}: cannot lock the event folder: "
                                          f"{err.strerror}", hint="is the folder on a network "
                                          "disk without locks? copy the event to a local disk"
                                          ) from None
                raise FolderBusy(f"another invitemail send ({holder}) is sending from "
                                 f"{folder}", hint="wait for it to finish (`invitemail status` "
                                 "shows how far it got), then run the same command again"
                                 ) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # locked a file the holder removed as it finished: take the new one
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": clock().astimezone(dt.UTC).isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:
            pass  # who holds it is for another run's message only; the lock is taken
        return cls(fd, path, created=created)

    def release(self) -> None:
        if self.fd < 0:
            return
        if self.created:  # a run that stopped before it wrote anything leaves no trace
            with contextlib.suppress(OSError):
                if os.listdir(self.path.parent) == [LOCK_FILE]:
                    os.unlink(self.path)  # still holding it: see _same_file
                    os.rmdir(self.path.parent)
        os.close(self.fd)  # closing the last descriptor drops the lock
        self.fd = -1

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open(directory: Path, path: Path) -> int:
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        if directory.is_symlink():
            raise OSError(errno.ELOOP, f"{directory} is a symbolic link")
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise InvitemailError(f"{path}: cannot create the lock of the event folder: "
                              f"{err.strerror}", hint="check that the event folder is writable "
                              "(is its disk mounted read-only?)") from None


def _same_file(fd: int, path: Path) -> bool:
    """The locked file is still the one at ``path`` (a holder removes it before it lets go)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _holder(fd: int) -> str:
    """"pid 1234 on host, started 20:14:03", from what the holder wrote (it may not have
    written it yet)."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid, host = int(record["pid"]), str(record["host"])
        started = dt.datetime.fromisoformat(str(record["started"])).astimezone()
    except (OSError, ValueError, KeyError, TypeError):
        return "it has only just started"
    when = started.strftime("%H:%M:%S") if started.date() == dt.date.today() \
        else started.strftime("%Y-%m-%d %H:%M:%S")
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"pid {pid}{where}, started {when}"
