"""The fast path (the include cache and the skeletons) gives every registrant the very bytes
a plain full render gives, whatever the templates do.

The differential property test draws an event's own templates from a grammar of Jinja
constructs (attribute, subscript and method access on every context object, filters, tests,
``set``, ``with``, loops, macros, includes, imports) and a registrant list with personal
join links, time zones and languages, then builds every registrant's message twice: through
``Campaign`` as ``send`` does, and through a ``Campaign`` given ``Renderer(fast=False)``.
Templates that fail must fail the same way on both.

The regression tests pin the reported payloads (a custom partial reading the meeting
through a mapping method gave everyone the first registrant's personal link).
"""

from __future__ import annotations

import os
import tempfile
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from invitemail.campaign import Campaign
from invitemail.errors import InvitemailError
from invitemail.inputs.registrants import Registrant, unique_registrants
from invitemail.mime.inline import inline_css
from invitemail.mime.message import HeaderValueError
from invitemail.render.renderer import Rendered, Renderer
from support.event import NOW, EventBuilder, Raw, write_event

HEADER = ("Navn", "E-mail", "Sprog", "Join URL", "timezone")
ZONES = ("", "America/New_York", "Asia/Tokyo")
SHARED_LINK = "https://zoom.us/w/777?tk=shared"
# 500 fixed examples in every run (about a minute); HYPOTHESIS_PROFILE=explore draws ten
# times as many new ones.
EXAMPLES = 5_000 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 500

# What each context object holds (a few keys each), and names a template may bind.
OBJECTS: dict[str, tuple[str, ...]] = {
    "registrant": ("name", "first_name", "email", "join_url", "timezone", "language"),
    "meeting": ("join_url", "id", "password", "platform", "web_join_url", "recorded"),
    "when": ("local", "full", "date", "time", "zone", "relative"),
    "event": ("title", "description", "duration", "timezone", "sequence"),
    "links": ("google", "outlook", "office365", "yahoo"),
    "support": ("phone", "hours", "email"),
    "sender": ("name", "address", "reply_to"),
    "privacy": ("policy_url",),
}
SCALARS = ("lang", "template", "test", "changes")
BOUND = ("v", "k", "x", "a")  # bound by set, with, for and macros below (or undefined)


# -- the grammar -------------------------------------------------------------------------

@st.composite
def reads(draw: st.DrawFn) -> str:
    """One read of a context object, in any of the ways a template can reach it."""
    name = draw(st.sampled_from(sorted(OBJECTS)))
    key = draw(st.sampled_from(OBJECTS[name] + ("missing",)))
    form = draw(st.sampled_from((
        "{o}.{k}", "{o}['{k}']", "{o}.get('{k}')", "{o}.get('{k}', '-')", "{o}|attr('{k}')",
        "{o}.values()|list|join('|')", "{o}.items()|list|length", "{o}|dictsort|last|last",
        "{o}|string", "{o}|tojson", "{o}[{o}|list|first]", "{o}.keys()|list|join",
        "{o}|list|length", "{o}.{k} is defined", "{o}.{k}|default('d')",
        "{o}|map('upper')|join(';')", "{o}.copy().{k}", "{o}[0] is defined",
    )))
    return form.format(o=name, k=key)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    base = draw(st.one_of(
        reads(), reads(), reads(),
        st.sampled_from(SCALARS + BOUND),
        st.sampled_from(("'<b>-->'", "'txt'", "42", "none", "[1, 2]", "'<style>'|safe")),
    ))
    suffix = draw(st.sampled_from((
        "", "", "", "|upper", "|e", "|safe", "|string|length", "|string|truncate(9)",
        "|string|replace('-', '<i>'|safe)", " ~ '<&>'", "|string|wordwrap(12)",
        "|string|center(30)", "|string|indent(2)", "|string|urlencode", " is string",
        " is none", "|string|reverse", "|default('z')", "|join(',')",
    )))
    return f"({base}){suffix}" if suffix else base


