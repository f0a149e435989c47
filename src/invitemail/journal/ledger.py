"""The record of what was sent, kept outside the event folder: one append-only file per event.

The journal (store.py) lives in the event folder, where it can be deleted, emptied, copied
or replaced. Each message sent (or left uncertain) is also appended here, one JSON line, right
after the journal records it, in ``$INVITEMAIL_DATA_DIR`` (default
``$XDG_DATA_HOME/invitemail``, else ``~/.local/share/invitemail``), under ``ledger/`` in a
file named for a hash of the event's uid. A run compares the two before it sends
(safeguard.py): a journal that lost what the ledger knows is refused, not trusted.

Lines::

    {"event": UID}                                        the first line
    {"journal": ID, "folder": PATH, "at": ISO}            a journal was started (or adopted)
    {"j": ID, "t": TEMPLATE, "k": KEY, "s": "sent", "m": MESSAGE-ID, "at": ISO, "c": [...]}

Each line is written with one ``write`` (not buffered), so a killed process loses nothing the
kernel got; ``fsync`` follows every :data:`SYNC_EVERY` lines (on a thread of its own, so that
the run does not stop while the disk flushes: one at a time, its error raised by the next
call) and at the end of a run. A line a crash cut short is skipped when reading.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invitemail.errors import InvitemailError
from invitemail.journal.store import CalendarRecord, State

DATA_DIR_ENV = "INVITEMAIL_DATA_DIR"
SYNC_EVERY = 200
# One encoder for every line: json.dumps would make a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class LedgerError(InvitemailError):
    """The record of sent messages cannot be read or written."""


def data_dir() -> Path:
    """Where invitemail keeps what belongs to the user rather than to an event folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "invitemail"


@dataclass(frozen=True, slots=True)
class Entry:
    """The last word of the ledger on one delivery."""

    state: State
    message_id: str
    at: str
    calendar: CalendarRecord | None


@dataclass
class LedgerView:
    """What a ledger file says, read in one go."""

    current: str | None = None  # the journal id started (or adopted) last
    folders: dict[str, str] = field(default_factory=dict)  # journal id -> event folder
    entries: dict[str, dict[tuple[str, str], Entry]] = field(default_factory=dict)

    def of(self, journal_id: str | None) -> dict[tuple[str, str], Entry]:
        """(template, key) -> entry, for one journal."""
        return self.entries.get(journal_id or "", {})

    def sent(self, journal_id: str | None) -> dict[tuple[str, str], Entry]:
        return {k: e for k, e in self.of(journal_id).items() if e.state is State.SENT}

    def last_at(self, journal_id: str | None) -> str:
        return max((e.at for e in self.sent(journal_id).values()), default="")


