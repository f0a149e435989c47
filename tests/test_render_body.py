"""One opaque body value: a rendered part reaches the encoder as a Body, whichever way it was
made, and encodes to the bytes its whole text encodes to.

The skeleton's pieces stay in render/ and the one encoder that reads a body's segments
(mime/quoted_printable.py); nothing is keyed by an object's id(), so a body can never be
encoded with another group's lines, however many skeletons come and go.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.mime.inline import inline_body
from invitemail.mime.quoted_printable import quoted_printable
from invitemail.render.body import Body, PartLayout, SharedLines
from invitemail.render.renderer import MAX_SKELETONS, Renderer

SRC = Path(__file__).resolve().parents[1] / "src" / "invitemail"


def renderers(tmp_path: Path, text: str, html: str) -> tuple[Renderer, Renderer]:
    folder = tmp_path / "templates"
    (folder / "da").mkdir(parents=True)
    for part, body in (("subject.txt", "S {{ registrant.name }}"), ("txt", text),
                       ("html", html)):
        (folder / "da" / f"t.{part}").write_text(body, encoding="utf-8")
    return Renderer(folder), Renderer(folder, fast=False)


def test_bodies_of_many_groups_encode_as_their_own_text(tmp_path: Path) -> None:
    # More groups than the renderer keeps skeletons for: skeletons are dropped and made
    # again, their objects freed and their memory reused, while bodies are encoded.
    fast, plain = renderers(
        tmp_path, "Hej {{ registrant.name }}\nLink: {{ meeting.join_url }}\nFælles linje\n",
        "<p>{{ registrant.name }}</p>\n<p>{{ meeting.join_url }}</p>\n<p>Fælles</p>\n")
    groups = MAX_SKELETONS + 40
    for group in range(groups):
        meeting = {"join_url": f"https://z/{group}"}
        for name in (f"Ane {group}", f"Bo\n{group}", f"Cy={group}"):
            context = {"meeting": meeting, "registrant": {"name": name}}
            rendered = fast.render("t", "da", context, group=group)
            expected = plain.render("t", "da", context)
            for body, text in ((rendered.text_body, expected.text),
                               (rendered.html_body, expected.html)):
                assert body.text == text
                assert quoted_printable(body) == quoted_printable(text), (group, name)
        if group % 50 == 0:
            gc.collect()
    assert fast.filled > 2 * groups  # the bodies came from skeletons


@settings(max_examples=100, deadline=None)
@given(first=st.lists(st.sampled_from(["a\n", "b", "\n\n", "æ" * 50 + "\n", "=\n", " \n"]),
                      min_size=1, max_size=6),
       second=st.lists(st.sampled_from(["x\n", "y", "\n", "ø" * 50 + "\n", "\t\n"]),
                       min_size=1, max_size=6),
       values=st.lists(st.sampled_from(["", "Søren", "a\nb", "\r", "=", "x" * 90]),
                       min_size=2, max_size=2))
def test_layouts_never_share_their_encodings(first: list[str], second: list[str],
                                             values: list[str]) -> None:
    # Two groups, each with its own constant lines and values between them; layouts made,
    # encoded, dropped (freed at once: nothing else holds them) and made again in turn.
    for _ in range(3):
        for constants in (first, second):
            pieces: list[str | int] = [*constants, 0, *constants, 1, constants[0]]
            layout = PartLayout(pieces)
            for vals in (values, values[::-1]):
                body = Body.filled(layout, vals)
                assert quoted_printable(body) == quoted_printable(body.text)
            del layout, body


def test_shared_lines_hold_only_constant_lines() -> None:
    layout = PartLayout(["Hej ", 0, "\nmid 1\nmid 2\nlast ", 1, "\n", "tail"])
    body = Body.filled(layout, ["Ane", "Bo"])
    assert body.text == "Hej Ane\nmid 1\nmid 2\nlast Bo\ntail"
    segments = body.segments()
    assert [s.text if isinstance(s, SharedLines) else s for s in segments] == \
        ["Hej Ane\n", "mid 1\nmid 2\n", "last Bo\n", "tail"]
    other = Body.filled(layout, ["Cy", "Di"])
    shared = [s for s in other.segments() if isinstance(s, SharedLines)]
    assert shared == [s for s in segments if isinstance(s, SharedLines)]  # the same objects
    assert not any("Ane" in s.text or "Bo" in s.text for s in shared)


def test_a_body_rendered_in_full_is_one_segment() -> None:
    for text in ("", "one line", "two\nlines\n", "cr\r\nlf\r"):
        body = Body(text)
        assert body.segments() == [text]
        assert body.markup is None


def test_a_constant_with_a_carriage_return_is_encoded_whole() -> None:
    layout = PartLayout(["a\r", 0, "\nb"])
    assert layout.layout() is None
    body = Body.filled(layout, ["\n"])
    assert body.segments() == [body.text]
    assert quoted_printable(body) == quoted_printable("a\r\n\nb")


@pytest.mark.parametrize(("html", "inlined"), [
    ("<style>:root{color:red}</style><p>{{ registrant.name }}</p>", False),
    ("<style>p{color:red}</style><p>{{ registrant.name }}</p>", True),
])
def test_inline_body_keeps_the_body_only_when_the_document_is_unchanged(
        tmp_path: Path, html: str, inlined: bool) -> None:
    fast, plain = renderers(tmp_path, "T", html)
    for name in ("Ane", "Bo", "<b>C</b>"):
        context = {"registrant": {"name": name}}
        body = fast.render("t", "da", context, group="g").html_body
        result = inline_body(body)
        expected = inline_body(plain.render("t", "da", context).html_body)
        assert result.text == expected.text
        assert (result is not body) == inlined
        assert quoted_printable(result) == quoted_printable(expected.text)
        if inlined:
            assert result.segments() == [result.text]  # nothing of the skeleton is left


def test_skeleton_pieces_stay_in_render_and_the_one_encoder() -> None:
    # What only the skeleton and the encoder may see of a body.
    private = re.compile(r"\bPartLayout\b|\bSharedLines\b|\.segments\(|\b(text|html)_pieces\b")
    allowed = {"render/body.py", "render/skeleton.py", "mime/quoted_printable.py"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            # ... and no cache between rendering and sending keyed by an object's id().
            keyed_by_id = where.startswith(("mime/", "render/body", "render/skeleton")) \
                or where == "campaign.py"
            if (private.search(code) and where not in allowed) or \
                    (keyed_by_id and re.search(r"\bid\(\w", code)):
                found.append(f"{where}:{number}: {line.strip()}")
    assert found == []
