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
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from invitemail.campaign import Built
from invitemail.mime import ics
from invitemail.outputs.files import PendingFile
from invitemail.outputs.lint import decoded_header, lint_message, parse_fast
from invitemail.outputs.preview import EmlWriter, eml_name

INDEX = "index.html"
SENT = "sent"  # journal.State.SENT as journal_states gives it

# Nothing may load from anywhere: inline styles and scripts only; the message's iframe is a
# srcdoc document (it inherits this policy, so the message cannot load anything either).
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "frame-src 'self' about: data:; img-src data:; form-action 'none'; base-uri 'none'")

# The iframe may not run scripts, submit forms or navigate the gallery; same-origin lets
# the gallery's own script read the message's height to show it whole; a click on a link
# opens a new tab, as in a mail client.
IFRAME_SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox"

STYLE = """
:root { color-scheme: light dark; --line: #c8ced6; --muted: #5d6670; --warn: #8a4b00;
  --warn-bg: #fff3cd; }
@media (prefers-color-scheme: dark) { :root { --line: #3d444d; --muted: #a0a8b0;
  --warn: #ffd27a; --warn-bg: #3b2f12; } }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Arial, sans-serif; margin: 0;
  padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
a { color: LinkText; }
.muted { color: var(--muted); }
table.list { border-collapse: collapse; width: 100%; }
table.list th, table.list td { text-align: left; vertical-align: top; padding: 5px 8px;
  border-bottom: 1px solid var(--line); }
table.list th { position: sticky; top: 0; background: Canvas; }
tr.warn td.warnings, .warnings li { color: var(--warn); }
td.state { white-space: nowrap; }
.box { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.box.warn { background: var(--warn-bg); color: var(--warn); }
#filter { font: inherit; padding: 6px 10px; width: min(36em, 100%); margin: 12px 0; }
iframe.message { display: block; width: 680px; max-width: 100%; height: 900px;
  border: 1px solid var(--line); border-radius: 6px; background: #fff; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
dl.event { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.event dt { font-weight: 600; }
dl.event dd { margin: 0; overflow-wrap: anywhere; }
table.headers td { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px;
  overflow-wrap: anywhere; }
nav { margin-bottom: 8px; }
"""

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

# Show the whole message: the iframe takes its document's height once loaded.
RESIZE_HANDLER = ("try { this.style.height = "
                  "(this.contentDocument.documentElement.scrollHeight + 4) + 'px'; } "
                  "catch (e) {}")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def page_name(number: int, address: str) -> str:
    """The message page beside ``eml_name``'s file: ``00001-soren@example.org.html``."""
    return eml_name(number, address).removesuffix(".eml") + ".html"


def _document(title: str, body: str, *, lang: str = "en") -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{_e(lang)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # An empty icon, so the browser does not look for /favicon.ico.
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}"
    )


# -- reading a message back ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageView:
    """What the gallery shows of one message, read from its bytes."""

    headers: list[tuple[str, str]]
    text: str
    html: str
    calendar: ics.CalendarSummary | None
    warnings: list[str]


def read_message(data: bytes, *, with_calendar: bool = True) -> MessageView:
    """Parse a message as a mail client would: its parts, headers and calendar event
    (``with_calendar``: it should have one; a follow-up has none)."""
    parsed = parse_fast(data)
    warnings = lint_message(data, parsed)
    headers = [(name, decoded_header(value)) for name, value in parsed.items()]
    text, html_part = _body(parsed, "plain", warnings), _body(parsed, "html", warnings)
    calendar = None
    for part in parsed.walk():
        if part.get_content_type() == "text/calendar":
            try:
                payload = part.get_payload(decode=True)
                calendar = ics.describe_ics(payload if isinstance(payload, bytes) else b"")
            except (ValueError, KeyError, TypeError) as err:
                warnings.append(f"the calendar part cannot be read: {err}")
            break
    else:
        if with_calendar:
            warnings.append("the message has no calendar part")
    return MessageView(headers, text, html_part, calendar, warnings)


def view_of(built: Built) -> MessageView:
    """:func:`read_message` of a built message (``Campaign.check``'s ``inspect``)."""
    return read_message(built.data, with_calendar=built.calendar is not None)


def _body(parsed: Message, subtype: str, warnings: list[str]) -> str:
    part = next((p for p in parsed.walk() if p.get_content_type() == f"text/{subtype}"
                 and p.get("Content-Disposition") is None), None)
    if part is None:
        warnings.append(f"the message has no text/{subtype} part")
        return ""
    try:
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        content = raw.decode(part.get_content_charset() or "us-ascii")
    except (LookupError, UnicodeError) as err:
        warnings.append(f"the text/{subtype} part cannot be decoded: {err}")
        return ""
    return content.replace("\r\n", "\n")  # the wire's CRLF; a page wants plain lines


# -- the pages ----------------------------------------------------------------------------