TEXTS = ("Hej ", "\n", " <p>", "</p>\n", "-", "<!-", "->", "<sty", "le>", "x{color:red}",
         "</style>", "\r\n", "é ", "  \n\n")


@st.composite
def statements(draw: st.DrawFn, depth: int = 2, *, partials: bool = True) -> str:
    """A template body: text, output and the statements that bind, loop and include."""
    kinds = ["text", "output", "output", "slot"]
    if depth > 0:
        kinds += ["if", "for", "items", "with", "set", "filter", "setblock", "macro",
                  "call", "recursive"]
        if partials:
            kinds += ["include", "include", "include_loop", "import", "from_import",
                      "include_missing"]
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        inner = (lambda: draw(statements(depth - 1, partials=partials)))  # noqa: E731
        obj = draw(st.sampled_from(sorted(OBJECTS)))
        if kind == "text":
            parts.append(draw(st.sampled_from(TEXTS)))
        elif kind == "output":
            parts.append("{{ " + draw(expressions()) + " }}")
        elif kind == "slot":  # what the skeleton fills in
            attr = draw(st.sampled_from(OBJECTS["registrant"]))
            parts.append(draw(st.sampled_from((
                "{{{{ registrant.{a} }}}}", "{{{{ registrant.get('{a}') }}}}",
                "{{{{ registrant.{a}|safe ~ '<b>' }}}}", "{{{{ registrant.values()|join }}}}",
                "{{{{ (registrant.{a}|safe)|replace('a', '<a>'|safe) }}}}",
                "{{{{ registrant|dictsort|first|last }}}}",
            ))).format(a=attr))
        elif kind == "if":
            parts.append(f"{{% if {draw(expressions())} %}}{inner()}{{% else %}}{inner()}"
                         "{% endif %}")
        elif kind == "for":
            parts.append(f"{{% for k in {obj} %}}{{{{ k }}}}={{{{ {obj}[k] }}}};{inner()}"
                         "{% endfor %}")
        elif kind == "items":
            parts.append(f"{{% for k, x in {obj}.items() %}}{inner()}{{% endfor %}}")
        elif kind == "with":
            parts.append(f"{{% with v = {draw(expressions())} %}}{inner()}{{% endwith %}}")
        elif kind == "set":
            parts.append(f"{{% set v = {draw(st.sampled_from(sorted(OBJECTS)))} %}}")
        elif kind == "filter":
            parts.append(f"{{% filter upper %}}{inner()}{{% endfilter %}}")
        elif kind == "setblock":
            parts.append(f"{{% set x %}}{inner()}{{% endset %}}{{{{ x|lower }}}}")
        elif kind == "macro":
            parts.append(f"{{% macro m(a) %}}{inner()}{{% endmacro %}}{{{{ m({obj}) }}}}")
        elif kind == "call":
            parts.append(f"{{% macro c(a) %}}[{{{{ caller() }}}}]{{% endmacro %}}"
                         f"{{% call c({obj}) %}}{inner()}{{% endcall %}}")
        elif kind == "recursive":
            parts.append(f"{{% for k in [[{obj}], []] recursive %}}{inner()}"
                         "{{ loop(k) if k is sequence and k is not mapping else '' }}"
                         "{% endfor %}")
        elif kind == "include":
            parts.append(f"{{% include 'LANG/_p{draw(st.integers(1, 2))}.EXT' %}}")
        elif kind == "include_loop":
            parts.append(f"{{% for meeting in [{obj}] %}}{{% include 'LANG/_p1.EXT' %}}"
                         "{% endfor %}")
        elif kind == "include_missing":
            parts.append("{% include 'LANG/_absent.EXT' ignore missing %}")
        elif kind == "import":
            parts.append(f"{{% import 'LANG/_m.txt' as mm %}}{{{{ mm.f({obj}) }}}}")
        else:
            parts.append(f"{{% from 'LANG/_m.txt' import f with context %}}{{{{ f({obj}) }}}}")
    return "".join(parts)


