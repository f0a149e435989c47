"""The preview gallery's files: index.html, one page per message, read back without a browser.

tests/test_browser.py opens the same gallery in Chromium; here the HTML is parsed with the
standard library, so these run everywhere and fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import html
import tracemalloc
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from invitemail.campaign import Built, Campaign
from invitemail.errors import InvitemailError
from invitemail.inputs.registrants import unique_registrants
from invitemail.mime.ics import describe_ics
from invitemail.outputs.gallery import CSP, INDEX, GalleryWriter, page_name, read_message
from invitemail.outputs.lint import parse_message
from support.event import NOW, write_event

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "djoef-webinar"
EXAMPLE_NOW = dt.datetime(2031, 12, 1, 9, 0, tzinfo=dt.UTC)  # before the example's event
PERSONAL_LINK = "https://zoom.us/w/84212345678?tk=EXAMPLE-personal-token-Soeren.DQMAAAAB"


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def one(self, tag: str, **wanted: str) -> dict[str, str]:
        found = [a for a in self.all(tag) if all(a.get(k) == v for k, v in wanted.items())]
        assert len(found) == 1, (tag, wanted, found)
        return found[0]


def build_gallery(event: Path, out: Path, *, now: dt.datetime,
                  states: dict[str, str] | None = None) -> tuple[Campaign, GalleryWriter]:
    campaign = Campaign.open(event, now=now)
    with GalleryWriter(out, states, title="Persondata i praksis: invitation",
                       zone=campaign.config.event.zone) as writer:
        report = campaign.check(on_message=writer)
    assert report.ok, report.problems
    return campaign, writer


@pytest.fixture(scope="module")
def example_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gallery")
    build_gallery(EXAMPLE, out, now=EXAMPLE_NOW,
                  states={"soren.aero@example.org": "sent", "ase.moller@example.org": "failed"})
    return out


def index_rows(folder: Path) -> list[list[str]]:
    """The index's table body as cell texts."""
    page = (folder / INDEX).read_text(encoding="utf-8")
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = []
    for row in body.strip().splitlines():
        cells = row.split("<td")[1:]
        rows.append(["".join(Elements("<td" + cell).text).strip() for cell in cells])
    return rows


def test_gallery_writes_an_eml_file_and_a_page_per_message_and_one_index(
        example_gallery: Path) -> None:
    emls = sorted(p.name for p in example_gallery.glob("*.eml"))
    pages = sorted(p.name for p in example_gallery.glob("0*.html"))
    assert len(emls) == 19  # 20 rows, one duplicate address
    assert pages == [name.removesuffix(".eml") + ".html" for name in emls]
    assert pages[0] == "00001-soren.aero@example.org.html"
    assert (example_gallery / INDEX).is_file()
    assert not list(example_gallery.glob(".*"))  # no temporary file left behind


def test_gallery_index_lists_every_registrant_with_its_journal_state(
        example_gallery: Path) -> None:
    rows = index_rows(example_gallery)
    assert len(rows) == 19
    assert rows[0] == ["1", "Søren Kierkegaard Ærø", "soren.aero@example.org", "da",
                       "Invitation: Persondata i praksis – torsdag den 11. december 2031 "
                       "kl. 14.00", "sent", ""]
    assert rows[1][5] == "failed"
    assert rows[2][5] == "not sent"
    english = [row for row in rows if row[3] == "en"]
    assert [row[2] for row in english] == ["sarah.thompson@example.com",
                                           "lukas.becker@example.com",
                                           "priya.raman@example.com", "emma.walsh@example.com"]
    assert all(row[4].startswith("Invitation: Persondata i praksis – Thursday")
               for row in english)
    page = (example_gallery / INDEX).read_text(encoding="utf-8")
    assert "<th>Journal</th>" in page
    assert ('<p id="summary">19 messages; 0 with warnings; 1 of these sent (the Journal '
            'column says which).</p>') in page


def test_gallery_index_rows_link_to_the_message_pages(example_gallery: Path) -> None:
    elements = Elements((example_gallery / INDEX).read_text(encoding="utf-8"))
    links = [a["href"] for a in elements.all("a")]
    assert len(links) == 2 * 19  # the name and the address
    for href in links:
        assert (example_gallery / unquote(href)).is_file(), href
    assert elements.one("input", id="filter")["type"] == "search"