def _when(calendar: ics.CalendarSummary, zone: dt.tzinfo | None) -> str:
    if calendar.start is None:
        return "(no start time)"
    start = calendar.start.astimezone(zone)
    end = calendar.end.astimezone(zone) if calendar.end is not None else None
    until = ""
    if end is not None:
        until = f"–{end:%H:%M}" if end.date() == start.date() else f" – {end:%a %Y-%m-%d %H:%M}"
    name = getattr(zone, "key", None) or start.tzname() or ""
    utc = calendar.start.astimezone(dt.UTC)
    parts = (f"{start:%a %Y-%m-%d %H:%M}{until}", name, f"({utc:%H:%M} UTC)")
    return " ".join(part for part in parts if part)


def _link(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        return _e(url)
    return f'<a href="{_e(url)}" target="_blank" rel="noopener noreferrer">{_e(url)}</a>'


def _calendar_section(calendar: ics.CalendarSummary | None, zone: dt.tzinfo | None) -> str:
    if calendar is None:
        return '<p class="muted">No calendar event could be read from this message.</p>'
    join = calendar.url or calendar.location
    rows = [
        ("Title", _e(calendar.title)),
        ("Local time", _e(_when(calendar, zone))),
        ("Join link", _link(join) if join else '<span class="muted">(none)</span>'),
        ("Method", _e(" / ".join(filter(None, (calendar.method, calendar.status))))),
        ("Organizer", _e(calendar.organizer)),
        ("Attendee", _e(", ".join(calendar.attendees))),
        ("Sequence", _e("" if calendar.sequence is None else calendar.sequence)),
        ("UID", _e(calendar.uid)),
        ("Description", f"<pre>{_e(calendar.description)}</pre>"),
    ]
    items = "\n".join(f'<dt>{label}</dt><dd class="event-{label.lower().replace(" ", "-")}">'
                      f"{value}</dd>" for label, value in rows)
    return f'<dl class="event box">\n{items}\n</dl>'


def _warnings_box(warnings: Iterable[str]) -> str:
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f'<div class="box warn" id="warnings"><ul>{items}</ul></div>' if items else ""


def message_page(built: Built, view: MessageView, *, number: int, eml: str,
                 zone: dt.tzinfo | None = None) -> str:
    """One message's page: the HTML as the recipient sees it, calendar, text, headers."""
    registrant = built.registrant
    who = f"{registrant.name} <{built.recipient}>" if registrant.name else built.recipient
    headers = "\n".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>"
                        for name, value in view.headers)
    frame = (f'<iframe class="message" id="message" title="The HTML part of the message" '
             f'sandbox="{IFRAME_SANDBOX}" referrerpolicy="no-referrer" '
             f'onload="{_e(RESIZE_HANDLER)}" srcdoc="{_e(view.html)}"></iframe>'
             if view.html else '<p class="muted">This message has no HTML part.</p>')
    body = f"""<nav><a href="{INDEX}">← All messages</a></nav>
<h1 id="subject">{_e(built.subject)}</h1>
<p class="muted">#{number} · to {_e(who)} · language {_e(registrant.language)} ·
<a href="{_e(quote(eml))}" download>{_e(eml)}</a></p>
{_warnings_box(view.warnings)}
<h2>As the recipient sees it</h2>
{frame}
<h2>Calendar event</h2>
{_calendar_section(view.calendar, zone) if built.calendar is not None else
 '<p class="muted">None: a follow-up carries no calendar event.</p>'}
<h2>Plain-text part</h2>
<pre class="box" id="text">{_e(view.text)}</pre>
<h2>Headers</h2>
<table class="list headers" id="headers">
{headers}
</table>
</body>
</html>
"""
    return _document(f"{built.subject} – {built.recipient}", body, lang=registrant.language)


# -- the writer ---------------------------------------------------------------------------


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
                    f'<p id="summary">{_e(self._summary())}</p>\n'
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
        body = f"""<h1>{_e(title)}</h1>
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
        return _document(title, body)

    def _row(self, built: Built, number: int, page: str, warnings: list[str]) -> str:
        registrant = built.registrant
        href = _e(quote(page))
        state = ""
        if self.journal_states is not None:
            found = self.journal_states.get(registrant.key)
            self.sent += found == SENT
            state = (f'<td class="state">{_e(found)}</td>' if found
                     else '<td class="state muted">not sent</td>')
        cls = ' class="warn"' if warnings else ""
        return (f"<tr{cls}><td>{number}</td>"
                f'<td><a href="{href}">{_e(registrant.name or "(no name)")}</a></td>'
                f'<td><a href="{href}">{_e(built.recipient)}</a></td>'
                f"<td>{_e(registrant.language)}</td><td>{_e(built.subject)}</td>{state}"
                f'<td class="warnings">{_e("; ".join(warnings))}</td></tr>\n')
