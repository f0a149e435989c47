"""The registrants `check` read, kept for the pass that builds the messages.

`send` reads the registrant list twice: `check` reads every row (and renders every message)
before anything is sent, then the sending reads the rows again to build the messages. For a
list of up to :data:`KEEP_ROWS` lines the registrants the check yielded are kept (about
0.6 KB each: at most about 12 MB) and the second pass takes them from memory instead of
parsing and checking every row again; a longer list is read again, so memory stays flat.

What the second pass gets is what :func:`~invitemail.inputs.registrants.unique_registrants` gives
without a scan: the first row of each address, in the file's order, without the addresses
a pass left out (``source.left_out``, which the check fills when it finds rows of one
address that disagree, or a message that fails). The kept list holds the first row of each
address (the check's ``unique_registrants`` with a scan yields exactly those, in order) and
is filtered by ``left_out`` when it is replayed, so both give the same registrants; the
file's text is read once, so both read the same rows. Kept only when the check's pass went
through the whole list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from invitemail.inputs.registrants import Registrant, unique_registrants
from invitemail.inputs.sources import RegistrantSource

KEEP_ROWS = 20_000  # lines of the list up to which the check's registrants are kept

__all__ = ["KEEP_ROWS", "KeptRows"]


class KeptRows:
    """The registrants of one source, once a full pass has yielded them."""

    def __init__(self, source: RegistrantSource) -> None:
        self.source = source
        self.rows: list[Registrant] | None = None

    def keep(self, registrants: Iterable[Registrant]) -> Iterator[Registrant]:
        """``registrants`` as they come (the check's first rows of each address), kept
        when the list is short enough and the pass reaches its end."""
        if self.source.rows_estimate > KEEP_ROWS:
            yield from registrants
            return
        kept: list[Registrant] = []
        for registrant in registrants:
            kept.append(registrant)
            yield registrant
        self.rows = kept

    def registrants(self) -> Iterator[Registrant]:
        """What ``unique_registrants(source)`` gives: from memory when kept."""
        if self.rows is None:
            yield from unique_registrants(self.source)
            return
        left_out = self.source.left_out
        for registrant in self.rows:
            if registrant.key not in left_out:
                yield registrant