@st.composite
def template_sets(draw: st.DrawFn) -> dict[str, str]:
    """The custom template ``t`` (subject, text, HTML) and its partials."""
    inner = draw(statements(1, partials=False))
    return {
        "subject": draw(statements(0)),
        "body": draw(statements(2)),
        "_p1": draw(statements(1, partials=False)) + "{% include 'LANG/_p2.EXT' %}",
        "_p2": inner,
        "_m": "{% macro f(a) %}" + draw(statements(1, partials=False)) + "{% endmacro %}",
    }


@st.composite
def registrant_lists(draw: st.DrawFn) -> list[tuple[str, ...]]:
    names = st.sampled_from(("Ane", "Bo <b>", "Cé -->", "Dan & Co", 'Eva "E"', "Fie-",
                             "styl", "e"))
    rows = []
    for i in range(draw(st.integers(2, 4))):
        link = draw(st.sampled_from(("", SHARED_LINK, f"https://zoom.us/w/{i}?tk=p{i}")))
        rows.append((draw(names), f"r{i}@example.org", draw(st.sampled_from(("da", "en"))),
                     link, draw(st.sampled_from(ZONES))))
    return rows


# The event's own text: one text, or a table per language (with both languages or one, so
# that a registrant of the other falls back), drawn per key.
# key: (its section, the Danish text, the English text)
EVENT_TEXTS: dict[str, tuple[str, str, str]] = {
    "title": ("event", "Persondata <b>", "Personal data & co"),
    "description": ("event", "Om data", "About -->"),
    "policy_url": ("privacy", "https://example.org/da?a=1&b=<2>", "https://example.org/en"),
}


@st.composite
def event_texts(draw: st.DrawFn) -> dict[str, str]:
    """The values (TOML source) of the keys that take a text per language, as drawn; a key
    left out keeps the default event's value."""
    values = {}
    for key, (_, da, en) in EVENT_TEXTS.items():
        form = draw(st.sampled_from(("as is", "one", "both", "da", "en")))
        table = {"one": f'"{da}"', "both": f'{{ da = "{da}", en = "{en}" }}',
                 "da": f'{{ da = "{da}" }}', "en": f'{{ en = "{en}" }}'}
        if form != "as is":
            values[key] = table[form]
    return values


# -- the two paths -------------------------------------------------------------------------

def write_templates(folder: Path, templates: dict[str, str]) -> None:
    for language in ("da", "en"):
        root = folder / "templates" / language
        root.mkdir(parents=True, exist_ok=True)

        def placed(body: str, ext: str, language: str = language) -> str:
            return body.replace("LANG", language).replace("EXT", ext)

        (root / "t.subject.txt").write_text(placed(templates["subject"], "txt"), "utf-8")
        (root / "t.txt").write_text(placed(templates["body"], "txt"), "utf-8")
        (root / "t.html").write_text(placed("<html><body>" + templates["body"]
                                            + "</body></html>", "html"), "utf-8")
        for partial in ("_p1", "_p2"):
            for ext in ("txt", "html"):
                (root / f"{partial}.{ext}").write_text(placed(templates[partial], ext), "utf-8")
        (root / "_m.txt").write_text(placed(templates["_m"], "txt"), "utf-8")


def campaigns(folder: Path) -> tuple[Campaign, Campaign]:
    """The campaign as `send` opens it, and the same one on the plain path."""
    fast = Campaign.open(folder, template="t", now=NOW)
    plain = Campaign(fast.config, fast.source, Renderer(folder / "templates", fast=False),
                     template="t", now=NOW)
    return fast, plain


def outcome(campaign: Campaign, registrant: Registrant) -> tuple[str, object]:
    try:
        built = campaign.build(registrant)
    except (InvitemailError, HeaderValueError) as err:
        return type(err).__name__, str(err)
    return built.subject, built.data


