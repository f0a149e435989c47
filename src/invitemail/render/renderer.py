"""Templates -> subject, text and HTML: with sandbox.py, the only module that uses Jinja2.

Templates run in Jinja2's sandbox (a template passed around by email must not reach Python
internals), bounded in time, memory and size (sandbox.py), with StrictUndefined (a misspelt
variable is an error, never an empty string or "None") and autoescape for HTML (a
registrant named ``<script>`` stays text).

Templates are looked up by ``LANG/NAME.PART``, first in the event's ``templates/`` folder,
then in the built-in ones, so an event overrides one file and keeps the rest. They are read
only from regular files inside those folders, never through a link (``templates/`` itself
being a link is refused too).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Hashable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.parser import Parser

from invitemail.errors import TemplateError
from invitemail.render.sandbox import (
    MAX_LOOP_STEPS,
    MAX_RENDER_MEMORY,
    MAX_RENDER_SECONDS,
    RenderGuard,
    TemplateLoader,
    render_bounded,
)
from invitemail.render.sandbox import BoundedEnvironment as _BoundedEnvironment
from invitemail.render.sizes import MAX_OUTPUT, TemplateTooCostly

# "followup" renders "thanks" or "missed" for each registrant (followup.py); those two are
# not picked by name.
BUILTIN_TEMPLATES = ("invitation", "reminder", "update", "cancellation", "followup")
PARTS = ("subject.txt", "txt", "html")
MAX_SKELETONS = 256  # skeletons kept at once (about 50 KB each)
SKELETON_TRIAL = 64  # skeletons made before asking whether groups repeat at all


def builtin_template_dir() -> Path:
    """Where the built-in templates are: inside the installed package, or in a checkout."""
    packaged = Path(str(resources.files("invitemail"))) / "templates" / "email"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "templates" / "email"
    if checkout.is_dir():
        return checkout
    raise TemplateError("the built-in templates are missing from the installation",
                        hint="reinstall invitemail")


Pieces = tuple[list[str | int], list[str]]
# Where a registrant's value goes in ``Rendered.html_skeleton``, a marker starts with this
# private-use character, and ends with the next one.
SKELETON_MARK, SKELETON_MARK_END = "\ue000", "\ue001"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    # The HTML with each registrant value replaced by a marker, shared by every message of
    # the group, when it was filled in from a skeleton and no value holds "<" or ">": the
    # document's elements are then the same in every message of the group (a value could
    # still complete a comment's or a <style> block's delimiter with the text beside its
    # marker: see inline.py). None otherwise.
    html_skeleton: str | None = None
    # The text and HTML parts as (pieces, values) when filled in from a skeleton: the pieces
    # are strings shared by the whole group and indexes into this registrant's values. What
    # lets the encoder reuse the encoding of everything but the lines that hold a value.
    text_pieces: Pieces | None = None
    html_pieces: Pieces | None = None


class Renderer:
    """Loads and renders one event's templates.

    ``fast=False`` renders every message in full, without the include cache and the
    skeletons: the plain path the fast one must match byte for byte.
    """

    def __init__(self, event_templates: Path | None = None, *, fast: bool = True) -> None:
        if event_templates is not None and event_templates.is_symlink():
            # Everything is read from inside the event folder: a link would take the
            # templates (and whatever they include) from anywhere.
            raise TemplateError(
                f"{event_templates}: is a link (to {os.readlink(event_templates)}); the "
                "templates are read only from a folder inside the event folder",
                hint=f"replace the link {event_templates} with a copy of the folder")
        self.event_templates = event_templates if event_templates and event_templates.is_dir() \
            else None
        self.builtin = builtin_template_dir().resolve()
        self._loader = TemplateLoader(p for p in (self.event_templates, self.builtin)
                                      if p is not None)
        self._options: dict[str, Any] = dict(
            loader=self._loader,
            guard=RenderGuard(),  # shared by the skeleton's environment
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                default_for_string=False),
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self.fast = fast
        self.env = _PartialCachingEnvironment(**self._options) if fast \
            else _BoundedEnvironment(**self._options)
        self._skeleton_env: _SkeletonEnvironment | None = None
        # (name, language, group) -> the skeleton (None: not fit), and the context it was
        # made from, but for the registrant
        self._skeletons: dict[tuple[str, str, Hashable],
                              tuple[_Skeleton | None, dict[str, Any]]] = {}
        self._built = 0  # skeletons made
        self._reused = 0  # messages filled from a skeleton made for an earlier registrant
        self.filled = 0  # messages filled in from a skeleton (the rest were rendered in full)

    def names(self) -> list[str]:
        """Every template a user can pick: the built-in ones and the event's own."""
        found = set(BUILTIN_TEMPLATES)
        if self.event_templates is not None:
            # Not through a link to a folder: a name is offered only where it can be read.
            # (A file that is a link is offered: reading it says what is wrong with it.)
            try:
                with os.scandir(self.event_templates) as languages:
                    folders = [e.path for e in languages if e.is_dir(follow_symlinks=False)]
                for folder in folders:
                    with os.scandir(folder) as entries:
                        found.update(e.name.removesuffix(".subject.txt") for e in entries
                                     if e.name.endswith(".subject.txt"))
            except OSError:  # unreadable: loading a template from it says so
                pass
        return sorted(found)

    def source_of(self, template_name: str) -> str:
        """The file a template is loaded from (for error messages and `init --templates`)."""
        return self._loader.entry(template_name) or template_name

    def _template(self, template_name: str, name: str) -> jinja2.Template:
        try:
            template: jinja2.Template = self.env.get_template(template_name)
            return template
        except jinja2.TemplateNotFound as err:
            missing = err.name or template_name
            if missing != template_name:
                raise TemplateError(f"{self.source_of(template_name)}: includes {missing!r}, "
                                    "which does not exist") from None
            raise TemplateError(
                f"template {name!r} has no {template_name}",
                hint=f"add templates/{template_name} to the event, or pick one of: "
                + ", ".join(self.names())) from None
        except jinja2.TemplateSyntaxError as err:
            where = f"{err.filename or self.source_of(template_name)}:{err.lineno}"
            raise TemplateError(f"{where}: {err.message}",
                                hint="fix the template's syntax") from None

    def render(self, name: str, language: str, context: Mapping[str, Any], *,
               row: str = "", group: Hashable | None = None) -> Rendered:
        """Render the three parts of ``name`` for one registrant.

        ``row`` (``file:line`` of the registrant) goes into error messages, so an undefined
        name points at both the template line and the registrant.

        ``group`` says that registrants given the same group share the context but for
        ``registrant``: the message is then filled in from a skeleton rendered once for the
        group (see :class:`_SkeletonEnvironment`), which gives the same text as rendering it
        in full. The claim is checked: a skeleton is used only for a context whose every
        other value is the very object it was made from (the context's parts are never
        changed), and is made again otherwise. When groups turn out to have one registrant
        each (a personal join link in every row), new groups are rendered in full.
        """
        if group is not None and self.fast and "registrant" in context:
            skeleton = self._skeleton(name, language, context, group)
            if skeleton is not None:
                filled = skeleton.fill(context)
                if filled is not None:
                    self.filled += 1
                    return filled
        return self._render_full(name, language, context, row)

    def _skeleton(self, name: str, language: str, context: Mapping[str, Any],
                  group: Hashable) -> _Skeleton | None:
        key = (name, language, group)
        made = self._skeletons.get(key)
        if made is not None and _same_shared(context, made[1]):
            self._reused += made[0] is not None
            return made[0]
        if self._built >= SKELETON_TRIAL and self._reused < self._built:
            # Groups have one registrant each (a personal join link in every row): a
            # skeleton costs a little more than the full render it replaces.
            return None
        self._built += 1
        if self._skeleton_env is None:
            self._skeleton_env = _SkeletonEnvironment(self.env, **self._options)
        skeleton = self._skeleton_env.skeleton(
            [f"{language}/{name}.{part}" for part in PARTS], context)
        if len(self._skeletons) >= MAX_SKELETONS:
            self._skeletons.clear()
        self._skeletons[key] = (skeleton, {k: v for k, v in context.items()
                                           if k != "registrant"})
        return skeleton

    def _render_full(self, name: str, language: str, context: Mapping[str, Any],
                     row: str) -> Rendered:
        parts = []
        for part in PARTS:
            template_name = f"{language}/{name}.{part}"
            template = self._template(template_name, name)
            try:
                output = render_bounded(template, context)
            except jinja2.UndefinedError as err:
                where = _template_line(err, self)
                raise TemplateError(f"{where}: {_undefined_message(err, where)}"
                                    + (f" (rendering for {row})" if row else ""),
                                    hint="the README lists every variable a template can use"
                                    ) from None
            except jinja2.exceptions.SecurityError as err:
                raise TemplateError(f"{_template_line(err, self)}: not allowed in a template: "
                                    f"{err}") from None
            except TemplateTooCostly as err:
                raise TemplateError(f"{err}; is there a runaway loop?",
                                    hint=RUNAWAY_HINT) from None
            except jinja2.TemplateError as err:
                raise TemplateError(f"{_template_line(err, self)}: {err}"
                                    + (f" (rendering for {row})" if row else "")) from None
            except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as err:
                raise TemplateError(f"{_template_line(err, self)}: {type(err).__name__}: {err}"
                                    + (f" (rendering for {row})" if row else "")) from None
            parts.append(output)
        subject, text, html = parts
        return Rendered(subject=" ".join(subject.split()), text=text, html=html)


