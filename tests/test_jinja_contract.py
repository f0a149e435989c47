"""The Jinja2 internals invitemail.render.jinja_adapter leans on, checked one by one.

When a new Jinja2 release changes any of them, a test here fails by name, before a message
renders wrong; then adapt jinja_adapter.py (and raise the bound in pyproject.toml).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jinja2
import pytest
from jinja2 import nodes
from markupsafe import Markup
from packaging.requirements import Requirement

from invitemail.render import jinja_adapter
from invitemail.render.jinja_adapter import (
    AdaptedSandbox,
    InterceptedInclude,
    join_as_compiled,
    parse_as_written,
    passes_argument,
    render_chunks,
    render_shared,
    standing_in,
    template_from_tree,
)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = {
    "page": '{% include "part" %}|{% import "macros" as m %}{{ m.hi() }}',
    "part": "part {{ who }}",
    "macros": "{% macro hi() %}hi{% endmacro %}",
    "child": '{% extends "base" %}{% block b %}child{% endblock %}',
    "base": "[{% block b %}{% endblock %}]",
    "solo": '{% include "part" %}!',
}


class Recording(AdaptedSandbox):
    """Every hook, recording what Jinja handed it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(loader=jinja2.DictLoader(TEMPLATES), **options)
        self.events: list[tuple[str, object]] = []

    def rewrite(self, tree: nodes.Template, name: str | None) -> nodes.Template:
        self.events.append(("rewrite", name))
        for data in tree.find_all(nodes.TemplateData):
            data.data = data.data.replace("REWRITE", "rewritten")
        return tree

    def before_load(self, name: str) -> None:
        self.events.append(("load", name))

    def before_call(self, obj: Any, args: tuple[Any, ...], *,
                    recursive_loop: bool) -> tuple[Any, ...]:
        self.events.append(("call", recursive_loop))
        return args

    def after_call(self, result: Any) -> Any:
        self.events.append(("result", result))
        return result

    def checked_format(self, text: str, format: Callable[..., str]) -> Callable[..., str]:
        self.events.append(("format", text))
        return lambda *args, **kwargs: format(*args, **kwargs).upper()


def _requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = [Requirement(d) for d in project["dependencies"] if d.startswith("jinja2")]
    assert len(found) == 1
    return found[0]


def test_contract_pyproject_bounds_jinja2_as_the_adapter_says() -> None:
    requirement = _requirement()
    assert str(requirement.specifier) == ",".join(
        sorted(jinja_adapter.TESTED_RANGE.split(",")))
    assert any(spec.operator == "<" for spec in requirement.specifier), "no upper bound"
    assert requirement.specifier.contains(version("jinja2")), (
        f"jinja2 {version('jinja2')} is installed, outside {requirement.specifier}")


def test_contract_private_signatures_are_as_the_adapter_calls_them() -> None:
    signatures = {name: list(signature.parameters)
                  for name, signature in jinja_adapter.leaned_on().items()}
    assert signatures == {
        "Environment._parse": ["self", "source", "name", "filename"],
        "Environment._load_template": ["self", "name", "globals"],
        "SandboxedEnvironment.call": ["_SandboxedEnvironment__self",  # (mangled)
                                      "_SandboxedEnvironment__context",
                                      "_SandboxedEnvironment__obj", "args", "kwargs"],
        "SandboxedEnvironment.wrap_str_format": ["self", "value"],
        "Template.from_code": ["environment", "code", "globals", "uptodate"],
        "Template.new_context": ["self", "vars", "shared", "locals"],
        "Context.__init__": ["self", "environment", "parent", "name", "blocks", "globals"],
        "Parser.__init__": ["self", "environment", "source", "name", "filename", "state"],
    }


def test_contract_every_parsed_template_goes_through_rewrite() -> None:
    env = Recording()
    assert env.from_string("a REWRITE").render() == "a rewritten"
    assert env.get_template("page").render(who="x") == "part x|hi"
    rewritten = [name for event, name in env.events if event == "rewrite"]
    assert rewritten == [None, "page", "part", "macros"]


def test_contract_includes_imports_and_extends_load_through_before_load() -> None:
    env = Recording()
    env.get_template("page").render(who="x")
    assert env.get_template("child").render() == "[child]"
    loads = [name for event, name in env.events if event == "load"]
    assert loads == ["page", "part", "macros", "child", "base"]