def test_gallery_index_has_no_journal_column_without_a_journal(tmp_path: Path) -> None:
    event = write_event(tmp_path / "event")
    build_gallery(event, tmp_path / "out", now=NOW)
    page = (tmp_path / "out" / INDEX).read_text(encoding="utf-8")
    assert "Journal" not in page
    assert len(index_rows(tmp_path / "out")[0]) == 6


def test_gallery_page_shows_the_html_part_in_a_sandboxed_iframe(example_gallery: Path) -> None:
    eml = (example_gallery / "00001-soren.aero@example.org.eml").read_bytes()
    html_part = parse_message(eml).get_body(preferencelist=("html",))
    assert html_part is not None
    elements = Elements(
        (example_gallery / "00001-soren.aero@example.org.html").read_text(encoding="utf-8"))
    frame = elements.one("iframe", id="message")
    # The attribute, unescaped by the parser, is exactly the message's HTML part.
    assert frame["srcdoc"] == html_part.get_content().replace("\r\n", "\n")
    assert "allow-scripts" not in frame["sandbox"]
    assert "allow-same-origin" in frame["sandbox"]
    assert frame["referrerpolicy"] == "no-referrer"


def test_gallery_page_shows_the_calendar_event_text_part_and_headers(
        example_gallery: Path) -> None:
    page = (example_gallery / "00001-soren.aero@example.org.html").read_text(encoding="utf-8")
    text = "".join(Elements(page).text)
    assert "Thu 2031-12-11 14:00–15:00 Europe/Copenhagen (13:00 UTC)" in text
    assert f'<dd class="event-join-link"><a href="{html.escape(PERSONAL_LINK)}"' in page
    assert "REQUEST / CONFIRMED" in text
    assert "Søren Kierkegaard Ærø <soren.aero@example.org>" in text
    # The plain-text part and the decoded headers.
    assert "Adgangskode: Kx7pQ9" in text
    assert "torsdag den 11. december 2031 kl. 14.00-15.00" in text
    assert "Message-ID" in text
    assert "Djøf Arrangementer <arrangementer@example.org>" in text
    assert "00001-soren.aero@example.org.eml" in text


def test_gallery_pages_load_nothing_from_anywhere(example_gallery: Path) -> None:
    for path in [example_gallery / INDEX, *example_gallery.glob("0*.html")]:
        elements = Elements(path.read_text(encoding="utf-8"))
        csp = elements.one("meta", **{"http-equiv": "Content-Security-Policy"})
        assert csp["content"] == CSP
        assert "default-src 'none'" in CSP
        for tag, attrs in elements.tags:
            # Only <a href> (a click, not a load) may point away; everything else is inline.
            for name in ("src", "href", "srcset", "poster", "data"):
                if name in attrs and tag != "a":
                    assert attrs[name].startswith("data:"), (path.name, tag, attrs)
            assert tag not in ("img", "object", "embed", "base"), (path.name, tag)
        # The message inside the iframe carries no remote image or stylesheet either.
        for frame in elements.all("iframe"):
            inner = Elements(frame["srcdoc"])
            assert not inner.all("img") and not inner.all("link") and not inner.all("script")


def test_gallery_escapes_what_the_csv_holds(tmp_path: Path) -> None:
    name = '<script>alert("x")</script> & "Ærø"'
    event = write_event(tmp_path / "event", [(name, "evil@example.org", "da")])
    build_gallery(event, tmp_path / "out", now=NOW)
    for path in (tmp_path / "out").glob("*.html"):
        page = path.read_text(encoding="utf-8")
        assert "<script>alert" not in page, path.name
        assert "&lt;script&gt;alert" in page or "&amp;lt;script&amp;gt;alert" in page
    assert index_rows(tmp_path / "out")[0][1] == name


def test_gallery_writes_rows_as_messages_come_and_the_index_at_close(tmp_path: Path) -> None:
    campaign = Campaign.open(EXAMPLE, now=EXAMPLE_NOW)
    messages = campaign.messages(unique_registrants(campaign.source))
    writer = GalleryWriter(tmp_path, None)
    for count, built in enumerate(messages, start=1):
        writer(built)
        if count == 3:
            break
    assert writer._index is not None
    writer._index.file.flush()
    partial = tmp_path / writer._index.temporary  # a hidden name, unpredictable (files.py)
    assert partial.name.startswith(".index.html.")
    assert partial.read_text(encoding="utf-8").count("<tr>") == 1 + 3  # the heading row too
    assert not (tmp_path / INDEX).exists()
    assert writer.close() == tmp_path / INDEX
    assert not partial.exists()
    assert (tmp_path / INDEX).read_text(encoding="utf-8").rstrip().endswith("</html>")
    with pytest.raises(ValueError, match="closed"):
        writer(built)


