"""The run log: a send run's journal changes, one line each, on disk before the journal
applies them to SQLite in batches.

A run changes two rows' states per message (``sending`` before the data goes out, ``sent``
before the connection's next transaction). Committed one by one, each change rewrites whole
pages of the SQLite file into its WAL: about 36 KiB and 21 system calls per message, the
largest cost of the process that speaks SMTP. Here each change is one ``os.write`` of one
line to ``.invitemail/run.log``, opened with ``O_APPEND``: once the call returns the line is
the kernel's, so it survives a killed process exactly as a WAL commit with
``synchronous=NORMAL`` does (neither survives a power cut; the ledger's fsyncs are for that).
The journal (store.py) applies the lines in batches, each in one commit together with a
marker naming the last line applied; every read of the journal applies what waits first.

A run holds an exclusive ``flock`` on its log while it runs, and removes the file once every
line is applied. A log that nobody holds was left by a run that died: the next process that
opens the journal for writing applies the lines after the marker and removes it. It does so
holding the log's lock and only while the locked file is still the one at the path (as
folderlock.py does), so no two processes ever apply one log, and applying again is harmless:
the marker says how far an earlier attempt got.

The file holds what the journal holds (keys, states, replies, message ids): never a body,
never a password. It is made 0600, never through a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from pathlib import Path

from invitemail.journal.errors import JournalDamaged
from invitemail.journal.location import RUN_LOG

FORMAT = "invitemail run log 1"
__all__ = ["RUN_LOG", "Change", "Leftover", "RunLog", "leftover", "parse", "read", "run_log_path"]
KINDS = frozenset({"sending", "done", "retrying", "pending"})  # store.py has a statement each

Param = str | int | None


@dataclass(frozen=True, slots=True)
class Change:
    """One line: the ``seq``-th change of its log, store.py's statement ``kind`` with
    ``params``."""

    seq: int
    kind: str
    params: tuple[Param, ...]


def run_log_path(directory: Path) -> Path:
    return directory / RUN_LOG


class RunLog:
    """The log of the run in this process, held (``flock``) until :meth:`finish` or
    :meth:`leave`."""

    def __init__(self, fd: int, path: Path, log_id: str) -> None:
        self.fd = fd
        self.path = path
        self.log_id = log_id
        self.seq = 0  # the last line written
        self.broken: OSError | None = None  # why a line could not be written whole
        self.deferred: list[str] = []  # lines not written yet (append's ``defer``)

    @classmethod
    def start(cls, directory: Path) -> RunLog:
        """A new, empty log in ``directory``. FileExistsError when one is there (apply it
        first: :func:`leftover`); OSError when it cannot be made."""
        path = run_log_path(directory)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else has it
            log = cls(fd, path, secrets.token_hex(8))
            log._write(json.dumps({"format": FORMAT, "id": log.log_id}) + "\n")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return log

    def append(self, kind: str, params: Sequence[Param], *, defer: bool = False) -> int:
        """Write one change; its number once it is the kernel's. ``defer``: kept to go with
        the next change that is not deferred, or with :meth:`flush` (one write for many).
        OSError as the disk gives it; a line cut short ends the log."""
        seq = self.seq + 1
        line = (f"[{seq},{_json(kind)},{','.join(map(_json, params))}]\n" if params
                else f"[{seq},{_json(kind)}]\n")
        if defer:
            self.deferred.append(line)
        elif self.deferred:
            lines, self.deferred = self.deferred, []
            lines.append(line)
            self._write("".join(lines))
        else:
            self._write(line)
        self.seq = seq
        return seq

    def flush(self) -> None:
        """Write the deferred changes now."""
        if self.deferred:
            lines, self.deferred = self.deferred, []
            self._write("".join(lines))

    def _write(self, line: str) -> None:
        if self.broken is not None:  # a torn line ends the log: nothing may follow it
            raise self.broken
        data = memoryview(line.encode("ascii"))
        try:
            while data:  # a write cut short (the disk, a size limit) says why on the next
                written = os.write(self.fd, data)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data = data[written:]
        except OSError as err:
            self.broken = err
            raise

    def finish(self) -> None:
        """Every line is applied: remove the file (still holding it), and let go."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.leave()

    def leave(self) -> None:
        """Let go, leaving the file for the next process that opens the journal (lines are
        waiting that could not be applied)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):  # what cannot be written is not on record
                self.flush()
            os.close(self.fd)  # closing drops the lock
            self.fd = -1


def _json(value: Param) -> str:
    """One value of a line, as JSON in ASCII: any text (a reply, a key) goes through as
    escapes and reads back exactly (json.dumps of the whole line gives the same text; this
    is the same encoder without building one per line)."""
    if type(value) is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    raise TypeError(f"a run log holds text, whole numbers and null, not {value!r}")


@dataclass
class Leftover:
    """A run log found beside the journal: a dead run's, held by this process while it is
    applied; or (``live``) the log of a run going on now, neither held nor read here."""

    fd: int
    path: Path
    log_id: str = ""
    changes: list[Change] = field(default_factory=list)
    live: bool = False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # still holding it: see _same_file
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def leftover(directory: Path) -> Leftover | None:
    """The run log in ``directory``: a dead run's, locked by this process and read; a live
    one (its run holds the lock), marked so; None when there is none. OSError when it cannot
    be read; JournalDamaged when a line other than the last is not one this module wrote."""
    path = run_log_path(directory)
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a run is writing it (or another process applying it)
            os.close(fd)
            return Leftover(-1, path, live=True)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # applied and removed by another process meanwhile: look again
    try:
        log_id, changes = parse(_read_fd(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return Leftover(fd, path, log_id, changes)


def read(path: Path) -> tuple[str, list[Change]] | None:
    """A live run's log as it is now (lines are only ever added to it); None when it is
    gone (the run ended, every line applied)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        return parse(_read_fd(fd), path)
    finally:
        os.close(fd)


