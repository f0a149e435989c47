"""Before a run sends: is the event folder's journal the one the ledger knows?

The journal says who has the message; the ledger (ledger.py) is the second record, outside
the event folder. A journal that is missing, empty, damaged, replaced, of another event, or
missing messages the ledger says were sent would make a run mail those people again, so the
run is refused (exit 1) with what happened and the two ways on:
``send --restore-journal`` rebuilds the journal from the ledger, ``send --new-journal``
moves it aside (never deletes it) and starts afresh, knowing that may mail people twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from invitemail.clock import utcnow as _utcnow
from invitemail.journal.errors import JournalDamaged, JournalError, os_error
from invitemail.journal.ledger import Entry, Ledger, LedgerView
from invitemail.journal.location import RUN_LOG
from invitemail.journal.store import Journal, State, new_journal_id


class JournalMismatch(JournalError):
    """The journal does not hold what the ledger says was sent; nothing was sent."""

    problem: str = ""  # "is missing", "is empty", ...



@dataclass
class Prepared:
    """The journal a run may trust, and what was done to get it."""

    journal: Journal | None  # None: a dry run of an event with no journal yet
    ledger: Ledger | None  # open for appending; None in a dry run
    journal_id: str
    restored: int = 0  # rows rebuilt from the ledger (--restore-journal)
    reconciled: int = 0  # rows the journal had in flight that the ledger knows were sent
    set_aside: Path | None = None  # where the old journal went (--new-journal, a rebuild)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
        if self.ledger is not None:
            self.ledger.close()


def open_for_send(folder: Path, event_uid: str, *, dry_run: bool = False,
                  restore: bool = False, new: bool = False,
                  clock: Callable[[], dt.datetime] = _utcnow) -> Prepared:
    """Open the journal of ``folder`` for a run, after checking it against the ledger.

    Raises JournalMismatch when the journal cannot be trusted and neither ``restore`` nor
    ``new`` says what to do; a dry run never changes anything and only raises.
    """
    ledger = Ledger.of_event(event_uid)
    view = ledger.read()
    path = Journal.path_in(folder)
    journal: Journal | None = None
    problem: str | None = None
    adopt = False
    try:
        if path.exists():
            journal = Journal.open(folder, create=False, clock=clock)
        if journal is not None:
            problem, adopt = _judge(journal, event_uid, view, folder)
        elif view.sent(view.current):
            problem = "is missing"
    except JournalDamaged as err:
        problem = f"is damaged ({err.detail})"
    if dry_run:
        if problem is not None:
            _close(journal)
            raise _mismatch(path, problem, view, " (a dry run changes nothing: run send "
                            "without --dry-run)")
        return Prepared(journal, None, _journal_id(journal) or "")
    if problem is None and new:
        _close(journal)
        raise JournalMismatch(
            f"{path} is sound ({len(view.sent(view.current))} messages recorded as sent from "
            "it); --new-journal would start afresh and mail everyone again",
            hint="leave --new-journal out to continue where the journal stands; to send "
            "everything again on purpose, move the journal aside first")
    if problem is not None and not (restore or new):
        _close(journal)
        raise _mismatch(path, problem, view)
    ledger.open()
    try:
        return _prepare(folder, event_uid, journal, ledger, view, problem=problem,
                        adopt=adopt, restore=restore, new=new, clock=clock)
    except BaseException:
        ledger.close()
        raise


def _judge(journal: Journal, event_uid: str, view: LedgerView,
           folder: Path) -> tuple[str | None, bool]:
    """What is wrong with an open journal (None: nothing), and whether it is one to adopt
    (stamp, and copy what it sent into the ledger)."""
    identity = journal.identity()
    expected = view.sent(view.current)
    if identity is not None and identity.event_uid != event_uid:
        return f"is the journal of another event, {identity.event_uid!r}", False
    if identity is None:  # new, emptied, or written by invitemail 0.1
        if journal.is_empty():
            return ("is empty" if expected else None), False
        has = journal.keys_in([State.SENT, State.SENDING, State.UNCERTAIN])
        if set(expected) - has:
            return "was replaced", False
        return None, True
    if identity.journal_id != view.current:
        if not expected:
            return None, True
        last = view.folders.get(view.current or "", "")
        if last and Path(last) != folder.resolve():  # two folders of one event
            return (f"is not the one this event last sent from (that one is in {last}): "
                    "one event is being sent from two folders"), False
        return "was replaced", False
    lost = set(expected) - journal.keys_in([State.SENT, State.SENDING, State.UNCERTAIN])
    if lost:
        return (f"lacks {len(lost)} of the {len(expected)} messages recorded as sent from "
                "it"), False
    return None, False


def _prepare(folder: Path, event_uid: str, journal: Journal | None, ledger: Ledger,
             view: LedgerView, *, problem: str | None, adopt: bool, restore: bool,
             new: bool, clock: Callable[[], dt.datetime]) -> Prepared:
    now = clock().astimezone(dt.UTC).isoformat(timespec="seconds")
    set_aside = None
    entries = view.of(view.current)
    if problem is not None:  # --new-journal or --restore-journal: start a new file
        if restore and not entries:
            _close(journal)
            raise JournalMismatch(
                f"{Journal.path_in(folder)} {problem}, and there is no record on this machine "
                "of messages sent for this event, so there is nothing to restore",
                hint="`invitemail send --new-journal` moves it aside and starts afresh (it may "
                "mail again whoever it had as sent)")
        _close(journal)
        set_aside = move_aside(folder, clock)
        journal = None
    if journal is None:
        journal = Journal.open(folder, create=True, clock=clock)
        assert journal is not None
    try:
        restored = reconciled = 0
        identity = journal.identity()
        if restore and problem is not None:
            assert view.current is not None
            journal.stamp(event_uid, view.current)
            restored = _restore(journal, entries)
        elif identity is None or adopt or (problem is not None and new):
            journal_id = identity.journal_id if identity and adopt else new_journal_id()
            if identity is None or identity.journal_id != journal_id:
                journal.stamp(event_uid, journal_id)
            ledger.begin(journal_id, folder.resolve(), now)
            for template, key, state, message_id, at, calendar in journal.recorded():
                ledger.record(journal_id, template, key, state, message_id, at, calendar)
            ledger.sync()
        else:  # the ledger knows of sends the journal still has in flight or uncertain
            in_doubt = journal.keys_in([State.SENDING, State.UNCERTAIN])
            reconciled = _restore(journal, {k: e for k, e in view.sent(view.current).items()
                                            if k in in_doubt})
        stamped = journal.identity()
        assert stamped is not None
        return Prepared(journal, ledger, stamped.journal_id, restored, reconciled, set_aside)
    except BaseException:
        journal.close()
        raise


def _restore(journal: Journal, entries: dict[tuple[str, str], Entry]) -> int:
    with journal.transaction():
        for (template, key), entry in entries.items():
            journal.restore(template, key, entry.state, entry.message_id, entry.at,
                            entry.calendar)
    return len(entries)


def _journal_id(journal: Journal | None) -> str | None:
    identity = journal.identity() if journal is not None else None
    return identity.journal_id if identity is not None else None


def _close(journal: Journal | None) -> None:
    if journal is not None:
        journal.close()


def diagnose(folder: Path, event_uid: str) -> JournalMismatch | None:
    """What would stop a run from trusting the journal (for `status`); changes nothing."""
    try:
        open_for_send(folder, event_uid, dry_run=True).close()
    except JournalMismatch as err:
        return _mismatch(Journal.path_in(folder), err.problem, Ledger.of_event(event_uid).read())
    return None


def _mismatch(path: Path, problem: str, view: LedgerView, dry: str = "") -> JournalMismatch:
    sent = view.sent(view.current)
    relative = Path(*path.parts[-2:])
    if not sent:
        error = JournalMismatch(
            f"the journal {path} {problem}; there is no record on this machine of messages "
            "sent for this event",
            hint="`invitemail send --new-journal` moves it aside (it is kept) and starts "
            f"afresh; whoever it had as sent may be mailed again{dry}")
        error.problem = problem
        return error
    last = dt.datetime.fromisoformat(view.last_at(view.current)).astimezone()
    error = JournalMismatch(
        f"the journal {relative} {problem}, but {len(sent)} message"
        f"{'s' if len(sent) != 1 else ''} of this event were sent from this machine, the last "
        f"at {last:%Y-%m-%d %H:%M}",
        hint="`invitemail send --restore-journal` rebuilds it from the record of what was "
        f"sent; `invitemail send --new-journal` starts afresh and may mail those {len(sent)} "
        f"again{dry}")
    error.problem = problem
    return error


def move_aside(folder: Path, clock: Callable[[], dt.datetime] = _utcnow) -> Path | None:
    """Rename the journal (with its -wal, -shm and run log) to a dated name beside it, so that a
    new journal can start; never deletes. Returns the new name, or None when there was none."""
    path = Journal.path_in(folder)
    if not path.exists():
        return None
    stamp = clock().astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"journal-set-aside-{stamp}.sqlite")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"journal-set-aside-{stamp}-{number}.sqlite")
    try:
        # The run log too: steps of a run that died, for the journal set aside.
        for side, name in ((path.with_name(RUN_LOG), aside.name + "-" + RUN_LOG),
                           *((path.with_name(path.name + suffix), aside.name + suffix)
                             for suffix in ("-wal", "-shm", ""))):  # the database last:
            if side.exists():  # it names the set
                side.rename(aside.with_name(name))
    except OSError as err:
        raise os_error(err, path) from None
    return aside
