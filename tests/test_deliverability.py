"""Mail that lands in the inbox: every example message linted, and scored by SpamAssassin.

SpamAssassin comes from Debian (``apt-get install spamassassin``; .ci/run installs it) and
runs with its local rules only (no network test). Without it the scoring test FAILS: a
score nobody computed proves nothing. Each score is printed in the test output when pytest
runs with ``-v`` (quiet otherwise, so the table does not break up the progress dots).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from invitemail.campaign import Campaign
from invitemail.inputs.registrants import unique_registrants
from invitemail.mime.inline import inline_css
from invitemail.outputs.lint import (
    MAX_LINE,
    SPAM_GOOD,
    SPAM_REQUIRED,
    SpamScore,
    _read_scores,
    lint_message,
    parse_message,
    spamassassin_installed,
    spamassassin_scores,
)
from invitemail.render.renderer import BUILTIN_TEMPLATES
from invitemail.send.followup import FOLLOWUP_TEMPLATE, VARIANTS
from support.checks import show_when_verbose

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "djoef-webinar"
NOW = dt.datetime(2031, 12, 1, 9, 0, tzinfo=dt.UTC)  # the example's event is in the future
PERSONAL_LINK = "https://zoom.us/w/84212345678?tk=EXAMPLE-personal-token-Soeren.DQMAAAAB"
# The standard test string every SpamAssassin scores as spam (a check that it really ran).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class Example(NamedTuple):
    template: str
    recipient: str
    language: str
    data: bytes


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    """Every registrant's message of every built-in template.

    Built with ``Campaign.messages`` rather than ``check``: ``check`` refuses ``update``
    when nothing changed since the invitation (here nothing was ever sent), but the update
    message itself still builds and must be fine.
    """
    found = []
    # The follow-up is either of two templates: both, as `preview` shows them before the
    # attendance report is given.
    kinds = [(t, None) for t in BUILTIN_TEMPLATES if t != FOLLOWUP_TEMPLATE]
    kinds += [(FOLLOWUP_TEMPLATE, variant) for variant in VARIANTS]
    for template, variant in kinds:
        campaign = Campaign.open(EXAMPLE, template=template, now=NOW, assume=variant)
        for built in campaign.messages(unique_registrants(campaign.source)):
            found.append(Example(built.template, built.recipient, built.registrant.language,
                                 built.data))
    assert len(found) == 19 * len(kinds)
    return found


def test_every_example_message_passes_the_lint(examples: list[Example]) -> None:
    problems = {(e.template, e.recipient): lint_message(e.data) for e in examples}
    assert {key: found for key, found in problems.items() if found} == {}


def test_example_messages_score_below_1_in_spamassassin(examples: list[Example],
                                                        request: pytest.FixtureRequest,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    if not spamassassin_installed():
        pytest.fail("SpamAssassin is not installed: run `apt-get install spamassassin` "
                    "(CI's .ci/run does)")
    spam = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n"
            b"Date: Thu, 10 Dec 2026 13:00:00 +0000\r\nMessage-ID: <gtube@example.org>\r\n\r\n"
            + GTUBE.encode() + b"\r\n")
    scores = spamassassin_scores([e.data for e in examples] + [spam])
    assert scores is not None
    *ours, gtube = scores
    show_when_verbose(request, capsys, [
        f"SpamAssassin (local rules) on {len(ours)} example messages:",
        *(f"  {example.template:<12} {example.language} {example.recipient:<34} {score}"
          for example, score in zip(examples, ours, strict=True)),
        f"  (GTUBE control message: {gtube.score:.1f})"])
    assert gtube.score >= SPAM_REQUIRED, "SpamAssassin did not score the GTUBE message as spam"
    too_high = {(e.template, e.recipient): str(s) for e, s in zip(examples, ours, strict=True)
                if s.score >= SPAM_GOOD}
    assert too_high == {}


def test_html_part_is_built_for_real_mail_clients(examples: list[Example]) -> None:
    for example in examples:
        message = parse_message(example.data)
        html_part = message.get_body(preferencelist=("html",))
        text_part = message.get_body(preferencelist=("plain",))
        assert html_part is not None and text_part is not None
        html, text = html_part.get_content(), text_part.get_content()
        # Table layout, 600 px wide, every style inline (nothing left in <style> that
        # could be inlined), the dark-mode block kept for the clients that read <style>.
        card = re.search(r'<table role="presentation" class="im-card" width="600"[^>]*>', html)
        assert card is not None and "max-width:600px" in card.group(0), example
        assert inline_css(html) == html  # nothing left for the inliner to do
        assert "@media (prefers-color-scheme: dark)" in html
        assert re.search(r'<html[^>]* style="color-scheme: ?light dark;?"', html), example
        # Nothing to fetch when the message is opened: no remote image, font or stylesheet.
        assert not re.search(r"<(img|link|script)\b", html, re.I), example
        assert "url(" not in html
        # The text part carries the same essentials.
        for part in (html, text):
            if example.template not in ("cancellation", *VARIANTS):  # the event is on
                assert "Kx7pQ9" in part and "842 1234 5678" in part, example
            assert "Persondata i praksis" in part and "33 95 97 00" in part, example
        if example.recipient == "soren.aero@example.org" and example.template in (
                "invitation", "reminder", "update"):
            assert PERSONAL_LINK in text and PERSONAL_LINK in html
        # No line on the wire is long (quoted-printable and base64 see to it).
        assert max(len(line) for line in example.data.split(b"\r\n")) <= MAX_LINE, example


def test_inline_css_copies_style_rules_and_keeps_media_queries() -> None:
    source = ("<html><head><style>p { color: red } "
              "@media (prefers-color-scheme: dark) { p { color: white !important } }</style>"
              '</head><body><p style="margin:0">Hej</p></body></html>')
    inlined = inline_css(source)
    assert re.search(r'<p style="color: ?red;margin: ?0;?">Hej</p>', inlined), inlined
    assert "@media (prefers-color-scheme: dark)" in inlined
    assert inline_css(source) == inlined  # the one inliner is reused


GOOD = (b"From: =?utf-8?q?Dj=C3=B8f?= <arrangementer@example.org>\r\n"
        b"To: Karen <karen@example.org>\r\n"
        b"Subject: Invitation\r\n"
        b"Date: Fri, 20 Nov 2026 09:00:00 +0000\r\n"
        b"Message-ID: <abc@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
        b'--o\r\nContent-Type: multipart/alternative; boundary="i"\r\n\r\n'
        b"--i\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHej\r\n"
        b"--i\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hej</p>\r\n"
        b"--i\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n"
        b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
        b"--i--\r\n--o--\r\n")


@pytest.mark.parametrize(("change", "problem"), [
    ((b"Hej\r\n--i", b"Hej\n--i"), "a line does not end in CRLF"),
    ((b"<p>Hej</p>", b"<p>" + b"x" * 1000 + b"</p>"),
     "a line is 1007 octets long (the limit is 998)"),
    ((b"To: Karen <karen@example.org>", b"To: karen@example.org, niels@example.org"),
     "To: must hold exactly one address"),
    ((b"Message-ID: <abc@example.org>", b"Message-ID: <abc@mailer.example.net>"),
     "Message-ID <abc@mailer.example.net> is not on the sender's domain example.org"),
    ((b"Date: Fri, 20 Nov 2026 09:00:00 +0000\r\n", b""), "0 Date headers (exactly one "
     "expected)"),
    ((b"Subject: Invitation", "Subject: Invitation – Søren".encode()),
     "the header holds 8-bit bytes (not RFC 2047-encoded)"),
    ((b"text/html; charset=utf-8", b"text/html"), "text/html declares no charset"),
    ((b"text/plain; charset=utf-8\r\n\r\nHej", b"text/xml; charset=utf-8\r\n\r\nHej"),
     "the alternative holds ['text/xml', 'text/html', 'text/calendar'], not text, HTML and "
     "calendar in that order"),
])
def test_lint_finds_what_a_mail_administrator_would(change: tuple[bytes, bytes],
                                                    problem: str) -> None:
    assert lint_message(GOOD) == []
    old, new = change
    assert old in GOOD
    assert problem in lint_message(GOOD.replace(old, new))


def test_spamassassin_scores_are_read_from_our_own_folded_header() -> None:
    output = (b"X-Spam-Checker-Version: SpamAssassin 4.0.1\r\n"
              b"X-Spam-Invitemail-Score: n0nce 1.2 HTML_MESSAGE=0.001,\r\n"
              b"\tMISSING_DATE=1.2\r\nFrom: a@example.org\r\n\r\n"
              b"X-Spam-Invitemail-Score: other 9.9 FAKE=9.9\r\n"  # a body cannot imitate it
              b"X-Spam-Invitemail-Score: n0nce -0.0 none\r\n")
    assert _read_scores(output, "n0nce") == [
        SpamScore(1.2, {"HTML_MESSAGE": 0.001, "MISSING_DATE": 1.2}), SpamScore(-0.0, {})]
    assert str(SpamScore(-0.0, {"NO_RELAYS": -0.001})) == "0.0 (NO_RELAYS -0.001)"


def test_inline_css_leaves_a_document_with_nothing_to_inline_as_it_is() -> None:
    source = ("<html><head><style>/* p { color: red } */ :root { color-scheme: light dark; }"
              "@media (max-width: 620px) { .card { width: 100% !important; } }</style>"
              "<!--[if mso]><style>td { font-family: Arial; }</style><![endif]-->"
              '</head><body><p style="margin:0">Hej</p></body></html>')
    assert inline_css(source) is source
    with_rule = source.replace("</head>", "<style>td { color: red }</style></head>")
    assert inline_css(with_rule) != with_rule
