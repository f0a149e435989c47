"""One row's cells -> a Registrant, or what is wrong with it. No csv here (registrants.py
finds the rows); this is what each cell must be: an address, a name that can go in a header,
a language, a web link, a time zone, and text that is neither binary nor garbled.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from invitemail.errors import Problem, ProblemsError
from invitemail.inputs.addresses import AddressError, normalize_address
from invitemail.inputs.decoding import BAD_BYTE, describe_bad_bytes, mojibake
from invitemail.inputs.keys import LANGUAGES, LINE_BREAKS

# Header names as exports spell them, after lower-casing and dropping spaces, "_", "-", ".".
HEADER_ALIASES: Mapping[str, str] = {
    **dict.fromkeys(("email", "emailaddress", "mail", "emailadresse", "mailadresse",
                     "epost"), "email"),
    **dict.fromkeys(("name", "navn", "fullname", "fuldenavn", "fuldtnavn", "deltager"), "name"),
    **dict.fromkeys(("firstname", "fornavn", "givenname"), "first_name"),
    **dict.fromkeys(("lastname", "efternavn", "surname", "familyname"), "last_name"),
    **dict.fromkeys(("language", "sprog", "lang"), "language"),
    **dict.fromkeys(("joinurl", "joinlink", "personallink", "personligtlink", "deltagerlink"),
                    "join_url"),
    **dict.fromkeys(("timezone", "tidszone", "tz"), "timezone"),
}
LANGUAGE_ALIASES: Mapping[str, str] = {
    "da": "da", "dk": "da", "dansk": "da", "danish": "da", "en": "en", "engelsk": "en",
    "english": "en", "uk": "en", "gb": "en",
}


@dataclass(frozen=True, slots=True)
class Registrant:
    """One valid registrant: what the templates and the message need."""

    line: int
    email: str
    name: str
    first_name: str
    last_name: str
    language: str
    join_url: str
    timezone: str
    fields: Mapping[str, str] = field(default_factory=dict)  # every column, by its key

    def __reduce__(self) -> tuple[type[Registrant], tuple[object, ...]]:
        # The constructor and its arguments: a frozen slots dataclass otherwise pickles
        # through dataclasses' __getstate__/__setstate__, in Python (a worker sends one
        # with every message it builds).
        return Registrant, (self.line, self.email, self.name, self.first_name,
                            self.last_name, self.language, self.join_url, self.timezone,
                            self.fields)

    @property
    def key(self) -> str:
        """The identity of a registrant: the address, case-insensitive (product.md)."""
        return registrant_key(self.email)

    def as_context(self) -> dict[str, str]:
        """What a template sees as ``registrant``: every column, then the known names."""
        context = dict(self.fields)
        context.update(email=self.email, name=self.name, first_name=self.first_name,
                       last_name=self.last_name, language=self.language,
                       join_url=self.join_url, timezone=self.timezone)
        return context


def registrant_key(email: str) -> str:
    """The identity of the registrant at ``email`` (:attr:`Registrant.key`): the address,
    case-insensitive, for the addresses a scan keeps without their rows."""
    return email if email.islower() else email.lower()  # the same string when it can be


def column_key(header: str) -> str:
    """``"Join URL"`` -> ``join_url``: the name a column has in templates."""
    return re.sub(r"[^0-9a-zæøå]+", "_", header.strip().lower()).strip("_")


def header_alias(header: str) -> str | None:
    return HEADER_ALIASES.get(re.sub(r"[\s_.\-]+", "", header.strip().lower()))


def header_columns(label: str, header: list[str], line: int, run_together: str
                   ) -> dict[str, int]:
    """Where each known column is: its canonical name (email, name, ...) or its key ->
    index. Raises :class:`ProblemsError` when two columns mean the same or none holds
    the addresses (``run_together``: what to do when the header looks like one cell)."""
    columns: dict[str, int] = {}
    problems: list[Problem] = []
    for index, name in enumerate(header):
        canonical = header_alias(name) or column_key(name)
        if not canonical:
            continue
        if canonical in columns:
            other = header[columns[canonical]]
            problems.append(Problem(label, line, f"column {name.strip()!r} (column "
                                    f"{index + 1}) means the same as {other.strip()!r} (column "
                                    f"{columns[canonical] + 1}); keep one"))
            continue
        columns[canonical] = index
    if "email" not in columns:
        shown = ", ".join(repr(h.strip()) for h in header[:8])
        shown += ", ..." if len(header) > 8 else ""
        problems.append(Problem(label, line, f"has no email column (the header has {shown})"))
        raise ProblemsError(problems, hint="name the column with the addresses Email or "
                            f"E-mail; if the header looks run together, {run_together}")
    if problems:
        raise ProblemsError(problems)
    return columns


@dataclass(frozen=True)
class RowLayout:
    """What reading a row needs to know of its file."""

    label: str  # the file, for problems
    header: list[str]
    columns: Mapping[str, int]  # canonical name or column key -> index
    field_keys: list[tuple[int, str]]  # (index, template key) of every named column
    default_language: str
    local_test: bool = False  # sending through a local test server: .test etc. allowed


def check_row(layout: RowLayout, line: int, cells: list[str]
              ) -> tuple[Registrant | None, list[Problem]] | None:
    """One record's cells as a Registrant and its warnings, or None and its problems (or
    its warning: a repeated header row); None for a blank row."""
    if not any(cell.strip() for cell in cells):
        return None  # a blank line or a row of empty cells
    label = layout.label

    def refused(message: str) -> tuple[None, list[Problem]]:
        return None, [Problem(label, line, message)]

    if [c.strip() for c in cells] == [h.strip() for h in layout.header]:
        return None, [Problem(label, line, "repeats the header row", warning=True)]
    if len(cells) != len(layout.header):
        few = "few" if len(cells) < len(layout.header) else "many"
        return refused(f"has {len(cells)} cells, the header has {len(layout.header)}: too "
                       f"{few}; is a delimiter or quote missing?")
    joined = "\t".join(cells)
    if "\x00" in joined:
        return refused("contains a NUL character; delete it, or export the list again")
    if BAD_BYTE.search(joined):
        bad = next(c for c in cells if BAD_BYTE.search(c))
        return refused(f"is not UTF-8 here ({describe_bad_bytes(bad)}), though the rest "
                       "of the file is: retype this row's letters, or export the list "
                       "again as CSV UTF-8")
    control = _control_character(cells, layout.header, layout.columns)
    if control is not None:
        return refused(control)

    def cell(name: str) -> str:
        index = layout.columns.get(name)
        return cells[index].strip() if index is not None else ""

    problems: list[Problem] = []
    raw_email = cell("email")
    email = ""
    if not LINE_BREAKS.isdisjoint(raw_email):
        problems.append(Problem(label, line, "the address contains a line break"))
    else:
        try:
            email = normalize_address(raw_email, local_test=layout.local_test)
        except AddressError as err:
            problems.append(Problem(label, line, f"{raw_email!r} is not a valid address: "
                                    f"{err}" if raw_email else "the address is empty"))
    # A tab inside a name (a pasted TSV row) is a space to the reader; headers and the
    # calendar's CN would each treat it differently.
    full, first, last = (cell(key).replace("\t", " ")
                         for key in ("name", "first_name", "last_name"))
    name = full or " ".join(part for part in (first, last) if part)
    for what, value in (("name", full), ("first name", first), ("last name", last)):
        if not LINE_BREAKS.isdisjoint(value):
            problems.append(Problem(label, line, f"the {what} contains a line break; it "
                                    "would reach the To: header"))
    language = layout.default_language
    if raw := cell("language"):
        found = LANGUAGE_ALIASES.get(raw.lower().split("-")[0].split("_")[0])
        if found is None:
            problems.append(Problem(label, line, f"language {raw!r} is not supported; use "
                                    + " or ".join(LANGUAGES)))
        else:
            language = found
    join_url = cell("join_url")
    if join_url:
        parts = urlsplit(join_url)
        # urlsplit drops tabs and line breaks silently; a link with any is broken.
        if parts.scheme not in ("http", "https") or not parts.netloc or any(
                c.isspace() for c in join_url):
            problems.append(Problem(label, line, f"join link {join_url!r} is not a web "
                                    "address"))
        elif parts.scheme != "https":
            problems.append(Problem(label, line, f"join link {join_url} is not https",
                                    warning=True))
    timezone = cell("timezone")
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(Problem(label, line, f"time zone {timezone!r} is not known; use "
                                    'an IANA name such as "America/New_York"'))
    if any(not p.warning for p in problems):
        return None, problems
    garbled = _garbled(cells, layout.header)
    if garbled is not None:
        problems.append(Problem(label, line, garbled, warning=True))
    fields = {key: cells[i].strip() for i, key in layout.field_keys}
    return Registrant(line=line, email=email, name=name, first_name=first, last_name=last,
                      language=language, join_url=join_url, timezone=timezone,
                      fields=fields), problems


def _garbled(cells: list[str], header: list[str]) -> str | None:
    """A warning when a cell looks like UTF-8 that was read as cp1252 before it reached the
    file (``SÃ¸ren``), else None."""
    for index, cell in enumerate(cells):
        meant = mojibake(cell)
        if meant is not None:
            column = header[index].strip()
            guess = f"; it probably said {meant.strip()!r}" if meant != cell else ""
            return (f"{cell.strip()!r} (column {column!r}) looks garbled: UTF-8 read as "
                    f"Windows-1252 somewhere before this file{guess}; correct it in the file")
    return None


# Cells that go into the To: header (and the calendar's ATTENDEE): only printable text there.
_HEADER_FIELDS = ("email", "name", "first_name", "last_name")


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Cc but tab, LF, CR


def _control_character(cells: list[str], header: list[str],
                       columns: Mapping[str, int]) -> str | None:
    """The problem with a row that holds a control character, or None.

    A line break in a cell is normal (a note over two lines) except in the fields that reach
    a header, which the caller reports as a line break. Any other control character (a bell,
    an escape, a vertical tab) is never meant: it is garbage from a broken export, and some
    of them start a new line for some readers, so the row is refused.
    """
    if not _CONTROL.search("\t".join(cells)):
        return None  # the common case, found at C speed
    header_cells = {columns[name] for name in _HEADER_FIELDS if name in columns}
    for index, cell in enumerate(cells):
        for char in cell:
            if char in "\t\n\r" or unicodedata.category(char) != "Cc":
                continue
            if index in header_cells and char in LINE_BREAKS:
                break  # reported as a line break in that field
            column = header[index].strip() if index < len(header) else str(index + 1)
            return (f"column {column!r} contains a control character (U+{ord(char):04X}); "
                    "delete it, or export the list again")
    return None
