"""CSS inlining of the HTML part: the only module that uses css_inline.

Gmail, Outlook and many webmail clients drop or rewrite ``<style>`` blocks, so every rule
that matters must also sit in ``style=""`` attributes. The ``<style>`` block itself is kept
(``keep_style_tags``): the dark-mode and narrow-screen ``@media`` queries cannot be inlined,
and the clients that honour them read them from there. Remote stylesheets are never fetched:
building a message makes no network request.
"""

from __future__ import annotations

import functools
from typing import Any

import css_inline

from invitemail.errors import TemplateError


@functools.cache
def _inliner() -> Any:
    # Built once per process: the inliner is immutable and safe to share between threads.
    return css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """``html`` with the rules of its ``<style>`` blocks copied into ``style`` attributes."""
    try:
        inlined: str = _inliner().inline(html)
    except (css_inline.InlineError, ValueError) as err:
        raise TemplateError(f"the HTML part's CSS cannot be inlined: {err}",
                            hint="check the <style> block of the HTML template") from None
    return inlined