class _PartialCachingEnvironment(_BoundedEnvironment):
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

    def get_template(self, name: str | jinja2.Template, parent: str | None = None,
                     globals: MutableMapping[str, Any] | None = None) -> Any:
        if parent is None or not isinstance(name, str):
            return super().get_template(name, parent, globals)
        wrapper = self._wrappers.get(name)
        if wrapper is None:
            template = super().get_template(name, parent, globals)
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
        tree = Parser(self, source, name).parse()  # as written, without any rewriting
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


class _CachedInclude:
    """What ``{% include %}`` needs of a template (``new_context``, ``root_render_func``),
    answering from the cache when the values the template reads have been seen."""

    def __init__(self, template: jinja2.Template, dependencies: frozenset[_Read],
                 env: _PartialCachingEnvironment) -> None:
        self.template = template
        self.dependencies = sorted(dependencies, key=repr)  # keys may be str and int
        self.env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.template, name)

    def new_context(self, vars: dict[str, Any] | None = None, shared: bool = False,
                    locals: Mapping[str, Any] | None = None) -> Any:
        if locals or vars is None:  # inside a loop or a macro: render as Jinja would
            return self.template.new_context(vars, shared, locals)
        return _Variables(vars)

    def root_render_func(self, context: Any) -> Iterator[str]:
        if not isinstance(context, _Variables):
            yield from self.template.root_render_func(context)
            return
        key = self._key(context.vars)
        if key is None:
            yield from self.template.root_render_func(
                self.template.new_context(context.vars, True))
            return
        cache = self.env.partial_cache
        text = cache.get(key)
        if text is None:
            text = "".join(self.template.root_render_func(
                self.template.new_context(context.vars, True)))
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