class Ledger:
    """The ledger file of one event."""

    def __init__(self, path: Path, event_uid: str) -> None:
        self.path = path
        self.event_uid = event_uid
        self.fd = -1
        self.unsynced = 0
        self.deferred: list[str] = []  # lines not written yet (record's ``defer``)
        self._flusher: ThreadPoolExecutor | None = None
        self._flushing: Future[None] | None = None  # the fsync of SYNC_EVERY lines, running

    @classmethod
    def of_event(cls, event_uid: str) -> Ledger:
        name = hashlib.sha256(event_uid.encode()).hexdigest()[:32] + ".jsonl"
        return cls(data_dir() / "ledger" / name, event_uid)

    # -- reading ---------------------------------------------------------------------------

    def read(self) -> LedgerView:
        view = LedgerView()
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return view
        except OSError as err:
            raise self._error("cannot read", err) from None
        for line in text.split("\n"):
            if line:
                with contextlib.suppress(ValueError):  # a line a crash cut short
                    _apply(view, json.loads(line))
        return view

    # -- writing ---------------------------------------------------------------------------

    def open(self) -> Ledger:
        """Open for appending (creating the file and its folders); raises LedgerError."""
        if self.fd >= 0:
            return self
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(self.path, flags, 0o600)
        except OSError as err:
            raise self._error("cannot create", err) from None
        self.fd = fd
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                self._write({"event": self.event_uid})
            elif os.pread(fd, 1, size - 1) != b"\n":  # a line cut short by a crash
                os.write(fd, b"\n")
        except OSError as err:
            self.close()
            raise self._error("cannot write", err) from None
        return self

    def begin(self, journal_id: str, folder: Path, at: str) -> None:
        """A journal starts (or is adopted): later lines with its id belong to it."""
        self._append({"journal": journal_id, "folder": str(folder), "at": at})
        self.sync()

    def record(self, journal_id: str, template: str, key: str, state: State,
               message_id: str, at: str, calendar: CalendarRecord | None, *,
               defer: bool = False) -> None:
        """One delivery's line. ``defer``: kept to go with the next line not deferred, or
        with :meth:`flush` (one write for many)."""
        if self._flushing is not None and self._flushing.done():
            self._flushed()  # its error, if any, before another line
        self.deferred.append(_delivery_line(journal_id, template, key, state, message_id, at,
                                            calendar))
        if not defer:
            self.flush()
        self.unsynced += 1
        if self.unsynced >= SYNC_EVERY:
            self._sync_behind()

    def flush(self) -> None:
        """Write the deferred lines now; raises LedgerError."""
        if self.deferred:
            lines, self.deferred = self.deferred, []
            self._append("\n".join(lines))

    def sync(self) -> None:
        """Every line written so far is on the disk when this returns."""
        if self.fd < 0:
            return
        self.flush()
        self._flushed()
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise self._error("cannot write", err) from None
        self.unsynced = 0

    def _sync_behind(self) -> None:
        """Start the fsync of every line written so far on the flusher thread (after the
        one before it ends), and go on."""
        self.flush()
        self._flushed()
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(max_workers=1,
                                               thread_name_prefix="invitemail-ledger")
        self._flushing = self._flusher.submit(os.fsync, self.fd)
        self.unsynced = 0

    def _flushed(self) -> None:
        """Wait for the fsync running on the flusher thread, if any; raises its error."""
        flushing, self._flushing = self._flushing, None
        if flushing is None:
            return
        try:
            flushing.result()
        except OSError as err:
            raise self._error("cannot write", err) from None

    def close(self) -> None:
        if self.deferred:  # on record first (the file opened for them if need be)
            with contextlib.suppress(LedgerError):  # the journal has them all the same
                self.flush()
        if self.fd < 0:
            return
        try:
            try:
                self._flushed()
            except LedgerError:  # the lines it was for, again
                self.unsynced += 1
            if self.unsynced:
                os.fsync(self.fd)
        except OSError:
            pass  # every line was written; only the flush to the disk failed
        finally:
            os.close(self.fd)
            self.fd = -1
            if self._flusher is not None:
                self._flusher.shutdown()
                self._flusher = None

    def _append(self, line: dict[str, Any] | str) -> None:
        if self.fd < 0:
            self.open()
        try:
            self._write(line)
        except OSError as err:
            raise self._error("cannot write", err) from None

    def _write(self, line: dict[str, Any] | str) -> None:
        """One line: ``line`` encoded, or already the line's JSON text."""
        text = line if isinstance(line, str) else _ENCODER.encode(line)
        data = (text + "\n").encode()
        written = os.write(self.fd, data)
        if written != len(data):  # a full disk takes part of a line: end it, say so
            try:
                os.write(self.fd, b"\n")
            finally:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _error(self, what: str, err: OSError) -> LedgerError:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return LedgerError(f"the disk holding {self.path} (the record of sent messages) "
                               f"is full",
                               hint=f"free space there (or set {DATA_DIR_ENV} to a folder on "
                               "another disk), then run the same command again")
        return LedgerError(f"{what} {self.path} (the record of sent messages): "
                           f"{err.strerror or err}",
                           hint=f"make its folder writable, or set {DATA_DIR_ENV} to a folder "
                           "you can write; then run the same command again")

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The JSON text of one string as _ENCODER writes it (ensure_ascii=False): json's own, in C.
_string: Callable[[str], str] = json.encoder.encode_basestring


def _delivery_line(journal_id: str, template: str, key: str, state: State, message_id: str,
                   at: str, calendar: CalendarRecord | None) -> str:
    """The JSON text _ENCODER writes for one delivery's dict (keys in this order), put
    together without the dict: a line for every message, in the process that sends them."""
    text = (f'{{"j":{_string(journal_id)},"t":{_string(template)},"k":{_string(key)},'
            f'"s":{_string(state.value)},"m":{_string(message_id)},"at":{_string(at)}')
    if calendar is None:
        return text + "}"
    c = calendar
    return (f'{text},"c":[{int(c.sequence)},{_string(c.start)},{int(c.duration)},'
            f'{_string(c.join_url)},{_string(c.password_digest)},{_string(c.template)}]}}')


def _apply(view: LedgerView, line: Any) -> None:
    """One line into ``view``; a damaged line is skipped."""
    try:
        if not isinstance(line, dict):
            return
        if "journal" in line:
            view.current = str(line["journal"])
            view.folders[view.current] = str(line.get("folder", ""))
            return
        if "j" not in line:
            return
        c = line.get("c")
        calendar = CalendarRecord(int(c[0]), str(c[1]), int(c[2]), str(c[3]), str(c[4]),
                                  str(c[5])) if c else None
        entry = Entry(State(line["s"]), str(line["m"]), str(line["at"]), calendar)
        entries = view.entries.setdefault(str(line["j"]), {})
        where = (str(line["t"]), str(line["k"]))
        if entry.state is State.SENT or where not in entries:
            entries[where] = entry  # sent is final: a later uncertain never hides it
    except (ValueError, KeyError, TypeError, IndexError):
        return