def assert_same_messages(templates: dict[str, str], rows: list[tuple[str, ...]],
                         texts: dict[str, str] | None = None) -> None:
    builder = EventBuilder(header=HEADER, rows=rows)
    for key, value in (texts or {}).items():
        builder.set(EVENT_TEXTS[key][0], key, Raw(value))
    with tempfile.TemporaryDirectory() as tmp:
        folder = builder.write(Path(tmp) / "event").folder
        write_templates(folder, templates)
        fast, plain = campaigns(folder)
        registrants = list(unique_registrants(fast.source))
        assert len(registrants) == len(rows)
        expected = {r.email: outcome(plain, r) for r in registrants}
        # In order, then backwards: every registrant meets caches filled by the others.
        for registrant in registrants + registrants[::-1]:
            assert outcome(fast, registrant) == expected[registrant.email], registrant


PAYLOAD_PARTIAL = "{{ meeting.get('join_url') }} {{ meeting.values()|join(' ') }} " \
                  "{{ when.get('local') }}"
NO_PARTIALS = {"_p1": "", "_p2": "", "_m": "{% macro f(a) %}{% endmacro %}"}
PERSONAL_ROWS = [
    ("Ane", "r0@example.org", "da", "https://zoom.us/w/0?tk=p0", "America/New_York"),
    ("Bo", "r1@example.org", "en", "https://zoom.us/w/1?tk=p1", "Asia/Tokyo"),
    ("Cy", "r2@example.org", "da", "https://zoom.us/w/2?tk=p2", ""),
]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates=template_sets(), rows=registrant_lists(), texts=event_texts())
@example(templates={**NO_PARTIALS, "subject": "S", "body": "{% include 'LANG/_p1.EXT' %}",
                    "_p1": PAYLOAD_PARTIAL}, rows=PERSONAL_ROWS,
         texts={})
@example(templates={**NO_PARTIALS, "subject": "{{ meeting.get('join_url') }}",
                    "body": "{% include 'LANG/_p1.EXT' %}{% include 'LANG/_p2.EXT' %}",
                    "_p1": "{{ meeting|attr('join_url') }}{{ meeting['join_url'] }}",
                    "_p2": "{{ meeting|dictsort|first }}{{ links.items()|list }}"},
         rows=PERSONAL_ROWS, texts={})
@example(templates={**NO_PARTIALS, "subject": "S",
                    "body": "{% set m = meeting %}{% include 'LANG/_p1.EXT' %}"
                            "{% with w = when %}{% include 'LANG/_p2.EXT' %}{% endwith %}",
                    "_p1": "{{ m.join_url }}", "_p2": "{{ w.local }}{{ w.get('local') }}"},
         rows=PERSONAL_ROWS, texts={})
@example(templates={"subject": "S", "body": "{% import 'LANG/_m.txt' as mm %}"
                    "{{ mm.f(meeting) }}{% include 'LANG/_p1.EXT' %}",
                    "_p1": "{% for k in meeting %}{{ meeting[k] }}{% endfor %}",
                    "_p2": "", "_m": "{% macro f(a) %}{{ a.get('join_url') }}{% endmacro %}"},
         rows=PERSONAL_ROWS, texts={})
@example(templates={**NO_PARTIALS, "subject": "{{ registrant.name }}",
                    "body": "<p>{{ registrant.name|safe ~ '<b>' }}</p>"
                            "<!-{{ registrant.name|safe }}- <style>p{color:red}</style> -->"
                            "<sty{{ registrant.first_name|safe }}>p{color:red}</style>",
                    "_p1": ""},
         rows=[("Ane", "r0@example.org", "da", "", ""), ("Bo", "r1@example.org", "da", "", ""),
               ("-", "r2@example.org", "da", "", ""), ("le", "r3@example.org", "da", "", "")],
         texts={})
@example(templates={**NO_PARTIALS, "subject": "{{ event.title }}",
                    "body": "{% include 'LANG/_p1.EXT' %}{{ privacy.policy_url }}",
                    "_p1": "{{ event.title }} {{ event.description }} {{ links.google }}"},
         rows=PERSONAL_ROWS,
         texts={"title": '{ da = "Dansk", en = "English" }',
                "description": '{ en = "Only English" }',
                "policy_url": '{ da = "https://a.example/da", en = "https://a.example/en" }'})