class _Variables:
    """The variables an include would render with, kept until the cache has answered."""

    __slots__ = ("vars",)

    def __init__(self, vars: dict[str, Any]) -> None:
        self.vars = vars


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


def _same_shared(context: Mapping[str, Any], shared: dict[str, Any]) -> bool:
    """Whether ``context`` holds the very objects of ``shared``, and nothing else but the
    registrant."""
    return len(context) == len(shared) + 1 and all(
        context.get(name, _ABSENT) is value for name, value in shared.items())


class _OutputTooLarge(Exception):
    pass


# -- the skeleton fast path -------------------------------------------------------------------
#
# Most of a message is the same for every registrant: the layout, the meeting details, the
# FAQ, the support contact. Only a few output expressions, such as
# ``{{ registrant.first_name or registrant.name or "deltager" }}``, read the registrant. A
# skeleton is the message rendered once with each of those expressions replaced by a marker;
# a registrant's message is the skeleton with the markers replaced by that registrant's
# values, which are computed by one small template holding only those expressions.
#
# That gives the same text as a full render only when nothing else sees the registrant or a
# marker, which is checked on each template's syntax tree: ``registrant`` may appear only
# in a "slot" (an expression printed by ``{{ }}`` that reads nothing but ``registrant``), and
# a slot, an include or a block may not sit inside something that could transform its
# output (a filter block, a macro, a call block, ``{% set %}`` of a block, an autoescape
# block); nothing may bind the name ``registrant`` (a loop, ``{% set %}``, an import, a
# macro), and every include sees the context. Anything else and the template is rendered in
# full for every registrant, as before.