def test_gallery_leaves_no_index_when_the_run_fails(tmp_path: Path) -> None:
    campaign = Campaign.open(EXAMPLE, now=EXAMPLE_NOW)
    with pytest.raises(RuntimeError), GalleryWriter(tmp_path) as writer:
        writer(next(iter(campaign.messages(unique_registrants(campaign.source)))))
        raise RuntimeError("interrupted")
    assert not (tmp_path / INDEX).exists()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_gallery_refuses_a_folder_that_holds_eml_files(tmp_path: Path) -> None:
    (tmp_path / "00001-old@example.org.eml").write_bytes(b"")
    with pytest.raises(InvitemailError, match=r"already holds \.eml files"):
        GalleryWriter(tmp_path)


def _many(built: Built, count: int) -> Iterator[Built]:
    for number in range(count):
        yield dataclasses.replace(built, recipient=f"r{number}@example.org")


def test_gallery_memory_stays_flat_however_many_messages(tmp_path: Path) -> None:
    campaign = Campaign.open(EXAMPLE, now=EXAMPLE_NOW)
    built = next(iter(campaign.messages(unique_registrants(campaign.source))))
    writer = GalleryWriter(tmp_path)
    for message in _many(built, 10):  # warm up: imports, caches
        writer(message)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for message in _many(built, 40):
            writer(message)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    writer.close()
    # 40 messages of ~20 kB and pages of ~50 kB: holding on to them would be megabytes.
    assert grown < 256 * 1024, grown
    assert len(index_rows(tmp_path)) == 50


def test_read_message_reports_a_message_without_calendar_or_html() -> None:
    data = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n"
            b"Date: Thu, 10 Dec 2026 13:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n")
    view = read_message(data)
    assert view.text == "Hello\n"
    assert view.html == ""
    assert view.calendar is None
    assert "the message has no text/html part" in view.warnings
    assert "the message has no calendar part" in view.warnings
    assert "top level is text/plain, not multipart/mixed" in view.warnings


def test_describe_ics_reads_the_event_back(example_gallery: Path) -> None:
    eml = (example_gallery / "00001-soren.aero@example.org.eml").read_bytes()
    part = next(p for p in parse_message(eml).walk() if p.get_content_type() == "text/calendar")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    event = describe_ics(payload)
    assert event.title == "Persondata i praksis"
    assert event.start == dt.datetime(2031, 12, 11, 13, 0, tzinfo=dt.UTC)
    assert event.end == dt.datetime(2031, 12, 11, 14, 0, tzinfo=dt.UTC)
    assert event.url == event.location == PERSONAL_LINK
    assert event.method == "REQUEST"
    assert event.attendees == ("Søren Kierkegaard Ærø <soren.aero@example.org>",)
    assert event.sequence == 0
    assert "Adgangskode: Kx7pQ9" in event.description
    with pytest.raises(ValueError):
        describe_ics(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")


def test_page_name_matches_the_eml_file() -> None:
    assert page_name(7, "Søren+x@example.org") == "00007-S_ren+x@example.org.html"


def test_gallery_read_back_on_the_workers_is_the_one_read_back_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,100 rows: the messages are built and read back in worker processes (with the
    gallery's ``view_of`` as ``inspect``); every file is what one process writes."""
    from invitemail.outputs.gallery import view_of

    rows = [(f"Deltager {i} Ærø", f"deltager{i}@example.org", "da" if i % 3 else "en")
            for i in range(1100)]
    event = write_event(tmp_path / "event", rows)
    written = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("INVITEMAIL_WORKERS", workers)
        campaign = Campaign.open(event, now=NOW)
        out = tmp_path / f"out-{workers}"
        with GalleryWriter(out, None, title="t", zone=campaign.config.event.zone) as writer:
            report = campaign.check(on_message=writer, inspect=view_of)
        assert report.ok and writer.count == 1100
        written[workers] = {path.name: path.read_bytes() for path in out.iterdir()}
    assert written["1"] == written["2"]

