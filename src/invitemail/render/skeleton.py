"""The skeleton fast path: a group's message rendered once, with markers where the
registrant's values go, and filled in for each registrant.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import nodes

from invitemail.render.body import SKELETON_MARK, SKELETON_MARK_END, Body, PartLayout
from invitemail.render.includes import IncludeCachingEnvironment
from invitemail.render.jinja_adapter import context_maker, render_chunks, template_from_tree
from invitemail.render.sandbox import MAX_LOOP_STEPS, render_bounded
from invitemail.render.sizes import MAX_OUTPUT

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


class SkeletonEnvironment(IncludeCachingEnvironment):
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

    def rewrite(self, tree: nodes.Template, name: str | None) -> nodes.Template:
        tree = super().rewrite(tree, name)
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

    def skeleton(self, names: list[str], context: Mapping[str, Any]) -> Skeleton | None:
        """The parts ``names`` rendered with markers for ``context``'s group; None when a
        template is not fit or the render fails (the full render then says why)."""
        outputs = []
        try:
            for name in names:
                if not self.closure_safe(name):
                    return None
                self.steps_left = MAX_LOOP_STEPS
                outputs.append(render_bounded(self.get_template(name),
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
        return Skeleton(parts, self._filler(slots), len(slots), outputs[-1])

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
            filler = self._fillers[slots] = template_from_tree(
                self.base, nodes.Template(body, lineno=1))
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


class Skeleton:
    """A group's three parts with their slots, and the template that fills the slots."""

    __slots__ = ("filler", "html", "html_slots", "layouts", "new_context", "parts", "slots")

    def __init__(self, parts: list[list[str | int]], filler: jinja2.Template,
                 slots: int, html: str) -> None:
        self.parts = parts
        self.layouts = (PartLayout(parts[1]), PartLayout(parts[2]))  # the text, the HTML
        self.filler = filler
        self.new_context = context_maker(filler)  # a context per message, made for less
        self.slots = slots
        self.html = html  # the HTML part with its markers
        self.html_slots = sorted({p for p in parts[-1] if type(p) is int})

    def fill(self, context: Mapping[str, Any]) -> tuple[str, Body, Body] | None:
        """The subject, text and HTML for ``context`` (the group's, with a registrant of
        its own); None when a value fails (the full render says why)."""
        filler = self.filler
        try:
            # The whole context, as a full render has it (a filter may look at it).
            variables = context if type(context) is dict else dict(context)  # copied there
            values = "".join(render_chunks(filler, variables, new_context=self.new_context)
                             ).split(_SEPARATOR) \
                if self.slots else []
        except Exception:
            return None
        if len(values) != self.slots:
            return None  # a value held NUL
        subject = "".join([p if type(p) is str else values[p]  # type: ignore[index]
                           for p in self.parts[0]])
        text = Body.filled(self.layouts[0], values)
        # A value with "<" or ">" could open or close an element, a comment or a <style>
        # block: the skeleton then does not stand for this document.
        plain = not any("<" in values[i] or ">" in values[i] for i in self.html_slots)
        html = Body.filled(self.layouts[1], values, markup=self.html if plain else None)
        if len(text.text) > MAX_OUTPUT or len(html.text) > MAX_OUTPUT \
                or len(subject) > MAX_OUTPUT:
            return None
        return subject, text, html
