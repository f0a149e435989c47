"""Templates that try to take the machine down: each is stopped within the render budgets.

Every case runs ``invitemail check`` in a child process on an event whose ``invitation.txt``
holds the bomb on its second line, and asserts exit 1, a message naming the template and the
line, no traceback, and that the child finished within 60 s and below 1 GB (its peak RSS,
from ``wait4``). Time bombs stop at the CPU-time budget (2 s a part), growth bombs at a size
check or at the address-space cap (512 MiB above what the process uses).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.event import write_event

TIME = "it ran for more than 2 s of CPU time; is there a runaway loop?"
SIZE = "the output is larger than 2 MiB; is there a runaway loop?"
STEPS = "the loops ran more than 1000000 times; is there a runaway loop?"
MEMORY = "it needs more than 512 MiB of memory; is there a runaway loop?"
RECURSION = "RecursionError: maximum recursion depth exceeded"
OR = "\n"  # between messages of which either may come first

BOMBS: dict[str, tuple[str, str]] = {
    # The reported ones.
    "exponential-macro": (
        "{% macro a(n) %}{% if n %}{{ a(n-1) }}{{ a(n-1) }}{% endif %}{% endmacro %}{{ a(40) }}",
        TIME),
    "recursive-loop": (
        "{% for x in range(40) recursive %}{% if x %}{{ loop(range(x)) }}{% endif %}"
        "{% endfor %}", TIME),
    "join-of-repeated-list": ("{{ ((['x'*2000000])*4000)|join|length }}", SIZE),
    "replace-growth": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s|replace('a', 'aa') %}{% endfor %}{{ ns.s|length }}", SIZE),
    "format-filter-fields": ("{{ ('%s' * 400000)|format(*(('x' * 5,) * 400000)) }}", SIZE),
    "center-then-repeat": (
        "{% set ns = namespace(s='x') %}{% for i in range(100) %}"
        "{% set ns.s = (ns.s|center(9999)) * 100 %}{% endfor %}", SIZE),
    # Our own.
    "nested-loops-over-range": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        STEPS),
    "namespace-doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", SIZE),
    "list-doubling-with-plus": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
        "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}", SIZE + OR + TIME),
    "block-set-doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set block %}{{ ns.s }}"
        "{{ ns.s }}{% endset %}{% set ns.s = block %}{% endfor %}{{ ns.s|length }}", MEMORY),
    "multiplication-chain": ("{{ 'x' * 1000000 * 1000000 }}", SIZE),
    "percent-widths": ("{{ ('%9999s' * 100000) % (('x',) * 100000) }}", SIZE),
    "str-format-fields": ("{{ ('{0}' * 500000).format('x' * 1000) }}", SIZE),
    "str-format-widths": ("{{ ('{:9999}' * 100000).format(*(('x',) * 100000)) }}", SIZE),
    "indent-by-a-long-string": ("{{ ('\\n' * 1000000)|indent('x' * 1000) }}", SIZE),
    "wordwrap-with-a-long-wrapstring": (
        "{{ ('x ' * 1000000)|wordwrap(1, wrapstring='y' * 1000) }}", SIZE),
    "expandtabs": ("{{ ('\\t' * 1000000).expandtabs(10000) }}", SIZE),
    "batch-filled-to-a-billion": ("{{ range(10)|batch(10**9, 'x')|list|length }}", SIZE),
    "sum-of-lists": ("{{ ([range(100000)|list] * 20)|sum(start=[])|length }}", SIZE),
    "tojson-indented": ("{{ ([range(100000)|list] * 10)|tojson(indent=9999)|length }}", SIZE),
    "urlize-with-a-long-target": ("{{ ('a ' * 1000000)|urlize(target='t' * 1000) }}", SIZE),
    "string-of-nested-references": (
        "{% set a = ['x' * 100000] * 10 %}{% set b = [a] * 10 %}{% set c = [b] * 10 %}"
        "{{ ([c] * 10)|string|length }}", SIZE),
    "comparison-against-a-million-copies": (
        "{% set a = 'x' * 2000000 %}{{ ('x' * 1999999 ~ 'x') in [a] * 2000000 }}", SIZE),
    "map-then-join": ("{{ range(100000)|map('center', 9999)|join|length }}", MEMORY),
    "map-of-slow-filters": (
        "{{ range(100000)|map('center', 9999)|map('wordwrap', 5)|map('length')|sum }}", TIME),
    "dictsort-of-a-big-dict-in-a-loop": (
        "{% set d = dict.fromkeys(range(100000), 'x') %}{% for i in range(100000) %}"
        "{{ (d|dictsort|length) * 0 }}{% endfor %}", TIME),
    "lipsum-in-loops": (
        "{% for i in range(1000) %}{% for j in range(1000) %}"
        "{{ lipsum(100, false, 999, 1000)|length * 0 }}{% endfor %}{% endfor %}", TIME),
    "deep-recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", RECURSION),
    # One filter call that runs long on an input within every size limit: only a timer that
    # interrupts the call (or a check after it) sees it.
    "one-long-wordwrap": ("{{ ('a' * 1000000)|wordwrap(1)|length }}", TIME),
    "one-long-method-call": ("{{ ('a' * 1000000).splitlines()|length }}"
                             "{{ ('a' * 1000000)|wordwrap(1, break_long_words=true)|length }}",
                             TIME),
}


def _event(folder: Path, text: str, extra: dict[str, str] | None = None,
           rows: int = 2) -> Path:
    write_event(folder, [(f"Deltager {i}", f"d{i}@example.org", "da") for i in range(rows)])
    templates = folder / "templates" / "da"
    templates.mkdir(parents=True)
    (templates / "invitation.subject.txt").write_text("Invitation", encoding="utf-8")
    (templates / "invitation.html").write_text("<p>Invitation</p>", encoding="utf-8")
    (templates / "invitation.txt").write_text(text, encoding="utf-8")
    for name, body in (extra or {}).items():
        (templates / name).write_text(body, encoding="utf-8")
    return folder


def _check(folder: Path, **env: str) -> tuple[int, str, float, int]:
    """Run ``invitemail check FOLDER``: exit code, stderr, seconds, peak RSS in bytes."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "invitemail", "check", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **env})
    assert process.stderr is not None
    try:
        stderr = process.stderr.read().decode()  # ends when the child (and its workers) end
    finally:
        process.stderr.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, stderr, time.monotonic() - started, usage.ru_maxrss * 1024


