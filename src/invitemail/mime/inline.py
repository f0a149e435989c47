"""CSS inlining of the HTML part: the only module that uses css_inline.

Gmail, Outlook and many webmail clients drop or rewrite ``<style>`` blocks, so every rule
that matters must also sit in ``style=""`` attributes. The ``<style>`` block itself is kept
(``keep_style_tags``): the dark-mode and narrow-screen ``@media`` queries cannot be inlined,
and the clients that honour them read them from there. Remote stylesheets are never fetched:
building a message makes no network request.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import css_inline

from invitemail.errors import TemplateError
from invitemail.render.body import SKELETON_MARK, SKELETON_MARK_END, Body


@functools.cache
def _inliner() -> Any:
    # Built once per process: the inliner is immutable and safe to share between threads.
    return css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def _nested_blocks(css: str) -> str:
    """``css`` without its ``@media``/``@supports`` blocks and comments."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    out, depth, at_rule = [], 0, False
    i = 0
    while i < len(css):
        char = css[i]
        if depth == 0 and char == "@":
            at_rule = True
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0 and at_rule:
                at_rule = False
                i += 1
                continue
        if not at_rule:
            out.append(char)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=64)
def _needs_inlining(styles: str) -> bool:
    """Whether any rule could be copied into an element: rules for the document root
    (``:root``, ``html``) and rules inside @media cannot, and are left in the block."""
    for rule in _nested_blocks(styles).split("}"):
        selectors = rule.partition("{")[0].strip()
        if not selectors or "{" not in rule:
            continue
        if any(s.strip() not in (":root", "html") for s in selectors.split(",")):
            return True
    return False


def inline_css(html: str, *, skeleton: str | None = None) -> str:
    """``html`` with the rules of its ``<style>`` blocks copied into ``style`` attributes.

    The built-in templates already carry every style inline and keep only what cannot be
    inlined (``:root``, ``@media``) in their block; such a document is returned as it is,
    which saves the inliner's parse and re-serialisation for every message. ``skeleton``
    (a body's ``markup``: the same document for a whole group of messages, with
    markers where the registrant's values go) lets that be decided once for the group.
    """
    needed = _skeleton_needs_inlining(skeleton) if skeleton is not None else None
    if needed is None:
        needed = _needs_inlining(_styles(html))
    if not needed:
        return html
    try:
        inlined: str = _inliner().inline(html)
    except (css_inline.InlineError, ValueError) as err:
        raise TemplateError(f"the HTML part's CSS cannot be inlined: {err}",
                            hint="check the <style> block of the HTML template") from None
    return inlined


def inline_body(html: Body) -> Body:
    """The HTML part with its CSS inlined: ``html`` itself when it needs nothing, else a new
    body (the inliner's output is a new document, with nothing of a group's skeleton)."""
    inlined = inline_css(html.text, skeleton=html.markup)
    return html if inlined is html.text else Body(inlined)


def _styles(html: str) -> str:
    """The text of the document's ``<style>`` blocks, but those inside comments."""
    return "\n".join(_STYLE.findall(_COMMENT.sub("", html)))


@functools.lru_cache(maxsize=64)
def _skeleton_needs_inlining(skeleton: str) -> bool | None:
    """Whether a group's documents need inlining; None when a registrant's value sits inside
    a ``<style>`` block, or beside text it could join into a delimiter of a comment or of a
    ``<style>`` block (then each document decides for itself)."""
    if not (_markers_inert(skeleton) and _markers_inert(_COMMENT.sub("", skeleton))):
        return None
    styles = _styles(skeleton)
    if SKELETON_MARK in styles:
        return None
    return _needs_inlining(styles)


_MARKER = re.compile(f"{SKELETON_MARK}[^{SKELETON_MARK_END}]*{SKELETON_MARK_END}")
# The characters of "<!--", "-->", "<style" and "</style>" (any case) that another one of
# them can follow, and those that can follow another one.
_JOINS_BEFORE = frozenset("<!-/styl" + "STYL")
_JOINS_AFTER = frozenset("!->/style" + "STYLE")


def _markers_inert(skeleton: str) -> bool:
    """Whether no value without "<" and ">" (the renderer offers a skeleton only for those)
    put where a marker is can make a delimiter with the text beside the marker: every
    delimiter holds "<" or ">", so a value can only be part of one that also holds the
    character just before or just after its marker."""
    for found in _MARKER.finditer(skeleton):
        start, end = found.span()
        if (start and skeleton[start - 1] in _JOINS_BEFORE) or \
                (end < len(skeleton) and skeleton[end] in _JOINS_AFTER):
            return False
    return True
