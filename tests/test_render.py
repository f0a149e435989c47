"""The renderer: sandboxed, strict, bounded, and the include cache that must not change a
single character of what a registrant gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from invitemail.errors import TemplateError
from invitemail.render import MAX_LOOP_STEPS, Renderer


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
