"""One part of a rendered message (the text or the HTML) as the encoders get it: a Body.

A body is its text, whichever way the renderer made it. An encoder reads it through
:meth:`Body.segments`: the text cut into runs of lines, where a run that every body of the
same group holds in the same place (a skeleton's lines without a registrant's value) is a
:class:`SharedLines` object, the same for the whole group, on which the encoder may keep
its encoding of those lines. A body rendered in full is one segment, its whole text.

The encoding kept on a SharedLines is a function of its own text only, and lives and dies
with the skeleton that made it: nothing is looked up by an object's ``id()``, so no body
can be given another group's lines.
"""

from __future__ import annotations

from collections.abc import Sequence

# Where a registrant's value goes in ``Body.markup``, a marker starts with this private-use
# character, and ends with the next one.
SKELETON_MARK, SKELETON_MARK_END = "\ue000", "\ue001"


class SharedLines:
    """Complete lines (each ending in "\\n") that every body filled in from one skeleton
    holds at the same place; ``encodings`` is where an encoder keeps its encoding of them,
    under a name of its own."""

    __slots__ = ("encodings", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.encodings: dict[str, bytes] = {}


# A laid-out part: shared runs of lines, and lines holding values as (pieces, ended).
_Line = tuple[list[str | int], bool]
_Layout = list[SharedLines | _Line]


class PartLayout:
    """A skeleton's part: strings shared by its group and indexes into a registrant's
    values (``pieces``), and those pieces cut into lines once for the whole group."""

    __slots__ = ("_laid_out", "_layout", "pieces")

    def __init__(self, pieces: Sequence[str | int]) -> None:
        self.pieces = list(pieces)
        self._layout: _Layout | None = None
        self._laid_out = False

    def layout(self) -> _Layout | None:
        """The part's lines: each complete line without a value in a SharedLines (runs of
        them in one), each line holding a value as its pieces; None when a shared piece
        holds "\\r" (a line ending could then straddle a piece and a value)."""
        if not self._laid_out:
            self._layout = _lay_out(self.pieces)
            self._laid_out = True
        return self._layout


def _lay_out(pieces: list[str | int]) -> _Layout | None:
    if any(isinstance(p, str) and "\r" in p for p in pieces):
        return None
    layout: _Layout = []
    line: list[str | int] = []  # the pieces of the line being gathered

    def share(text: str) -> None:
        if layout and isinstance(layout[-1], SharedLines):
            layout[-1].text += text
        else:
            layout.append(SharedLines(text))

    for piece in pieces:
        if isinstance(piece, int) or "\n" not in piece:
            line.append(piece)
            continue
        first, *middle, last = piece.split("\n")
        line.append(first)
        if all(isinstance(p, str) for p in line):
            share("".join(line) + "\n")  # type: ignore[arg-type]
        else:
            layout.append((line, True))
        if middle:
            share("".join(m + "\n" for m in middle))
        line = [last] if last else []
    if line:
        layout.append((line, False))
    return layout


class Body:
    """One part's text, and how it was made (opaque to everyone but :meth:`segments`).

    ``markup``, for an HTML part filled in from a skeleton whose values hold no "<" or
    ">": the document with a marker (SKELETON_MARK, a number, SKELETON_MARK_END) where each
    value goes, the same for every message of the group, so the document's elements are the
    same in each (a value could still complete a comment's or a ``<style>`` block's
    delimiter with the text beside its marker: see mime/inline.py). None otherwise.
    """

    __slots__ = ("_layout", "_values", "markup", "text")

    def __init__(self, text: str, *, markup: str | None = None,
                 layout: PartLayout | None = None, values: Sequence[str] = ()) -> None:
        self.text = text
        self.markup = markup
        self._layout = layout
        self._values = values

    @classmethod
    def filled(cls, layout: PartLayout, values: Sequence[str], *,
               markup: str | None = None) -> Body:
        """The body ``layout``'s pieces make with ``values``."""
        text = "".join([p if isinstance(p, str) else values[p] for p in layout.pieces])
        return cls(text, markup=markup, layout=layout, values=values)

    def segments(self) -> list[str | SharedLines]:
        """The text, in order: SharedLines for runs of lines shared by the body's group,
        strings for the rest (a string is a line, or the whole text when the body was
        rendered in full or its lines could not be laid out)."""
        layout = self._layout.layout() if self._layout is not None else None
        if layout is None:
            return [self.text]
        values = self._values
        segments: list[str | SharedLines] = []
        for item in layout:
            if isinstance(item, SharedLines):
                segments.append(item)
                continue
            pieces, ended = item
            line = "".join([p if isinstance(p, str) else values[p] for p in pieces])
            segments.append(line + "\n" if ended else line)
        return segments