_MARK_OPEN, _MARK_CLOSE = SKELETON_MARK, SKELETON_MARK_END
_SEPARATOR = "\x00"  # between the slot values: a CSV value never holds NUL

# Statements whose output reaches the message unchanged.
_PASS_THROUGH = (nodes.Template, nodes.Output, nodes.If, nodes.For, nodes.Block, nodes.With,
                 nodes.Scope)
# Expressions that read something other than their operands.
_OPAQUE = (nodes.ContextReference, nodes.DerivedContextReference, nodes.EnvironmentAttribute,
           nodes.ExtensionAttribute, nodes.ImportedName, nodes.InternalName)


class _NotSkeletal(Exception):
    """The skeleton render touched the registrant (the syntax check should have said so)."""


class _Poison:
    """Stands in for the registrant in a skeleton render: any use of it is an error."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise _NotSkeletal

    __getattr__ = __getitem__ = __str__ = __html__ = __bool__ = __len__ = __iter__ = _refuse
    __eq__ = __contains__ = __call__ = __format__ = _refuse
    __hash__ = None  # type: ignore[assignment]


class _SkeletonEnvironment(_PartialCachingEnvironment):
    """Parses every template with its slots replaced by markers, and keeps the slots."""

    def __init__(self, base: jinja2.Environment, **options: Any) -> None:
        super().__init__(**options)
        self.base = base  # the slots' own template is compiled and run there
        self.slots: list[tuple[nodes.Expr, bool]] = []  # expression, autoescaped
        self.safe: dict[str, bool] = {}
        self.references: dict[str, list[str] | None] = {}  # None: a dynamic include
        self._closures: dict[str, bool] = {}
        # A marker is U+E000, a nonce, the slot's number and U+E001: text of the event's own
        # cannot pass for one.
        self.nonce = secrets.token_hex(4)
        self._marks = re.compile(f"{_MARK_OPEN}{self.nonce}(\\d+){_MARK_CLOSE}")
        self._fillers: dict[tuple[int, ...], jinja2.Template] = {}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        autoescape = self.autoescape(name) if callable(self.autoescape) else self.autoescape
        safe = self._mark(tree, bool(autoescape), inside=False)
        if name is not None:
            self.safe[name] = safe
            self.references[name] = _references(tree)
        return tree

    def _mark(self, node: nodes.Node, autoescape: bool, *, inside: bool) -> bool:
        """Replace the slots under ``node`` by markers; False when the template is not fit
        for a skeleton. ``inside``: under a statement that could transform its output."""
        safe = True
        if isinstance(node, nodes.Output):
            for i, child in enumerate(node.nodes):
                if _is_slot(child):
                    if inside:
                        return False
                    node.nodes[i] = nodes.TemplateData(
                        f"{_MARK_OPEN}{self.nonce}{len(self.slots)}{_MARK_CLOSE}",
                        lineno=child.lineno)
                    self.slots.append((child, autoescape))
                elif _is_block_call(child):
                    safe = safe and not inside
                else:
                    safe = self._mark(child, autoescape, inside=inside) and safe
            return safe
        if isinstance(node, nodes.Name) and node.name in ("registrant", "self", "super"):
            return False
        if "registrant" in _bound_names(node):  # an import or a macro that takes the name
            return False
        if isinstance(node, nodes.Include) and not node.with_context:
            return False  # the included template cannot see the registrant: leave it be
        if isinstance(node, nodes.Include | nodes.Block) and inside:
            return False
        if isinstance(node, nodes.For) and node.recursive:
            return False  # ``loop(...)`` hands the body's output, markers and all, on
        inner = inside or not isinstance(node, (*_PASS_THROUGH, nodes.Expr))
        for inner_node in node.iter_child_nodes():
            safe = self._mark(inner_node, autoescape, inside=inner) and safe
        return safe

    def closure_safe(self, name: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether ``name`` and every template it includes, extends or imports are fit."""
        if name in self._closures:
            return self._closures[name]
        if name in seen:
            return True  # a cycle: the other templates in it decide
        self.get_template(name)
        references = self.references.get(name)
        found = bool(self.safe.get(name)) and references is not None and all(
            self.closure_safe(other, seen | {name}) for other in references)
        self._closures[name] = found
        return found

    def skeleton(self, names: list[str], context: Mapping[str, Any]) -> _Skeleton | None:
        """The parts ``names`` rendered with markers for ``context``'s group; None when a
        template is not fit or the render fails (the full render then says why)."""
        outputs = []
        try:
            for name in names:
                if not self.closure_safe(name):
                    return None
                self.steps_left = MAX_LOOP_STEPS
                outputs.append(_render_bounded(self.get_template(name),
                                               {**context, "registrant": _Poison()}))
        except Exception:  # any failure: the full render runs and reports it
            return None
        parts: list[list[str | int]] = []
        order: dict[int, int] = {}  # slot id -> position in the filler's output
        for output in outputs:
            pieces: list[str | int] = []
            for i, piece in enumerate(self._marks.split(output)):
                if i % 2 == 0:
                    if _MARK_OPEN in piece or _MARK_CLOSE in piece:
                        return None  # a value of the event's own carries a marker character
                    if piece:
                        pieces.append(piece)
                else:
                    slot = int(piece)
                    if slot >= len(self.slots):
                        return None
                    pieces.append(order.setdefault(slot, len(order)))
            parts.append(pieces)
        slots = tuple(sorted(order, key=order.__getitem__))
        return _Skeleton(parts, self._filler(slots), len(slots), outputs[-1])

    def _filler(self, slots: tuple[int, ...]) -> jinja2.Template:
        """One template printing the values of ``slots``, separated by NUL, each evaluated
        and escaped under its own template's autoescape setting (``~``, ``join`` and
        ``replace`` treat safe strings differently with it on)."""
        filler = self._fillers.get(slots)
        if filler is None:
            runs: list[tuple[bool, list[nodes.Expr]]] = []  # slots in a row, same setting
            for slot in slots:
                expression, autoescape = self.slots[slot]
                if not runs or runs[-1][0] != autoescape:
                    runs.append((autoescape, []))
                if slot != slots[0]:
                    runs[-1][1].append(nodes.TemplateData(_SEPARATOR))
                runs[-1][1].append(expression)
            body: list[nodes.Node] = [
                nodes.ScopedEvalContextModifier(
                    [nodes.Keyword("autoescape", nodes.Const(True))],
                    [nodes.Output(children, lineno=1)], lineno=1)
                if autoescape else nodes.Output(children, lineno=1)
                for autoescape, children in runs]  # autoescape is off in a nameless template
            tree = nodes.Template(body, lineno=1)
            tree.set_environment(self.base)
            code = self.base.compile(tree)
            filler = self._fillers[slots] = self.base.template_class.from_code(
                self.base, code, self.base.make_globals(None))
        return filler


