"""One pass over a registrant list (a CSV file or a sheet): every row counted once, as a
registrant, a duplicate, a problem or an ignored repeated header, and the first occurrence of
each address given on. Two rows with one address and different personal join links are a
problem each, and the address gets nothing. No csv here: the rows come from a
:class:`~invitemail.inputs.sources.RegistrantSource`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from invitemail.errors import Problem
from invitemail.inputs.cells import Registrant
from invitemail.inputs.sources import RegistrantSource


@dataclass
class Scan:
    """The result of reading every row once: counts and problems, not the rows.

    Every non-blank row after the header is counted once in ``rows``, and once in exactly
    one of ``valid`` (gets a message), ``duplicates``, ``invalid`` (a problem: never sent)
    and ``ignored`` (a repeated header row).
    """

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    valid: int = 0
    duplicates: int = 0
    invalid: int = 0
    ignored: int = 0
    languages: set[str] = field(default_factory=set)
    # The address and line of each valid, unique registrant (its key is the address in lower
    # case): what the journal needs, so a send run does not parse the file again to learn it.
    # Two flat arrays rather than a list of pairs: a third of the memory for 100,000 rows.
    addresses: list[str] = field(default_factory=list)
    lines: array[int] = field(default_factory=lambda: array("q"))
    left_out: set[str] = field(default_factory=set)  # keys that left the identities

    @property
    def identities(self) -> Iterator[tuple[str, int]]:
        """(address, line) of each valid, unique registrant, in the file's order."""
        return zip(self.addresses, self.lines, strict=True)

    def forget_identities(self) -> None:
        """Free the addresses and lines (a send run has registered them)."""
        self.addresses, self.lines = [], array("q")

    def leave_out(self, keys: Iterable[str]) -> None:
        """Valid registrants that turned out not to get a message after all: they count as
        rows with a problem (the caller has reported it), and leave the identities."""
        keys = set(keys) - self.left_out
        if not keys:
            return
        self.left_out |= keys
        kept = [(a, n) for a, n in self.identities if a.lower() not in keys]
        self.valid -= len(self.addresses) - len(kept)
        self.invalid += len(self.addresses) - len(kept)
        self.addresses = [a for a, _ in kept]
        self.lines = array("q", (n for _, n in kept))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]


def unique_registrants(source: RegistrantSource, scan: Scan | None = None) -> Iterator[Registrant]:
    """The valid registrants, first occurrence of each address only.

    With ``scan``, problems, duplicates and counts are recorded in it as rows go by. Rows
    that share an address (in any case) and differ in the personal join link are a problem
    each: there is no telling which link is the registrant's, so the address gets nothing
    (and a registrant yielded before its conflict came to light leaves ``scan`` again).
    Without ``scan``, the addresses an earlier pass left out (``source.left_out``) are
    skipped.
    """
    if scan is None:
        seen: set[str] = set()
        left_out = source.left_out
        for _, registrant, _problems in source.checked_rows():
            if registrant is not None and (key := registrant.key) not in seen:
                seen.add(key)
                if key not in left_out:
                    yield registrant
        return
    first_lines: dict[str, int] = {}
    links: dict[str, str] = {}  # the first row's personal join link, when it has one
    conflicting: set[str] = set()
    label, word = source.label, source.row_word
    for line, registrant, problems in source.checked_rows():
        scan.rows += 1
        scan.problems.extend(problems)
        if registrant is None:
            if any(not p.warning for p in problems):
                scan.invalid += 1
            else:
                scan.ignored += 1
            continue
        key = registrant.key
        first = first_lines.get(key)
        if first is None:
            first_lines[key] = line
            if registrant.join_url:
                links[key] = registrant.join_url
            scan.valid += 1
            scan.languages.add(registrant.language)
            scan.addresses.append(registrant.email)
            scan.lines.append(line)
            yield registrant
        elif registrant.join_url == links.get(key, ""):
            scan.duplicates += 1
            scan.problems.append(Problem(label, line, f"{registrant.email} is a duplicate of "
                                         f"{word} {first}; it gets one message", warning=True))
        else:
            scan.invalid += 1
            scan.problems.append(_conflict(label, word, line, registrant.email, first))
            if key not in conflicting:
                conflicting.add(key)
                scan.problems.append(_conflict(label, word, first, key, line))
    if conflicting:
        scan.leave_out(conflicting)
        source.left_out |= conflicting



def _conflict(label: str, word: str, line: int, email: str, other: int) -> Problem:
    return Problem(label, line, f"{email} is also on {word} {other}, with another personal "
                   "join link: keep the row with the right link and delete the other (neither "
                   "gets a message until then)")