def _assert_stopped(code: int, stderr: str, seconds: float, peak: int, *, where: str,
                    message: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr
    # A bomb may trip more than one budget; which comes first can depend on the machine.
    messages = "|".join(re.escape(m) for m in message.split(OR))
    assert re.search(f"^Error: {re.escape(where)}:\\d+: (?:{messages})", stderr,
                     re.MULTILINE), stderr
    assert seconds < 60
    assert peak < 1024**3


@pytest.mark.parametrize("name", list(BOMBS))
def test_check_stops_a_template_bomb(tmp_path: Path, name: str) -> None:
    bomb, message = BOMBS[name]
    folder = _event(tmp_path / "event", "Kære deltager,\n" + bomb + "\n")
    code, stderr, seconds, peak = _check(folder)
    where = f"{folder}/templates/da/invitation.txt"
    _assert_stopped(code, stderr, seconds, peak, where=where, message=message)
    if message != RECURSION:
        assert f"{where}:2: " in stderr  # the bomb's own line


def test_check_stops_an_include_that_includes_itself_twice(tmp_path: Path) -> None:
    """No loop and no macro: 2**40 includes, each of which costs a little time."""
    folder = _event(tmp_path / "event", "{% set n = 0 %}{% include 'da/x.txt' %}", {
        "x.txt": "{% if n < 40 %}{% set n = n + 1 %}{% include 'da/x.txt' %}"
                 "{% include 'da/x.txt' %}{% endif %}"})
    code, stderr, seconds, peak = _check(folder)
    _assert_stopped(code, stderr, seconds, peak, where=f"{folder}/templates/da/x.txt",
                    message=TIME)


@pytest.mark.slow
def test_check_stops_a_bomb_in_the_worker_processes_too(tmp_path: Path) -> None:
    """20,000 registrants: the messages are checked by worker processes, which have the
    same budgets, and each pays for the bomb once, not once per registrant."""
    bomb, message = BOMBS["exponential-macro"]
    folder = _event(tmp_path / "event", bomb, rows=20_000)
    code, stderr, seconds, peak = _check(folder, INVITEMAIL_WORKERS="2")
    _assert_stopped(code, stderr, seconds, peak,
                    where=f"{folder}/templates/da/invitation.txt", message=message)
    assert stderr.count("Error: ") == 1