def _read_fd(fd: int) -> bytes:
    with os.fdopen(os.dup(fd), "rb") as file:
        return file.read()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def parse(data: bytes, path: Path) -> tuple[str, list[Change]]:
    """The log's id and its changes. The last line may be torn (the disk filled, the
    machine stopped during the write): it is left out. Any other line that does not read
    is damage."""
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a line whose write did not end
    if not lines:
        return "", []
    log_id = _header(lines[0], path)
    changes: list[Change] = []
    for number, line in enumerate(lines[1:], start=2):
        change = _change(line)
        if change is None or change.seq != len(changes) + 1:
            if number == len(lines) and change is None:  # torn, then ended by _write
                break
            raise _damaged(f"{path}: line {number} is not a change invitemail wrote; the run "
                           "that wrote this file did not finish, and what it did after that "
                           "line is unknown",
                           f"its run log {path.name}, line {number}, is not a change "
                           "invitemail wrote")
        changes.append(change)
    return log_id, changes


def _header(line: bytes, path: Path) -> str:
    try:
        header = json.loads(line)
        if header.get("format") == FORMAT and isinstance(header.get("id"), str):
            return str(header["id"])
    except (ValueError, AttributeError):
        pass
    raise _damaged(f"{path}: is not a run log invitemail wrote (line 1)",
                   f"its run log {path.name} is not one invitemail wrote")


def _damaged(message: str, detail: str) -> JournalDamaged:
    """A run log that does not read: what to do is the same whatever the damage."""
    damaged = JournalDamaged(message, hint="run `invitemail send --restore-journal`: it moves "
                             "the journal and this file aside (both are kept) and rebuilds "
                             "the journal from the record of what was sent")
    damaged.detail = detail
    return damaged


def _change(line: bytes) -> Change | None:
    try:
        value = json.loads(line)
    except ValueError:  # UnicodeDecodeError too
        return None
    if not (isinstance(value, list) and len(value) >= 2 and type(value[0]) is int
            and value[1] in KINDS
            and all(v is None or type(v) in (str, int) for v in value[2:])):
        return None
    return Change(value[0], value[1], tuple(value[2:]))
