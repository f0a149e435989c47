"""The platform's attendance report -> who attended, by address.

Three reports are read, told apart by their header row (the first row that names the
columns of one of them; whatever comes before it is the report's preamble):

- Zoom's webinar attendee report: sections ("Host Details", "Panelist Details",
  "Attendee Details"), each with a header ``Attended, User Name (Original Name), ...,
  Email, ..., Time in Session (minutes)``. ``Attended`` says it.
- Zoom's meeting participants report: ``Name (Original Name), User Email, Join Time,
  Leave Time, Duration (Minutes), ...``, after a summary row. A row means the person was
  there.
- Teams' attendance list (tab-separated, UTF-16): "1. Summary", then "2. Participants" with
  ``Name, First Join, Last Leave, In-Meeting Duration, Email, Participant ID (UPN), Role``;
  or the older list ``Full Name, User Action, Timestamp`` (with an email column when the
  export has one). A row means the person was there.

The steps are apart so that a spreadsheet can be read the same way: the bytes are decoded
(decoding.py) and split into rows of (position, cells) (registrants.py owns csv), and
:func:`attendance_from_rows` takes rows from any source.

A row that says ``Attended = No`` with a time in the session above 0 counts as attended:
the time is what the platform measured, and thanking someone who was there briefly is a
smaller mistake than telling them they were missed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from invitemail.errors import InvitemailError
from invitemail.inputs.addresses import AddressError, normalize_address
from invitemail.inputs.decoding import decode
from invitemail.inputs.registrants import csv_rows

MAX_REPORT = 64 * 1024 * 1024  # bytes: far above any real report
DELIMITERS = ("\t", ",", ";")
FORMATS_HINT = ("export Zoom's webinar attendee report, Zoom's meeting participants report or "
                "Teams' attendance list as it is downloaded, with the participants' email "
                "addresses")



class AttendanceError(InvitemailError):
    """The attendance report cannot be read or is not one this module knows."""

    header_found = False  # the error is about a report whose header was recognised


@dataclass
class Attendee:
    """One address of the report, from all its rows."""

    address: str  # as the report writes it (first row)
    name: str
    where: str  # the first row's position
    attended: bool = False
    minutes: float = 0.0


@dataclass
class Attendance:
    """The report, read: each address (lower case, as Registrant.key) and whether it attended."""

    source: str
    kind: str  # "Zoom webinar attendee report", ...
    people: dict[str, Attendee] = field(default_factory=dict)
    no_address: list[tuple[str, str]] = field(default_factory=list)  # (where, name)

    def attended(self, key: str) -> bool:
        person = self.people.get(key)
        return person is not None and person.attended

    def not_registered(self, keys: Iterable[str]) -> list[Attendee]:
        """The report's people whose address is not among ``keys`` (the registrants')."""
        known = set(keys)
        return [person for key, person in self.people.items() if key not in known]


@dataclass(frozen=True, slots=True)
class _Format:
    kind: str
    # A header row is this format's when it has every one of ``needs`` (normalised names).
    needs: tuple[str, ...]
    attended: str | None = None  # the column that says yes or no
    minutes: tuple[str, ...] = ()  # a time in the session: above 0 is attended
    action: str | None = None  # Teams' older list: "Joined", "Left", ...


# Normalised header names: lower case, without spaces, "_", "-", "." and "()".
EMAIL_COLUMNS = ("email", "useremail", "emailaddress", "mail", "epost",
                 "participantid(upn)")
NAME_COLUMNS = ("username(originalname)", "name(originalname)", "name", "fullname",
                "participant")
FORMATS: tuple[_Format, ...] = (
    _Format("Zoom webinar attendee report", ("attended",), attended="attended",
            minutes=("timeinsession(minutes)",)),
    _Format("Zoom meeting participants report", ("name(originalname)",),
            minutes=("duration(minutes)",)),
    _Format("Teams attendance list", ("name", "firstjoin")),
    _Format("Teams attendance list", ("fullname", "jointime")),
    _Format("Teams attendance list", ("name", "jointime")),
    _Format("Teams attendance list (older format)", ("fullname", "useraction"),
            action="useraction"),
)
_YES = frozenset({"yes", "ja", "y", "true", "1"})
_NO = frozenset({"no", "nej", "n", "false", "0"})


def _normal(cell: str) -> str:
    return re.sub(r"[\s_.\-]+", "", cell.strip().lstrip("\ufeff").lower())


def read_attendance(path: Path, *, encoding: str | None = None) -> Attendance:
    """Read the report at ``path`` (CSV or tab-separated text, any encoding decoding.py
    knows). Raises AttendanceError, naming the file (and line) and what to do."""
    label = str(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return attendance_from_rows(_sheet_rows(path), label)
    try:
        if path.stat().st_size > MAX_REPORT:
            raise AttendanceError(f"{label}: is larger than {MAX_REPORT // 2**20} MiB; it is "
                                  "not an attendance report", hint=FORMATS_HINT)
        data = path.read_bytes()
    except FileNotFoundError:
        raise AttendanceError(f"{label}: no such file",
                              hint="give the attendance report's path to --attendance") from None
    except IsADirectoryError:
        raise AttendanceError(f"{label}: is a folder, not a file",
                              hint="give the attendance report's path to --attendance") from None
    except OSError as err:
        raise AttendanceError(f"{label}: cannot be read: {err.strerror}") from None

    def fail(message: str, hint: str | None = None, line: int | None = None) -> Exception:
        return AttendanceError(f"{label}{f':{line}' if line else ''}: {message}",
                               hint=hint or FORMATS_HINT)

    text, _ = decode(data, encoding, fail)
    if not text.strip():
        raise AttendanceError(f"{label}: is empty", hint=FORMATS_HINT)
    # The delimiter whose rows hold a known header; Teams writes tabs, Zoom commas, and a
    # report saved again by a Danish Excel semicolons.
    errors: list[AttendanceError] = []
    for delimiter in sorted(DELIMITERS, key=text.count, reverse=True):
        rows = [(f"{label}:{line}", cells) for line, cells in csv_rows(text, delimiter)]
        try:
            return attendance_from_rows(rows, label)
        except AttendanceError as err:
            errors.append(err)
    # The error of a delimiter that found the report's header says more than "unknown".
    raise next((err for err in errors if err.header_found), errors[0])


def _sheet_rows(path: Path) -> Iterator[tuple[str, Sequence[str] | str]]:
    """The first sheet's rows of a workbook, as the registrant list's reader gives them
    (``workbook.read_sheet``: each row's ``label``, ``cells`` and ``problem``)."""
    from invitemail.inputs.workbook import read_sheet

    for row in read_sheet(path):
        yield str(row.label), (str(row.problem) if row.problem
                               else [str(cell) for cell in row.cells])


def attendance_from_rows(rows: Iterable[tuple[str, Sequence[str] | str]],
                         source: str) -> Attendance:
    """Who attended, from the report's rows. A row is (its position, its cells), or (its
    position, what is wrong with it) for a row that could not be read."""
    table: tuple[_Format, Mapping[str, int], str] | None = None
    attendance: Attendance | None = None
    seen_rows = False
    for where, cells in rows:
        if isinstance(cells, str):
            if table is not None:  # inside the table: a broken row is an error
                error = AttendanceError(f"{where}: {cells}", hint="fix the row, or export "
                                        "the report again")
                error.header_found = True
                raise error
            continue
        names = [_normal(c) for c in cells]
        if not any(names):
            table = None  # a blank line ends a section (Teams, Zoom's meeting report)
            continue
        seen_rows = True
        found = _header(names)
        if found is not None:
            table = (found, _columns(names, where, found), where)
            if attendance is None:
                attendance = Attendance(source, found.kind)
            continue
        if table is None or attendance is None:
            continue  # the preamble: a summary, a section's title
        if sum(1 for c in cells if c.strip()) == 1 and not any("@" in c for c in cells):
            table = None  # a section's title ("Panelist Details", "3. In-Meeting Activities")
            continue
        _take(attendance, table[0], table[1], where, cells)
    if not seen_rows:
        raise AttendanceError(f"{source}: is empty", hint=FORMATS_HINT)
    if attendance is None:
        raise AttendanceError(f"{source}: is not an attendance report invitemail knows: no "
                              "row names its columns as Zoom's or Teams' reports do "
                              "(Attended, User Email, Name (Original Name), First Join, ...)",
                              hint=FORMATS_HINT)
    return attendance


def _header(names: list[str]) -> _Format | None:
    present = set(names)
    for found in FORMATS:
        if all(need in present for need in found.needs):
            return found
    return None


def _columns(names: list[str], where: str, found: _Format) -> dict[str, int]:
    """The columns this module reads, by role, from a header row."""
    columns: dict[str, int] = {}
    name_at = next((names.index(n) for n in NAME_COLUMNS if n in names), None)
    if name_at is not None:
        columns["name"] = name_at
    # Zoom's meeting report written as one table repeats "User Email" (the host's, then the
    # participant's): the participant's is the one after the name.
    emails = [i for i, n in enumerate(names) if n in EMAIL_COLUMNS and n != "participantid(upn)"]
    after = [i for i in emails if name_at is not None and i > name_at]
    upn = [i for i, n in enumerate(names) if n == "participantid(upn)"]
    email_at = next(iter(after or emails or upn), None)
    if email_at is None:
        error = AttendanceError(
            f"{where}: the {found.kind} has no email column (Email, User Email); without the "
            "participants' addresses nobody can be matched to the registrant list",
            hint="export the report again with the email addresses (in Zoom: the attendee "
            "report with registration information; in Teams: the attendance report of the "
            "meeting's Attendance tab)")
        error.header_found = True
        raise error
    columns["email"] = email_at
    if upn and upn[0] != email_at:  # Teams: the sign-in name, where Email is left empty
        columns["upn"] = upn[0]
    firsts = [names.index(n) for n in ("firstname",) if n in names]
    lasts = [names.index(n) for n in ("lastname",) if n in names]
    if firsts:
        columns["first"] = firsts[0]
    if lasts:
        columns["last"] = lasts[0]
    for role, wanted in (("attended", (found.attended,)), ("minutes", found.minutes),
                         ("action", (found.action,))):
        at = next((names.index(n) for n in wanted if n is not None and n in names), None)
        if at is not None:
            columns[role] = at
    return columns


def _take(attendance: Attendance, found: _Format, columns: Mapping[str, int], where: str,
          cells: Sequence[str]) -> None:
    def cell(role: str) -> str:
        at = columns.get(role)
        return cells[at].strip() if at is not None and at < len(cells) else ""

    name = cell("name") or " ".join(p for p in (cell("first"), cell("last")) if p)
    address = cell("email") or cell("upn")
    key = _key(address)
    if key is None:
        attendance.no_address.append((where, name or "(no name)"))
        return
    attended = _attended(found, cell("attended"), cell("minutes"), cell("action"))
    person = attendance.people.get(key)
    if person is None:
        person = attendance.people[key] = Attendee(address, name, where)
    person.attended = person.attended or attended
    person.minutes += _minutes(cell("minutes"))


def _key(address: str) -> str | None:
    """The address as Registrant.key has it (lower case, normalised), or None for a cell
    that is no address (a guest without one, a phone caller, "--")."""
    if "@" not in address:
        return None
    try:
        return normalize_address(address, local_test=True).lower()
    except AddressError:
        return address.strip().lower()


def _attended(found: _Format, attended: str, minutes: str, action: str) -> bool:
    if found.attended is not None:
        said = attended.lower()
        if said in _YES:
            return True
        if said in _NO:
            return _minutes(minutes) > 0  # measured time wins (the module docstring says why)
        return _minutes(minutes) > 0
    if found.action is not None:
        return action.lower().startswith("joined") or not action
    return True  # the participants' lists hold those who were there


def _minutes(text: str) -> float:
    """``"42"``, ``"42.5"``, ``"1h 2m 3s"`` (Teams), ``"--"`` -> minutes."""
    text = text.strip()
    try:
        return max(float(text.replace(",", ".")), 0.0)
    except ValueError:
        pass
    parts: dict[str, float] = {unit: float(number) for number, unit in
                               re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text.lower())}
    return parts.get("h", 0.0) * 60 + parts.get("m", 0.0) + parts.get("s", 0.0) / 60
