"""The gallery's HTML: the page of one message (the HTML part in a sandboxed iframe, the
calendar event, the plain-text part, the headers) and the document frame every page shares.

Nothing on a page may load from anywhere: a Content-Security-Policy forbids external CSS,
fonts, images and requests, which also keeps a remote image in a template from loading while
previewing.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from urllib.parse import quote

from invitemail.campaign import Built
from invitemail.mime import ics
from invitemail.outputs.message_view import MessageView
from invitemail.outputs.preview import eml_name

INDEX = "index.html"

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

# Show the whole message: the iframe takes its document's height once loaded.
RESIZE_HANDLER = ("try { this.style.height = "
                  "(this.contentDocument.documentElement.scrollHeight + 4) + 'px'; } "
                  "catch (e) {}")


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def page_name(number: int, address: str) -> str:
    """The message page beside ``eml_name``'s file: ``00001-soren@example.org.html``."""
    return eml_name(number, address).removesuffix(".eml") + ".html"


def document(title: str, body: str, *, lang: str = "en") -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(lang)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # An empty icon, so the browser does not look for /favicon.ico.
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}"
    )


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
        return escape(url)
    return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(url)}</a>'


def _calendar_section(calendar: ics.CalendarSummary | None, zone: dt.tzinfo | None) -> str:
    if calendar is None:
        return '<p class="muted">No calendar event could be read from this message.</p>'
    join = calendar.url or calendar.location
    rows = [
        ("Title", escape(calendar.title)),
        ("Local time", escape(_when(calendar, zone))),
        ("Join link", _link(join) if join else '<span class="muted">(none)</span>'),
        ("Method", escape(" / ".join(filter(None, (calendar.method, calendar.status))))),
        ("Organizer", escape(calendar.organizer)),
        ("Attendee", escape(", ".join(calendar.attendees))),
        ("Sequence", escape("" if calendar.sequence is None else calendar.sequence)),
        ("UID", escape(calendar.uid)),
        ("Description", f"<pre>{escape(calendar.description)}</pre>"),
    ]
    items = "\n".join(f'<dt>{label}</dt><dd class="event-{label.lower().replace(" ", "-")}">'
                      f"{value}</dd>" for label, value in rows)
    return f'<dl class="event box">\n{items}\n</dl>'


def _warnings_box(warnings: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<div class="box warn" id="warnings"><ul>{items}</ul></div>' if items else ""


def message_page(built: Built, view: MessageView, *, number: int, eml: str,
                 zone: dt.tzinfo | None = None) -> str:
    """One message's page: the HTML as the recipient sees it, calendar, text, headers."""
    registrant = built.registrant
    who = f"{registrant.name} <{built.recipient}>" if registrant.name else built.recipient
    headers = "\n".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>"
                        for name, value in view.headers)
    frame = (f'<iframe class="message" id="message" title="The HTML part of the message" '
             f'sandbox="{IFRAME_SANDBOX}" referrerpolicy="no-referrer" '
             f'onload="{escape(RESIZE_HANDLER)}" srcdoc="{escape(view.html)}"></iframe>'
             if view.html else '<p class="muted">This message has no HTML part.</p>')
    body = f"""<nav><a href="{INDEX}">← All messages</a></nav>
<h1 id="subject">{escape(built.subject)}</h1>
<p class="muted">#{number} · to {escape(who)} · language {escape(registrant.language)} ·
<a href="{escape(quote(eml))}" download>{escape(eml)}</a></p>
{_warnings_box(view.warnings)}
<h2>As the recipient sees it</h2>
{frame}
<h2>Calendar event</h2>
{_calendar_section(view.calendar, zone) if built.calendar is not None else
 '<p class="muted">None: a follow-up carries no calendar event.</p>'}
<h2>Plain-text part</h2>
<pre class="box" id="text">{escape(view.text)}</pre>
<h2>Headers</h2>
<table class="list headers" id="headers">
{headers}
</table>
</body>
</html>
"""
    return document(f"{built.subject} – {built.recipient}", body, lang=registrant.language)