def test_fast_path_gives_every_registrant_what_a_full_render_gives(
        templates: dict[str, str], rows: list[tuple[str, ...]], texts: dict[str, str]) -> None:
    assert_same_messages(templates, rows, texts)


# -- the reported payloads, through Campaign --------------------------------------------

def text_part(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.mark.parametrize("partial", [
    "{{ meeting.get('join_url') }}",
    "{{ meeting.values()|list|join(' ') }}",
    "{{ (meeting|attr('get'))('join_url') }}",
    "{{ meeting['join_url'] }}{{ meeting[0] is defined }}{{ meeting['id'] }}",
    "{{ meeting|dictsort|map('last')|join(' ') }}",
    "{{ meeting|tojson }}",
    "{% for key in meeting %}{{ meeting[key] }} {% endfor %}",
    "{% for key, value in meeting.items() %}{{ value }} {% endfor %}",
    "{{ links.get('google') }}",
])
def test_partial_reading_the_meeting_gives_each_registrant_their_own_link(
        tmp_path: Path, partial: str) -> None:
    folder = write_event(tmp_path / "event", PERSONAL_ROWS, header=HEADER)
    write_templates(folder, {**NO_PARTIALS, "subject": "S",
                             "body": "Link: {% include 'LANG/_p1.EXT' %}\n", "_p1": partial})
    campaign = Campaign.open(folder, template="t", now=NOW)
    for registrant in unique_registrants(campaign.source):
        text = text_part(campaign.build(registrant).data)
        link = registrant.join_url
        if "google" in partial:  # the calendar link carries the join link, URL-encoded
            link = quote_plus(link)
        assert link in text, (partial, registrant.email, text)
        others = [r[3] for r in PERSONAL_ROWS if r[3] != registrant.join_url]
        assert not any(other in text for other in others), (partial, text)


@pytest.mark.parametrize("partial", [
    "{{ when.get('local') }}",
    "{{ when.values()|list|join(' ') }}",
    "{{ (when|attr('get'))('local') }}",
    "{% with w = when %}{{ w.local }}{% endwith %}",
])
def test_partial_reading_the_time_gives_each_registrant_their_own_zone(
        tmp_path: Path, partial: str) -> None:
    folder = write_event(tmp_path / "event", PERSONAL_ROWS, header=HEADER)
    write_templates(folder, {**NO_PARTIALS, "subject": "S",
                             "body": "{% include 'LANG/_p1.EXT' %}", "_p1": partial})
    fast, plain = campaigns(folder)
    texts = []
    for registrant in unique_registrants(fast.source):
        texts.append(text_part(fast.build(registrant).data))
        assert texts[-1] == text_part(plain.build(registrant).data)
    assert "New York" in texts[0] and "Tokyo" in texts[1]
    assert "New York" not in texts[1] and "Tokyo" not in texts[0]


def test_macro_given_the_meeting_gives_each_registrant_their_own_link(tmp_path: Path) -> None:
    folder = write_event(tmp_path / "event", PERSONAL_ROWS, header=HEADER)
    write_templates(folder, {
        "subject": "S", "_p2": "",
        "body": "{% from 'LANG/_m.txt' import f %}{{ f(meeting) }}{% include 'LANG/_p1.EXT' %}",
        "_m": "{% macro f(a) %}{{ a.get('join_url') }}{% endmacro %}",
        "_p1": "{% import 'LANG/_m.txt' as mm %}{{ mm.f(meeting) }}"})
    campaign = Campaign.open(folder, template="t", now=NOW)
    for registrant in unique_registrants(campaign.source):
        text = text_part(campaign.build(registrant).data)
        assert text.count(registrant.join_url) == 2, text


def test_builtin_templates_still_take_the_fast_path(tmp_path: Path) -> None:
    rows = [(f"N{i}", f"r{i}@example.org", "da" if i % 2 else "en", "", "") for i in range(6)]
    folder = write_event(tmp_path / "event", rows, header=HEADER)
    fast = Campaign.open(folder, now=NOW)  # the built-in invitation
    plain = Campaign(fast.config, fast.source, Renderer(folder / "templates", fast=False),
                     now=NOW)
    for registrant in unique_registrants(fast.source):
        assert fast.build(registrant).data == plain.build(registrant).data
    assert fast.renderer.filled == len(rows)
    assert plain.renderer.filled == 0


# -- the skeleton and the encoders, one construct at a time -------------------------------

def renderer_pair(tmp_path: Path, html: str, text: str = "T") -> tuple[Renderer, Renderer]:
    folder = tmp_path / "templates"
    (folder / "da").mkdir(parents=True)
    for part, body in (("subject.txt", "S"), ("txt", text), ("html", html)):
        (folder / "da" / f"t.{part}").write_text(body, encoding="utf-8")
    return Renderer(folder), Renderer(folder, fast=False)


@pytest.mark.parametrize("html", [
    # A slot is evaluated with its template's autoescape: `~` and `replace` keep a safe
    # string's markup only with it on.
    "<p>{{ registrant.name|safe ~ '<b>' }}</p>",
    "<p>{{ registrant.name|replace('a', '<a>'|safe) }}</p>",
    "<p>{{ [registrant.name|safe, '<i>']|join }}</p>",
    # A recursive loop hands its body's output, markers and all, to `loop(...)`.
    "{% for k in [[[]], []] recursive %}{{ registrant.name }}"
    "{{ loop(k)|length if k else '' }}{% endfor %}",
])
def test_skeleton_fill_equals_the_full_render(tmp_path: Path, html: str) -> None:
    fast, plain = renderer_pair(tmp_path, html)
    for name in ("<i>a</i>", "Bo", "a & b", "<i>a</i>"):
        context = {"meeting": {"id": "7"}, "registrant": {"name": name}}
        assert parts(fast.render("t", "da", context, group="g")) == \
            parts(plain.render("t", "da", context))


def test_skeleton_is_not_taken_for_a_group_whose_context_differs(tmp_path: Path) -> None:
    fast, _ = renderer_pair(tmp_path, "<p>{{ meeting.join_url }} {{ registrant.name }}</p>")
    first = {"meeting": {"join_url": "https://z/1"}, "registrant": {"name": "Ane"}}
    second = {"meeting": {"join_url": "https://z/2"}, "registrant": {"name": "Bo"}}
    assert fast.render("t", "da", first, group="same").html == "<p>https://z/1 Ane</p>"
    assert fast.render("t", "da", second, group="same").html == "<p>https://z/2 Bo</p>"
    assert fast.render("t", "da", {**first, "registrant": {"name": "Cy"}},
                       group="same").html == "<p>https://z/1 Cy</p>"


@pytest.mark.parametrize(("html", "names"), [
    # A value beside its marker completes "<!--", "-->", "<style" or "</style>".
    ("<!-{{ registrant.name|safe }}- <style>p{color:red}</style> --><p>x</p>", ("A", "-")),
    ("<p>x</p><sty{{ registrant.name }}>p{color:red}</style>", ("A", "le")),
    ("<p>x</p><!-- c --{{ registrant.name|safe }}> <style>p{color:red}</style>",
     ("A", "")),
    ("<p>x</p><style>p{color:red}</style{{ registrant.name }}>", ("A", "")),
    # A value inside an element's attributes, or its text: the same document for all.
    ('<p title="{{ registrant.name }}">x</p><style>p{color:red}</style>', ("A", "-->")),
])
def test_html_skeleton_decides_inlining_as_the_document_does(
        tmp_path: Path, html: str, names: tuple[str, ...]) -> None:
    fast, plain = renderer_pair(tmp_path, html)
    for name in names:
        context = {"registrant": {"name": name}}
        rendered = fast.render("t", "da", context, group="g")
        assert inline_css(rendered.html, skeleton=rendered.html_skeleton) == \
            inline_css(plain.render("t", "da", context).html)


def parts(rendered: Rendered) -> tuple[str, str, str]:
    return rendered.subject, rendered.text, rendered.html
