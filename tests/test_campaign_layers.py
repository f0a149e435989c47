"""The package's layers: the campaign wires the stages together, and nothing below it
imports it back. Imports are read from the source (every import statement, in functions and
under TYPE_CHECKING too: a circle of ideas is a circle even when it is not one at run time).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "invitemail"
# What the campaign hands work to: none of these, nor anything they import, imports it.
BELOW_THE_CAMPAIGN = ["invitemail.pool", "invitemail.check", "invitemail.outcome",
                      "invitemail.render.context", "invitemail.mime.wording",
                      "invitemail.render.failures", "invitemail.inputs.kept_rows"]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@functools.cache  # the source does not change while the tests run
def _graph() -> dict[str, set[str]]:
    """Each module -> the package's modules it imports (a package's own __init__ aside)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                base = node.module or ""
                targets |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
        graph[name] = {t for t in targets & modules.keys()
                       if t != name and not name.startswith(t + ".")}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for imported in graph[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


@pytest.mark.parametrize("module", BELOW_THE_CAMPAIGN)
def test_what_the_campaign_hands_work_to_never_imports_it(module: str) -> None:
    graph = _graph()
    assert module in graph
    assert "invitemail.campaign" not in _reachable(graph, module)


def test_the_campaign_hands_its_work_to_those_modules() -> None:
    imported = _graph()["invitemail.campaign"]
    assert {"invitemail.pool", "invitemail.check", "invitemail.outcome",
            "invitemail.render.context", "invitemail.mime.wording"} <= imported


def test_the_package_has_no_import_circle() -> None:
    graph = _graph()
    circles = sorted(sorted(c) for c in [{m} | {n for n in _reachable(graph, m)
                                                if m in _reachable(graph, n)}
                                         for m in graph] if len(c) > 1)
    assert circles == []
