"""The include cache: an included template rendered once for all registrants who would get
the same text from it (the meeting details, the FAQ, the support contact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes

from invitemail.errors import TemplateError
from invitemail.render.jinja_adapter import InterceptedInclude, parse_as_written, render_shared
from invitemail.render.sandbox import BoundedEnvironment


class IncludeCachingEnvironment(BoundedEnvironment):
    """Renders an included template once for all registrants who would get the same text.

    What an include (the meeting details, the FAQ, the support contact) renders is a
    function of what it reads. Its syntax tree says where it reads the context: each free
    name, and the chain of constant attributes and subscripts taken from it
    (``meeting.web_join_url``, ``support["phone"]``). Each time it is included, each chain
    is evaluated as Jinja evaluates it, and the text is kept under the exact values those
    chains give (with their types): a registrant whose values are the same gets the text
    without rendering, and one whose values differ in anything gets a render of its own.

    A chain whose value is not plain data (a method such as ``meeting.get``, an undefined
    attribute) is keyed by the longest part of it that is: ``meeting.get('join_url')`` and
    ``meeting.values()`` are keyed by the whole of ``meeting``. An include is rendered every
    time, as Jinja would, when it reads ``registrant``, when a name it reads is not plain
    data either (a macro, an imported module), when it is included inside a loop, a macro
    or next to names set around it, and when the tree cannot pin down what it reads (a
    dynamic include, an import, an extends).
    """

    MAX_CACHED = 4096  # texts kept at once (many personal join links make many groups)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.partial_cache: dict[tuple[object, ...], str] = {}
        self._wrappers: dict[str, _CachedInclude] = {}
        self._dependencies: dict[str, frozenset[_Read] | None] = {}

    def included(self, name: str, load: Callable[[], jinja2.Template]) -> Any:
        wrapper = self._wrappers.get(name)
        if wrapper is None:
            template = load()
            dependencies = self.dependencies(name)
            if dependencies is None:
                return template
            wrapper = self._wrappers[name] = _CachedInclude(template, dependencies, self)
        return wrapper

    def dependencies(self, name: str, seen: frozenset[str] = frozenset()
                     ) -> frozenset[_Read] | None:
        """What template ``name`` reads of its context, including what its own includes
        read; None when it cannot be cached."""
        if name in self._dependencies:
            return self._dependencies[name]
        if name in seen or self.loader is None:
            return None
        try:
            found = self._find_dependencies(name, seen | {name})
        except (jinja2.TemplateError, TemplateError):
            found = None  # missing or broken: the render says so, if it gets that far
        self._dependencies[name] = found
        return found

    def _find_dependencies(self, name: str, seen: frozenset[str]) -> frozenset[_Read] | None:
        assert self.loader is not None
        source = self.loader.get_source(self, name)[0]
        tree = parse_as_written(self, source, name)  # without the sandbox's rewriting
        if any(True for _ in tree.find_all((nodes.Extends, nodes.Import, nodes.FromImport))):
            return None
        found: set[_Read] = set()
        for include in tree.find_all(nodes.Include):
            target = include.template
            if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
                return None
            inner = self.dependencies(target.value, seen)
            if inner is None:
                return None
            found |= inner  # read from this template's context, a superset of what it reads
        free = meta.find_undeclared_variables(tree)
        if "registrant" in free or "lipsum" in free:  # one registrant's, or random text
            return None
        _collect_reads(tree, free, found)
        return frozenset(found)


# A read: a free name, and the constant attributes (True, name) and subscripts (False, key)
# taken from it, in order.
_Read = tuple[str, tuple[tuple[bool, str | int], ...]]


def _collect_reads(node: nodes.Node, free: set[str], found: set[_Read]) -> None:
    """Every read of a name in ``free`` under ``node``, each with its longest chain of
    constant attributes and subscripts."""
    steps: list[tuple[bool, str | int]] = []
    inner = node
    while True:
        if isinstance(inner, nodes.Getattr):
            steps.append((True, inner.attr))
        elif isinstance(inner, nodes.Getitem) and isinstance(inner.arg, nodes.Const) \
                and type(inner.arg.value) in (str, int):
            steps.append((False, inner.arg.value))
        else:
            break
        inner = inner.node
    if isinstance(inner, nodes.Name) and inner.ctx == "load" and inner.name in free:
        found.add((inner.name, tuple(reversed(steps))))
        return
    for child in node.iter_child_nodes():
        _collect_reads(child, free, found)


class _CachedInclude(InterceptedInclude):
    """An included template answering from the cache when the values it reads have been
    seen."""

    def __init__(self, template: jinja2.Template, dependencies: frozenset[_Read],
                 env: IncludeCachingEnvironment) -> None:
        super().__init__(template)
        self.dependencies = sorted(dependencies, key=repr)  # keys may be str and int
        self.env = env

    def render_include(self, variables: dict[str, Any]) -> Iterator[str]:
        key = self._key(variables)
        if key is None:
            yield from render_shared(self.template, variables)
            return
        cache = self.env.partial_cache
        text = cache.get(key)
        if text is None:
            text = "".join(render_shared(self.template, variables))
            if len(cache) >= self.env.MAX_CACHED:
                cache.clear()
            cache[key] = text
        yield text

    def _key(self, variables: Mapping[str, Any]) -> tuple[object, ...] | None:
        """The template and the exact value of everything it reads; None when a value is
        not plain data (then the template is rendered)."""
        key: list[object] = [self.template.name]
        env_globals = self.env.globals
        for name, steps in self.dependencies:
            value = variables.get(name, _ABSENT)
            if name in env_globals and value is env_globals[name]:
                continue  # the environment's own function: the same for everyone
            if len(steps) == 1 and type(value) is dict and steps[0][1] not in _DICT_ATTRIBUTES:
                item = value.get(steps[0][1], _ABSENT)
                # Most reads: a text or a flag in a dict (keyed as _chain_value keys it).
                if type(item) is str:
                    key.append((1, item))
                    continue
                if item is True or item is False or item is None:
                    key.append((1, (type(item), item)))
                    continue
            found = _chain_value(self.env, value, steps)
            if found is None:
                return None
            key.append(found)
        return tuple(key)


_DICT_ATTRIBUTES = frozenset(dir(dict))  # what Jinja's getattr finds on a dict before its keys


def _chain_value(env: jinja2.Environment, value: Any,
                 steps: tuple[tuple[bool, str | int], ...]) -> tuple[int, object] | None:
    """``value`` with ``steps`` taken as Jinja takes them, frozen, with how many steps were
    taken: the whole chain when its value is plain data, else the longest part of it that
    is (the rest is a function of that part). None when not even ``value`` is."""
    values = [value]
    for attribute, step in steps:
        if type(value) is dict and (not attribute or step not in _DICT_ATTRIBUTES) \
                and step in value:
            value = value[step]  # what env.getattr/getitem give, without their detours
        else:
            try:
                value = env.getattr(value, str(step)) if attribute else env.getitem(value, step)
            except Exception:  # the render meets it again, and reports it
                break
        values.append(value)
    for taken in range(len(values) - 1, -1, -1):
        try:
            return taken, _frozen(values[taken])
        except (_NotPlain, RecursionError):
            continue
    return None


class _NotPlain(Exception):
    pass


def _frozen(value: Any) -> object:
    """``value`` as a hashable key equal only to the key of a value that renders the same:
    the type is part of it (``1``, ``1.0`` and ``True`` compare equal in Python)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is bool or value is None:
        return kind, value
    if kind is float:
        return kind, repr(value)  # -0.0 == 0.0, and nan != nan
    if kind is dict:
        return kind, tuple((_frozen(k), _frozen(v)) for k, v in value.items())
    if kind is list or kind is tuple:
        return kind, tuple(_frozen(item) for item in value)
    if value is _ABSENT:
        return _ABSENT
    raise _NotPlain


_ABSENT = object()