def test_contract_calls_go_through_before_and_after_call() -> None:
    env = Recording()
    text = env.from_string(
        "{% macro m() %}M{% endmacro %}{{ m() }}{{ 'a,b'.split(',')|join('+') }}"
        "{% for k in [[[]], []] recursive %}<{{ loop(k) if k else '' }}>{% endfor %}").render()
    assert text == "Ma+b<<>><>"
    calls = [flag for event, flag in env.events if event == "call"]
    assert calls.count(True) == 1  # loop(k), once: marked as a recursive loop's call
    assert calls.count(False) >= 2  # the macro and the method
    results = [value for event, value in env.events if event == "result"]
    assert ["a", "b"] in results  # what the method returned passed through after_call


def test_contract_str_format_goes_through_checked_format() -> None:
    env = Recording()
    assert env.from_string("{{ 'x{}'.format('y') }}").render() == "XY"
    assert env.from_string("{{ 'x{a}'.format_map({'a': 'y'}) }}").render() == "XY"
    formats = [value for event, value in env.events if event == "format"]
    assert list(dict.fromkeys(formats)) == ["x{}", "x{a}"]


class Constant(InterceptedInclude):
    def render_include(self, variables: dict[str, Any]) -> Iterator[str]:
        yield f"<cached {variables['who']}>"


class Intercepting(AdaptedSandbox):
    def included(self, name: str, load: Callable[[], jinja2.Template]) -> Any:
        return Constant(load()) if name == "part" else load()


def test_contract_include_asks_new_context_then_root_render_func() -> None:
    env = Intercepting(loader=jinja2.DictLoader(TEMPLATES))
    assert env.get_template("solo").render(who="x") == "<cached x>!"
    # A template-level name (the import's) is a local: rendered by the template itself.
    assert env.get_template("page").render(who="x") == "part x|hi"
    # Inside a loop the include has locals: rendered by the template itself.
    loop = env.from_string('{% for who in ["a"] %}{% include "part" %}{% endfor %}')
    assert loop.render(who="x") == "part a"
    assert env.get_template("child").render() == "[child]"  # extends passes through
    # The compiled include calls exactly this pair: the stand-in provides both.
    code = env.compile('{% include "part" %}', raw=True)
    assert "template.root_render_func(template.new_context(context.get_all(), True," in code


def test_contract_default_include_renders_as_jinja() -> None:
    env = Intercepting(loader=jinja2.DictLoader(TEMPLATES))
    plain = InterceptedInclude(env.get_template("part"))
    assert "".join(plain.render_include({"who": "y"})) == "part y"
    assert plain.name == "part"  # everything else is the template's


def test_contract_parse_as_written_skips_rewrite() -> None:
    env = Recording()
    tree = parse_as_written(env, "a REWRITE {{ b }}", "t")
    assert isinstance(tree, nodes.Template)
    assert [d.data for d in tree.find_all(nodes.TemplateData)] == ["a REWRITE "]
    assert env.events == []


def test_contract_template_from_tree_compiles_a_tree_built_in_code() -> None:
    env = jinja2.Environment(autoescape=False)
    tree = nodes.Template([nodes.Output([
        nodes.TemplateData("x="), nodes.Name("x", "load"), nodes.TemplateData("\x00"),
        nodes.Getattr(nodes.Name("y", "load"), "z", "load")])])
    template = template_from_tree(env, tree)
    assert template.render(x="<1>", y={"z": 2}) == "x=<1>\x002"
    assert "".join(render_chunks(template, {"x": 3, "y": {"z": 4}})) == "x=3\x004"
    assert "".join(render_shared(template, {"x": 5, "y": {"z": 6}})) == "x=5\x006"


def test_contract_render_chunks_raise_instead_of_rewriting() -> None:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    template = env.from_string("{{ missing.x }}")
    with pytest.raises(jinja2.UndefinedError):
        "".join(render_chunks(template, {}))


@pytest.mark.parametrize("autoescape", [True, False])
def test_contract_join_as_compiled_is_what_tilde_gives(autoescape: bool) -> None:
    env = jinja2.Environment(autoescape=autoescape)
    operands = ("<a>", Markup("<b>"), 3)
    expected = env.from_string("{{ a ~ b ~ c }}").render(a=operands[0], b=operands[1],
                                                          c=operands[2])
    assert join_as_compiled(nodes.EvalContext(env), operands) == expected


def test_contract_pass_marks_survive_a_stand_in() -> None:
    @jinja2.pass_context
    def where(context: Any, value: str) -> str:
        return f"{value}@{context['place']}"

    def plain(value: str) -> str:
        return value

    assert passes_argument(where) and not passes_argument(plain)
    seen: list[tuple[Any, ...]] = []

    def wrapper(*args: Any) -> Any:
        seen.append(args)
        return where(*args)

    env = jinja2.Environment()
    env.filters["where"] = standing_in(wrapper, where)
    assert env.from_string("{{ 'x'|where }}").render(place="here") == "x@here"
    assert isinstance(seen[0][0], jinja2.runtime.Context)
