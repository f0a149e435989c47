"""`preview --out DIR`: an HTML gallery beside the .eml files, to look at before sending.

``index.html`` lists every registrant (name, address, language, subject, journal state,
warnings) with a filter box; each row opens the message's own page: the HTML part as the
recipient sees it (in a sandboxed iframe), the calendar event, the plain-text part and the
headers. Everything shown is read back from the message's bytes, so the gallery shows what
would be sent, not what the templates meant to say.

The pages work from the file system: no server, and no request of any kind (no external
CSS, fonts or images; a Content-Security-Policy forbids them, which also keeps a remote
image in a template from loading while previewing). Writing streams: each message's page is
written when the message is built, and the index's rows go to the file as they come, so
100,000 registrants cost no more memory than one. Every file goes through files.py: 0600,
never through a link (a link at a page's name is replaced, its target left alone).

This module writes; gallery_pages.py has the pages' HTML, message_view.py reads a message
back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from invitemail.campaign import Built
from invitemail.outputs.files import PendingFile
from invitemail.outputs.gallery_pages import CSP, INDEX, document, escape, message_page, page_name
from invitemail.outputs.message_view import MessageView, read_message, view_of
from invitemail.outputs.preview import EmlWriter, eml_name

# The pages and the message read back have modules of their own; the names are the
# gallery's, so they are importable here.
__all__ = ["CSP", "INDEX", "GalleryWriter", "MessageView", "message_page", "page_name",
           "read_message", "view_of"]

SENT = "sent"  # journal.State.SENT as journal_states gives it

# The filter box: every word typed must occur in the row (case and accents ignored).
FILTER_SCRIPT = """
const box = document.getElementById("filter");
const shown = document.getElementById("shown");
const fold = (s) => s.normalize("NFD").replace(/[\\u0300-\\u036f]/g, "").toLowerCase();
const rows = Array.from(document.querySelectorAll("#messages tbody tr"));
const texts = rows.map((row) => fold(row.textContent));
function applyFilter() {
  const words = fold(box.value).split(/\\s+/).filter(Boolean);
  let count = 0;
  rows.forEach((row, i) => {
    const match = words.every((word) => texts[i].includes(word));
    row.hidden = !match;
    if (match) count += 1;
  });
  shown.textContent = `${count} of ${rows.length} shown`;
}
box.addEventListener("input", applyFilter);
applyFilter();
"""


class GalleryWriter:
    """Writes each built message's .eml file and page as it comes, and the index at the end.

    Use it as ``Campaign.check``'s ``on_message`` callback, then :meth:`close` (or use it as a
    context manager). ``journal_states`` maps a registrant's key (the lower-cased address)
    to its state in the send journal; the index gets a "Journal" column when it is given.
    ``zone`` is the time zone the calendar event's time is shown in (the event's).
    """

    def __init__(self, folder: Path, journal_states: Mapping[str, str] | None = None, *,
                 title: str = "Preview", zone: dt.tzinfo | None = None) -> None:
        self.folder = folder
        self.journal_states = journal_states
        self.zone = zone
        self.eml = EmlWriter(folder)
        self.with_warnings = 0
        self.duplicates = 0  # rows skipped as duplicates: each one a warning (see skipped)
        self.sent = 0  # rows the journal says were sent
        self.index = folder / INDEX
        # Rows go to a temporary file that becomes index.html once the table is complete, so
        # an interrupted run never leaves a gallery that looks whole.
        self._index: PendingFile | None = None
        try:
            self._index = self.eml.out.stream(INDEX, newline="\n")
            self._index.write(self._index_head(title))
        except BaseException:
            self.abandon()
            raise

    @property
    def count(self) -> int:
        return self.eml.count

    def skipped(self, duplicates: int) -> None:
        """Rows of the list that got no message being duplicates of an earlier row: each
        counts as a warning in the index's summary."""
        self.duplicates += duplicates

    def __enter__(self) -> GalleryWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def __call__(self, built: Built, view: MessageView | None = None) -> None:
        """Write one message; ``view`` is :func:`view_of` ``built`` when it was read back
        already (in the worker that built it)."""
        if self._index is None:
            raise ValueError("the gallery is closed")
        self.eml(built)
        number = self.eml.count
        eml = eml_name(number, built.recipient)
        page = page_name(number, built.recipient)
        if view is None:
            view = read_message(built.data)
        # Not synced one by one, as the .eml files (preview.py says why); index.html is.
        self.eml.out.write(page, message_page(built, view, number=number, eml=eml,
                                              zone=self.zone), durable=False)
        if view.warnings:
            self.with_warnings += 1
        self._index.write(self._row(built, number, page, view.warnings))

    def close(self) -> Path:
        """Finish index.html; returns its path."""
        if self._index is not None:
            index, self._index = self._index, None
            try:
                index.write(
                    "</tbody>\n</table>\n"
                    f'<p id="summary">{escape(self._summary())}</p>\n'
                    f"<script>{FILTER_SCRIPT}</script>\n</body>\n</html>\n")
                index.commit()
            finally:
                index.discard()  # nothing once committed
                self.eml.close()
        return self.index

    def abandon(self) -> None:
        """Stop without an index (the run failed); the pages written so far stay."""
        index, self._index = self._index, None
        if index is not None:
            index.discard()
        self.eml.close()

    def _summary(self) -> str:
        count, duplicates = self.count, self.duplicates
        warned = self.with_warnings + duplicates
        parts = [f"{count} message{'s' if count != 1 else ''}",
                 f"{warned} with warnings" + (
                     f" ({duplicates} duplicate row{'s' if duplicates != 1 else ''} skipped)"
                     if duplicates else "")]
        if self.journal_states is not None:
            parts.append(f"{self.sent} of these sent (the Journal column says which)"
                         if self.sent else "none of these sent")
        return "; ".join(parts) + "."

    def _index_head(self, title: str) -> str:
        journal = "<th>Journal</th>" if self.journal_states is not None else ""
        # The heading is written before the rows: it can only know whether the journal holds
        # any sent message; the summary under the table counts the rows that were.
        journal_sent = sum(1 for state in (self.journal_states or {}).values() if state == SENT)
        if journal_sent:
            sent = (f"The send journal records {journal_sent} message"
                    f"{'s' if journal_sent != 1 else ''} of this kind as sent: the Journal "
                    "column says which rows, the summary under the table how many.")
        else:
            sent = "Nothing here has been sent."
        body = f"""<h1>{escape(title)}</h1>
<p class="muted" id="heading">What each registrant will receive. {sent} The pages load nothing
from the network. Each row opens the message.</p>
<label for="filter">Filter</label>
<input id="filter" type="search" autocomplete="off" autofocus
 placeholder="name, address, language, subject, state …">
<span id="shown" class="muted"></span>
<table class="list" id="messages">
<thead><tr><th>#</th><th>Name</th><th>Address</th><th>Language</th><th>Subject</th>{journal}\
<th>Warnings</th></tr></thead>
<tbody>
"""
        return document(title, body)

    def _row(self, built: Built, number: int, page: str, warnings: list[str]) -> str:
        registrant = built.registrant
        href = escape(quote(page))
        state = ""
        if self.journal_states is not None:
            found = self.journal_states.get(registrant.key)
            self.sent += found == SENT
            state = (f'<td class="state">{escape(found)}</td>' if found
                     else '<td class="state muted">not sent</td>')
        cls = ' class="warn"' if warnings else ""
        return (f"<tr{cls}><td>{number}</td>"
                f'<td><a href="{href}">{escape(registrant.name or "(no name)")}</a></td>'
                f'<td><a href="{href}">{escape(built.recipient)}</a></td>'
                f"<td>{escape(registrant.language)}</td><td>{escape(built.subject)}</td>{state}"
                f'<td class="warnings">{escape("; ".join(warnings))}</td></tr>\n')