def _is_slot(node: nodes.Node) -> bool:
    """An expression that reads ``registrant`` and nothing else."""
    names = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
    return (isinstance(node, nodes.Expr) and bool(names)
            and all(n.name == "registrant" and n.ctx == "load" for n in names)
            and not isinstance(node, _OPAQUE) and not any(True for _ in node.find_all(_OPAQUE)))


def _bound_names(node: nodes.Node) -> list[str]:
    """The names a statement binds that are not Name nodes of their own."""
    if isinstance(node, nodes.Import):
        return [node.target]
    if isinstance(node, nodes.FromImport):
        return [name if isinstance(name, str) else name[1] for name in node.names]
    if isinstance(node, nodes.Macro):
        return [node.name]
    return []


def _is_block_call(node: nodes.Node) -> bool:
    """``{{ super() }}`` or ``{{ self.name() }}``: a block's output, printed as it is."""
    if not (isinstance(node, nodes.Call) and not node.args and not node.kwargs
            and node.dyn_args is None and node.dyn_kwargs is None):
        return False
    target = node.node
    return (isinstance(target, nodes.Name) and target.name == "super") or (
        isinstance(target, nodes.Getattr) and isinstance(target.node, nodes.Name)
        and target.node.name == "self")


def _references(tree: nodes.Template) -> list[str] | None:
    """The templates ``tree`` includes, extends or imports; None when one is not a constant."""
    found = []
    kinds = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)
    for node in tree.find_all(kinds):
        assert isinstance(node, kinds)
        target = node.template
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            found.append(target.value)
        elif isinstance(target, nodes.List | nodes.Tuple) and all(
                isinstance(item, nodes.Const) and isinstance(item.value, str)
                for item in target.items):
            found.extend(item.value for item in target.items)  # type: ignore[attr-defined]
        else:
            return None
    return found


