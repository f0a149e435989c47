"""Every use of Jinja2 beyond its documented API, in one place.

The renderer needs a few things Jinja does not offer through its documented API: rewriting
a template's syntax tree between parsing and compiling (the sandbox's bounds, the
skeleton's markers), parsing a template as written, compiling a template from a tree built
in code, running a compiled template without the traceback rewriting of ``render``,
hooking the sandbox's calls, ``str.format`` and template loads, and standing in for an
included template. Each is done here, behind a function or a hook method with a name of our
own; the rest of render/ uses only these and Jinja's documented API.

These internals can change in any Jinja release: pyproject.toml bounds jinja2 to
TESTED_RANGE, and tests/test_jinja_contract.py checks each of them by name, so that a new
release that moves one fails a test there before a message renders wrong.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["TESTED_RANGE", "AdaptedSandbox", "InterceptedInclude", "context_maker",
           "join_as_compiled", "leaned_on", "parse_as_written", "passes_argument",
           "render_chunks", "render_shared", "standing_in", "template_from_tree"]

# The Jinja2 releases the contract test passed on; pyproject.toml says the same.
TESTED_RANGE: str = ">=3.1,<3.2"


class AdaptedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with hooks where Jinja has none. Each hook does nothing
    here; a subclass overrides the ones it needs."""

    # -- the hooks ----------------------------------------------------------------------

    def rewrite(self, tree: nodes.Template, name: str | None) -> nodes.Template:
        """The syntax tree of template ``name`` before it is compiled."""
        return tree

    def before_load(self, name: str) -> None:
        """Called before every template load: an include, an import, an extends (a template
        an include already stands in for is not loaded again)."""

    def before_call(self, obj: Any, args: tuple[Any, ...], *,
                    recursive_loop: bool) -> tuple[Any, ...]:
        """Called before a template calls ``obj`` (a macro, a method, ``loop(...)`` of a
        recursive loop when ``recursive_loop``); returns the arguments to call it with."""
        return args

    def after_call(self, result: Any) -> Any:
        """What a call from a template returns."""
        return result

    def checked_format(self, text: str, format: Callable[..., str]) -> Callable[..., str]:
        """What a template's ``text.format`` (or ``format_map``) becomes; ``format`` is the
        sandbox's own safe formatter."""
        return format

    def included(self, name: str, load: Callable[[], jinja2.Template]) -> Any:
        """What ``{% include %}`` (and ``extends``, ``import``) of ``name`` uses: ``load()``
        loads the template; an :class:`InterceptedInclude` may stand in for it."""
        return load()

    # -- where Jinja calls them ---------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return self.rewrite(super()._parse(source, name, filename), name)

    @jinja2.utils.internalcode
    def _load_template(self, name: str,
                       globals: MutableMapping[str, Any] | None) -> jinja2.Template:
        self.before_load(name)
        return super()._load_template(name, globals)

    def call(__self, __context: Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        args = __self.before_call(__obj, args, recursive_loop=isinstance(__obj, LoopContext))
        return __self.after_call(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        return self.checked_format(value.__self__, wrapper)

    def get_template(self, name: str | jinja2.Template, parent: str | None = None,
                     globals: MutableMapping[str, Any] | None = None) -> Any:
        if parent is None or not isinstance(name, str):
            return super().get_template(name, parent, globals)
        return self.included(name, lambda: super(AdaptedSandbox, self).get_template(
            name, parent, globals))


class _Variables:
    """The variables an include would render with, kept until the stand-in has answered."""

    __slots__ = ("vars",)

    def __init__(self, vars: dict[str, Any]) -> None:
        self.vars = vars


class InterceptedInclude:
    """Stands in for an included template: what ``{% include %}`` needs of one
    (``new_context``, ``root_render_func``), with :meth:`render_include` deciding what an
    include with the whole context (not inside a loop or a macro) gives."""

    def __init__(self, template: jinja2.Template) -> None:
        self.template = template

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
        yield from self.render_include(context.vars)

    def render_include(self, variables: dict[str, Any]) -> Iterator[str]:
        """The include's output for ``variables``; by default, as Jinja renders it."""
        return render_shared(self.template, variables)


def render_shared(template: jinja2.Template, variables: dict[str, Any]) -> Iterator[str]:
    """``template``'s output with ``variables`` as an include renders it (the context's
    variables shared, not copied)."""
    return template.root_render_func(template.new_context(variables, True))


NewContext = Callable[[dict[str, Any]], Context]  # a template's contexts (context_maker)


def render_chunks(template: jinja2.Template, variables: dict[str, Any], *,
                  new_context: NewContext | None = None) -> Iterator[str]:
    """``template``'s output, without ``render``'s traceback rewriting (the caller catches
    every error and renders in full to report it). ``new_context``: the template's
    :func:`context_maker`, for a template rendered many times."""
    context = template.new_context(variables) if new_context is None else new_context(variables)
    return template.root_render_func(context)


def context_maker(template: jinja2.Template) -> NewContext:
    """What ``template.new_context(variables)`` makes, for less: the template's globals (a
    ChainMap, which Jinja copies key by key, in Python, twice for every context) are copied
    into a dict once. The environment's globals are all set when it is made (sandbox.py)
    and never changed after."""
    environment, name, blocks = template.environment, template.name, template.blocks
    context_class = environment.context_class
    shared = dict(template.globals)

    def new_context(variables: dict[str, Any]) -> Context:
        # As jinja2.runtime.new_context writes it (the variables over the globals).
        return context_class(environment, {**shared, **variables}, name, blocks,
                             globals=shared)

    return new_context


def parse_as_written(environment: jinja2.Environment, source: str,
                     name: str | None) -> nodes.Template:
    """The syntax tree of ``source`` as written, without :meth:`AdaptedSandbox.rewrite`."""
    return Parser(environment, source, name).parse()


def template_from_tree(environment: jinja2.Environment, tree: nodes.Template) -> jinja2.Template:
    """A template compiled from a syntax tree built in code."""
    tree.set_environment(environment)
    code = environment.compile(tree)
    return environment.template_class.from_code(environment, code,
                                                environment.make_globals(None))


def join_as_compiled(eval_ctx: nodes.EvalContext, operands: tuple[Any, ...]) -> str:
    """``a ~ b ~ c`` as Jinja's compiled code joins it (markup-aware under autoescape)."""
    join = markup_join if eval_ctx.volatile or eval_ctx.autoescape else str_join
    return join(operands)


def passes_argument(function: Any) -> bool:
    """Whether Jinja passes ``function`` (a filter or a test) a first argument of its own:
    the context, the eval context or the environment (``pass_context`` and the like mark
    the function with an attribute)."""
    return getattr(function, "jinja_pass_arg", None) is not None


def standing_in(wrapper: Callable[..., Any], function: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` in place of the filter or test ``function``, given the same first
    argument by Jinja (the mark is copied with the function's attributes)."""
    return functools.wraps(function)(wrapper)


def leaned_on() -> dict[str, inspect.Signature]:
    """The signatures of the internals this module relies on (the contract test compares
    them with what it expects)."""
    from jinja2.environment import Environment, Template

    return {
        "Environment._parse": inspect.signature(Environment._parse),
        "Environment._load_template": inspect.signature(Environment._load_template),
        "SandboxedEnvironment.call": inspect.signature(ImmutableSandboxedEnvironment.call),
        "SandboxedEnvironment.wrap_str_format":
            inspect.signature(ImmutableSandboxedEnvironment.wrap_str_format),
        "Template.from_code": inspect.signature(Template.from_code),
        "Template.new_context": inspect.signature(Template.new_context),
        "Context.__init__": inspect.signature(Context.__init__),
        "Parser.__init__": inspect.signature(Parser.__init__),
    }
