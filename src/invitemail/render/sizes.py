"""How big a value a template builds: the size checks of the template sandbox.

Pure Python (the sandbox in sandbox.py calls these from its hooks): ``weight`` says about how
many characters a value prints as, counting every reference (a list of a million references
to one big string weighs a million times the string); the checks refuse an operation before
it builds a value past MAX_OUTPUT from small ones (``'x' * n``, ``replace``, ``join``,
padding, ``indent``, ``wordwrap``, ``batch``, ``sum``, ...), and ``check_result`` refuses
what a call or a filter gave back when it is past it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

MAX_OUTPUT = 2 * 1024 * 1024  # characters per part (and per value): a bigger one is a runaway
MAX_WIDTH = 10_000  # a padding or format width (or a slice count) past this is not for an email
MAX_DEPTH = 100  # nesting of lists and dicts a size check follows


class TemplateTooCostly(Exception):
    """A render ran out of a budget; ``str()`` says which, and where when it is known."""


def too_large() -> TemplateTooCostly:
    return TemplateTooCostly(f"the output is larger than {MAX_OUTPUT // (1024 * 1024)} MiB")


def weight(value: Any, limit: int = MAX_OUTPUT, depth: int = 0,
           memo: dict[int, int] | None = None) -> int:
    """About how many characters ``value`` prints as: the length of a string, one per item
    plus the items' own weights for a list, tuple, set or dict, 1 for anything else;
    counted up to just past ``limit`` (a list of a million references to one big string
    weighs a million times the string)."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 1
    if depth > MAX_DEPTH:
        return limit + 1
    memo = {} if memo is None else memo
    known = memo.get(id(value))
    if known is not None:
        return known
    total = len(value)
    items = value.items() if isinstance(value, dict) else ((item,) for item in value)
    for pair in items:
        for item in pair:
            total += weight(item, limit - total, depth + 1, memo)
        if total > limit:
            break
    memo[id(value)] = total
    return total


def check_weight(*values: Any, times: int = 1, extra: int = 0) -> None:
    total = extra
    memo: dict[int, int] = {}
    for value in values:
        total += weight(value, MAX_OUTPUT, 0, memo) * max(times, 0)
        if total > MAX_OUTPUT:
            raise too_large()


def check_result(value: Any) -> Any:
    """What a call or a filter gave back: not a string or a collection past MAX_OUTPUT."""
    if isinstance(value, str | bytes | bytearray):
        if len(value) > MAX_OUTPUT:
            raise too_large()
    elif isinstance(value, list | tuple | dict | set | frozenset):
        check_weight(value)
    return value


def check_width(width: Any) -> int:
    """A padding width, a slice count: at most MAX_WIDTH; what it adds (0 if not a number)."""
    if isinstance(width, int | float) and width > MAX_WIDTH:
        raise too_large()
    return int(width) if isinstance(width, int | float) and width > 0 else 0


def check_string_method(text: str | bytes, method: str, args: tuple[Any, ...]) -> None:
    """String methods that can build a string much larger than their input."""
    if method in ("center", "ljust", "rjust", "zfill") and args:
        check_width(args[0])
    elif method == "expandtabs" and args and isinstance(args[0], int):
        check_weight(text, times=max(args[0], 1))
    elif method == "replace" and len(args) >= 2:
        check_replace(text, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif method == "join" and args:
        items = args[0] if isinstance(args[0], list | tuple | str | bytes) else None
        if items is not None:
            check_weight(items, extra=len(text) * max(len(items) - 1, 0))
    elif method == "translate" and args and isinstance(args[0], Mapping):
        largest = max((weight(v) for v in args[0].values()), default=0)
        check_weight(text, times=max(largest, 1))


def check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(old, str | bytes) and isinstance(new, str | bytes)
            and isinstance(text, str | bytes)):
        return
    grow = len(new) - len(old)
    if grow <= 0:
        return
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    if len(text) + grow * found > MAX_OUTPUT:
        raise too_large()


def _check_join(value: Any, d: Any = "", attribute: Any = None) -> None:
    if isinstance(value, list | tuple | str):
        check_weight(value, extra=weight(d) * max(len(value) - 1, 0))


def _check_indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    if isinstance(width, str):
        check_weight(s, extra=len(width) * (str(s).count("\n") + 1))
    else:
        check_width(width)


def _check_wordwrap(s: Any, width: Any = 79, break_long_words: Any = True,
                    wrapstring: Any = None, *args: Any, **kwargs: Any) -> None:
    if isinstance(wrapstring, str) and isinstance(width, int) and width > 0:
        lines = len(str(s)) // width + str(s).count("\n") + 1
        check_weight(s, extra=len(wrapstring) * lines)


def _check_batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    if isinstance(linecount, int):
        check_weight(fill_with, times=linecount)


def _check_slice(value: Any, slices: Any, fill_with: Any = None) -> None:
    check_width(slices)
    if isinstance(slices, int):
        check_weight(fill_with, times=slices)


def _check_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if isinstance(start, str | bytes | list | tuple) and isinstance(iterable, list | tuple):
        check_weight(start, iterable)


def _check_urlize(value: Any, trim_url_limit: Any = None, nofollow: Any = False,
                  target: Any = None, rel: Any = None, *args: Any, **kwargs: Any) -> None:
    text = str(value)
    links = text.count(" ") + text.count("\n") + 1
    check_weight(text, times=3, extra=links * (weight(target or "") + weight(rel or "")))


def _check_tojson(value: Any, indent: Any = None) -> None:
    check_width(indent)
    check_weight(value, times=1 + (indent if isinstance(indent, int) and indent > 0 else 0))


FILTER_CHECKS: dict[str, Callable[..., object]] = {
    "join": _check_join,
    "replace": lambda s, old, new, count=None: check_replace(
        str(s), str(old), str(new), -1 if count is None else count),
    "center": lambda value, width=80: check_width(width),
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "batch": _check_batch,
    "slice": _check_slice,
    "sum": _check_sum,
    "urlize": _check_urlize,
    "tojson": _check_tojson,
    "pprint": lambda value: check_weight(value),
    "string": lambda value: check_weight(value),
}


# -- rendering within the budgets -----------------------------------------------------------