class _Skeleton:
    """A group's three parts with their slots, and the template that fills the slots."""

    __slots__ = ("filler", "html", "html_slots", "parts", "slots")

    def __init__(self, parts: list[list[str | int]], filler: jinja2.Template,
                 slots: int, html: str) -> None:
        self.parts = parts
        self.filler = filler
        self.slots = slots
        self.html = html  # the HTML part with its markers
        self.html_slots = sorted({p for p in parts[-1] if type(p) is int})

    def fill(self, context: Mapping[str, Any]) -> Rendered | None:
        """The message for ``context`` (the group's, with a registrant of its own); None
        when a value fails (the full render says why)."""
        filler = self.filler
        try:
            # The whole context, as a full render has it (a filter may look at it).
            variables = context if type(context) is dict else dict(context)  # copied there
            values = "".join(filler.root_render_func(filler.new_context(
                variables))).split(_SEPARATOR) if self.slots else []
        except Exception:
            return None
        if len(values) != self.slots:
            return None  # a value held NUL
        subject, text, html = ("".join([p if type(p) is str else values[p]  # type: ignore[index]
                                        for p in pieces]) for pieces in self.parts)
        if len(text) > MAX_OUTPUT or len(html) > MAX_OUTPUT or len(subject) > MAX_OUTPUT:
            return None
        # A value with "<" or ">" could open or close an element, a comment or a <style>
        # block: the skeleton then does not stand for this document.
        plain = not any("<" in values[i] or ">" in values[i] for i in self.html_slots)
        return Rendered(subject=" ".join(subject.split()), text=text, html=html,
                        html_skeleton=self.html if plain else None,
                        text_pieces=(self.parts[1], values),
                        html_pieces=(self.parts[2], values))


RUNAWAY_HINT = (f"a template gets {MAX_RENDER_SECONDS:g} s of CPU time, "
                f"{MAX_RENDER_MEMORY // (1024 * 1024)} MiB of memory and "
                f"{MAX_OUTPUT // (1024 * 1024)} MiB of text per part: look for a loop that never "
                "ends, a macro that calls itself, or a value multiplied into a huge one")


def _render_bounded(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render within the budgets (see :func:`invitemail.render.sandbox.render_bounded`)."""
    return render_bounded(template, context)


def _undefined_message(err: jinja2.UndefinedError, where: str) -> str:
    """Jinja's "'dict object' has no attribute 'x'" -> "registrant.x is undefined"."""
    message = err.message or str(err)
    found = re.fullmatch(r"'[^']*' has no attribute '([^']+)'", message)
    if not found:
        return message
    attribute = found.group(1)
    name = attribute
    path, _, line = where.rpartition(":")
    try:
        source = Path(path).read_text(encoding="utf-8").splitlines()[int(line) - 1]
    except (OSError, ValueError, IndexError):
        source = ""
    dotted = re.search(r"([A-Za-z_][\w.]*)\." + re.escape(attribute) + r"\b", source)
    if dotted:
        name = f"{dotted.group(1)}.{attribute}"
    if name.startswith("registrant."):
        return f"{name} is undefined: the registrant list has no column {attribute!r}"
    return f"{name} is undefined"


def _template_line(err: BaseException, renderer: Renderer) -> str:
    """``file:line`` of the template frame an error came from (Jinja rewrites tracebacks)."""
    tb: TracebackType | None = err.__traceback__
    found = ""
    roots = [str(p) for p in (renderer.event_templates, renderer.builtin) if p is not None]
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if any(filename.startswith(root) for root in roots):
            found = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found or "template"

