"""The renderer: sandboxed, strict, bounded, and the include cache that must not change a
single character of what a registrant gets."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.campaign import Campaign
from invitemail.errors import TemplateError
from invitemail.inputs.registrants import unique_registrants
from invitemail.render.renderer import SKELETON_TRIAL, Rendered, Renderer
from invitemail.render.sandbox import MAX_LOOP_STEPS
from support.event import NOW, write_event


def renderer_with(tmp_path: Path, subject: str = "Emne", text: str = "Tekst",
                  html: str = "<p>HTML</p>", extra: dict[str, str] | None = None) -> Renderer:
    folder = tmp_path / "templates"
    (folder / "da").mkdir(parents=True)
    for part, body in (("subject.txt", subject), ("txt", text), ("html", html)):
        (folder / "da" / f"t.{part}").write_text(body, encoding="utf-8")
    for name, body in (extra or {}).items():
        (folder / name).write_text(body, encoding="utf-8")
    return Renderer(folder)


@pytest.mark.parametrize(("template", "message"), [
    ("{{ '{:>99999999}'.format('x') }}", "the output is larger than 2 MiB"),
    ("{{ ('ab' * 1000000).replace('a', 'aaaa') }}", "the output is larger than 2 MiB"),
    ("{{ ',,,,'.join(['x'] * 1000000) }}", "the output is larger than 2 MiB"),
    ("{{ 'x'.ljust(10**9) }}", "the output is larger than 2 MiB"),
    ("{{ '%99999999s' % 'x' }}", "the output is larger than 2 MiB"),
    ("{{ '%*s' % (5, 'x') }}", "not allowed in a template: a '*' width is not allowed"),
    ("{{ 7 ** 10000000 }}", "not allowed in a template: 7 ** 10000000 is too large a number"),
    ("{% for i in range(2000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
     f"the loops ran more than {MAX_LOOP_STEPS} times"),
    ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
    # A template cannot change what the next registrant's message is rendered from.
    ("{{ meeting.update({'id': 'x'}) }}", "not allowed in a template"),
    ("{{ changes.append(1) }}", "not allowed in a template"),
])
def test_render_refuses_runaway_and_unsafe_templates(tmp_path: Path, template: str,
                                                     message: str) -> None:
    renderer = renderer_with(tmp_path, text=template)
    with pytest.raises(TemplateError) as caught:
        renderer.render("t", "da", {"meeting": {"id": "1"}, "changes": []})
    assert message in str(caught.value)


def test_render_allows_what_ordinary_templates_do(tmp_path: Path) -> None:
    text = ("{% for i in range(3) %}{{ i }}{% endfor %} {{ 'x' * 3 }} {{ 2 ** 10 }} "
            "{{ '{:>5}'.format('a') }} {{ 'ab'.replace('a', 'c') }} "
            "{{ lipsum(1, false)|length > 0 }}")
    renderer = renderer_with(tmp_path, text=text)
    assert renderer.render("t", "da", {}).text == "012 xxx 1024     a cb True"


def test_render_include_cache_gives_each_group_its_own_text(tmp_path: Path) -> None:
    renderer = renderer_with(
        tmp_path, text='{% include "da/_part.txt" %}|{{ registrant.name }}',
        extra={"da/_part.txt": "{{ meeting.join_url }} {{ support.phone }}"})
    outputs = [renderer.render("t", "da", {
        "meeting": {"join_url": link, "id": "1"}, "support": {"phone": "33"},
        "registrant": {"name": name}}).text
        for link, name in (("https://a", "Ane"), ("https://b", "Bo"), ("https://a", "Cy"))]
    assert outputs == ["https://a 33|Ane", "https://b 33|Bo", "https://a 33|Cy"]


def test_render_include_that_reads_registrant_is_rendered_for_each(tmp_path: Path) -> None:
    renderer = renderer_with(tmp_path, text='{% include "da/_hello.txt" %}',
                             extra={"da/_hello.txt": "Hej {{ registrant.name }}"})
    names = [renderer.render("t", "da", {"registrant": {"name": n}}).text for n in "AB"]
    assert names == ["Hej A", "Hej B"]


def test_render_template_not_utf8_names_the_file(tmp_path: Path) -> None:
    renderer = renderer_with(tmp_path)
    (tmp_path / "templates" / "da" / "t.txt").write_bytes("Søren".encode("cp1252"))
    with pytest.raises(TemplateError) as caught:
        renderer.render("t", "da", {})
    assert str(caught.value) == f"{tmp_path / 'templates' / 'da' / 't.txt'}: is not UTF-8 text"
    assert caught.value.hint == "save it as UTF-8"


# -- the skeleton fast path: a group's message rendered once, filled in per registrant ------

AWKWARD = [
    {"name": "Søren Ærø", "first_name": "Søren"},
    {"name": "", "first_name": ""},
    {"name": "<script>alert(1)</script>", "first_name": ""},
    {"name": 'Tom & Jerry "Q" <b>', "first_name": "Tom & <i>"},
    {"name": "x" * 300, "first_name": "  spaced  "},
    {"name": "=?utf-8?q?x?=", "first_name": "e\u0301"},
    {"name": "Line\u2028break", "first_name": "Tab\there"},
    {"name": "\ue000 0 \ue001", "first_name": "\ue0007\ue001"},  # the skeleton's markers
    {"name": "NUL\x00inside", "first_name": ""},
]


def parts(rendered: Rendered) -> tuple[str, str, str]:
    return rendered.subject, rendered.text, rendered.html


def full_render(renderer: Renderer, name: str, language: str,
                context: dict[str, Any]) -> Rendered:
    """What a renderer without the fast path gives."""
    return Renderer(renderer.event_templates, fast=False).render(name, language, context)


@pytest.mark.parametrize("template", ["invitation", "reminder", "update", "cancellation"])
@pytest.mark.parametrize("language", ["da", "en"])
def test_skeleton_gives_what_a_full_render_gives(tmp_path: Path, template: str,
                                                 language: str) -> None:
    campaign = Campaign.open(write_event(tmp_path))
    registrant = next(unique_registrants(campaign.source))
    shared = campaign.context(dataclasses.replace(registrant, language=language), changes=[
        {"field": "time", "old": "i går", "new": "i dag"}])
    renderer = Renderer()
    first = {"name": "Første", "first_name": "Første"}
    renderer.render(template, language, {**shared, "registrant": first}, group="g")
    assert renderer.filled == 1
    for values in AWKWARD:
        context = {**shared, "registrant": values}
        assert parts(renderer.render(template, language, context, group="g")) == \
            parts(full_render(renderer, template, language, context)), values
    # Every one but the value holding NUL (the fillers' separator) came from the skeleton.
    assert renderer.filled == len(AWKWARD)


def test_skeletons_stop_when_every_group_has_one_registrant(
        invitation: tuple[Renderer, dict[str, Any]]) -> None:
    _, shared = invitation
    renderer = Renderer()
    meetings = [{**shared["meeting"], "join_url": f"https://z/{i}"}
                for i in range(SKELETON_TRIAL + 10)]  # a personal join link in every row
    for i, meeting in enumerate(meetings):
        context = {**shared, "meeting": meeting,
                   "registrant": {"name": f"N{i}", "first_name": ""}}
        assert parts(renderer.render("invitation", "da", context, group=i)) == \
            parts(full_render(renderer, "invitation", "da", context))
    assert renderer.filled == SKELETON_TRIAL  # then the rest were rendered in full
    context = {**shared, "meeting": meetings[0],
               "registrant": {"name": "Again", "first_name": ""}}
    renderer.render("invitation", "da", context, group=0)  # a group made before: filled
    assert renderer.filled == SKELETON_TRIAL + 1
    # A group that claims to be one made before, with another link: not filled from it.
    context = {**shared, "registrant": {"name": "Other", "first_name": ""}}
    assert parts(renderer.render("invitation", "da", context, group=0)) == \
        parts(full_render(renderer, "invitation", "da", context))
    assert renderer.filled == SKELETON_TRIAL + 1


@pytest.fixture(scope="module")
def invitation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Renderer, dict[str, Any]]:
    campaign = Campaign.open(write_event(tmp_path_factory.mktemp("event")), now=NOW)
    registrant = next(unique_registrants(campaign.source))
    return Renderer(), campaign.context(registrant)


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=40), first=st.text(max_size=12))
def test_skeleton_matches_full_render_for_any_name(
        invitation: tuple[Renderer, dict[str, Any]], name: str, first: str) -> None:
    renderer, shared = invitation
    context = {**shared, "registrant": {"name": name, "first_name": first}}
    renderer.render("invitation", "da", context, group="any")
    assert parts(renderer.render("invitation", "da", context, group="any")) == \
        parts(full_render(renderer, "invitation", "da", context))


@pytest.mark.parametrize(("text", "fast"), [
    # The registrant only in printed expressions: filled in from the skeleton.
    ("Hej {{ registrant.name }}!{% for i in range(2) %}{{ registrant.name|upper }}{% endfor %}",
     True),
    ('{% include "da/_hello.txt" %}', True),
    ("{% if meeting.id %}{{ registrant.name ~ '!' }}{% endif %}", True),
    # Anything that could see the registrant or transform a marker: rendered in full.
    ("{% if registrant.name %}Hej {{ registrant.name }}{% endif %}", False),
    ("{% filter upper %}{{ registrant.name }}{% endfilter %}", False),
    ("{% set x %}{{ registrant.name }}{% endset %}{{ x|lower }}", False),
    ("{% macro m() %}{{ registrant.name }}{% endmacro %}{{ m()|title }}", False),
    ('{% filter upper %}{% include "da/_hello.txt" %}{% endfilter %}', False),
    ("{{ registrant.name ~ meeting.id }}", False),
    ("{% for r in [registrant] %}{{ r.name }}{% endfor %}", False),
    ("{% autoescape false %}{{ registrant.name }}{% endautoescape %}", False),
    ('{% include ["da/_hello.txt"][0] %}', False),
    # The name taken by an import or a macro: `registrant` is no longer the registrant.
    ('{% import "da/_m.txt" as registrant %}{{ registrant.name }}', False),
    ('{% from "da/_m.txt" import x as registrant %}{{ registrant.name }}', False),
    ("{% macro registrant() %}m{% endmacro %}{{ registrant.name }}", False),
    # An include that does not see the registrant fails in full; so must the skeleton.
    ('{% include "da/_hello.txt" without context %}', False),
])
def test_skeleton_is_used_only_where_it_gives_the_same_text(tmp_path: Path, text: str,
                                                            fast: bool) -> None:
    renderer = renderer_with(tmp_path, text=text, html=text.replace("upper", "lower"),
                             extra={"da/_hello.txt": "Hej {{ registrant.name }}",
                                    "da/_m.txt": "{% set name = 'from a module' %}"
                                                 "{% macro x() %}{% endmacro %}"})
    def outcome(render: Callable[..., Rendered], *args: Any, **kwargs: Any) -> object:
        try:
            return parts(render(*args, **kwargs))
        except TemplateError as err:
            return str(err)

    for name in ("Ane", "bo <b>", "Cy", "dé"):
        context = {"meeting": {"id": "7"}, "registrant": {"name": name}}
        assert outcome(renderer.render, "t", "da", context, group="g") == \
            outcome(full_render, renderer, "t", "da", context)
    assert renderer.filled == (4 if fast else 0)


def test_skeleton_block_output_passed_through_a_filter_is_rendered_in_full(
        tmp_path: Path) -> None:
    renderer = renderer_with(
        tmp_path, html='{% extends "_base.html" %}{% block b %}{{ registrant.name }}'
        "{% endblock %}",
        extra={"_base.html": "<p>{{ self.b()|upper }}</p>"})
    for name in ("ane", "bo"):
        context = {"registrant": {"name": name}}
        assert renderer.render("t", "da", context, group="g").html == f"<p>{name.upper()}</p>"
    assert renderer.filled == 0


def test_skeleton_reports_template_errors_as_a_full_render_does(tmp_path: Path) -> None:
    renderer = renderer_with(tmp_path, text="Hej {{ registrant.organisation }}")
    context = {"registrant": {"name": "Ane"}}
    for _ in range(2):
        with pytest.raises(TemplateError) as caught:
            renderer.render("t", "da", context, group="g", row="r.csv:2")
        assert "registrant.organisation is undefined" in str(caught.value)
        assert "(rendering for r.csv:2)" in str(caught.value)


def test_skeleton_html_is_offered_only_when_no_value_holds_markup(tmp_path: Path) -> None:
    renderer = renderer_with(tmp_path, html="<p>{{ registrant.name|safe }}</p>")
    for name in ("Ane", "Bo"):
        rendered = renderer.render("t", "da", {"registrant": {"name": name}}, group="g")
    assert rendered.html_skeleton is not None
    assert re.fullmatch("<p>\ue000[0-9a-f]+0\ue001</p>", rendered.html_skeleton)
    marked = renderer.render("t", "da", {"registrant": {"name": "<style>p{}</style>"}},
                             group="g")
    assert marked.html == "<p><style>p{}</style></p>" and marked.html_skeleton is None


def test_skeleton_is_not_fooled_by_marker_characters_in_the_events_own_text(
        tmp_path: Path) -> None:
    renderer = renderer_with(tmp_path, text="{{ meeting.id }} {{ registrant.name }}")
    for fake in ("\ue0000\ue001", "\ue000", "\ue001", "\ue000abcd0\ue001"):
        for name in ("Ane", "Bo"):
            context = {"meeting": {"id": fake}, "registrant": {"name": name}}
            assert renderer.render("t", "da", context, group=fake).text == f"{fake} {name}"
