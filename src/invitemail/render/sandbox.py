"""What a template may cost: the bounded sandbox.

renderer.py decides what to render, template_files.py where templates come from, and this
module how much time and memory a render may take. A template is text from the event
folder, so it is treated as untrusted code. The hooks used here into Jinja's internals
(parsing, calls, ``str.format``, template loads) are jinja_adapter.py's.

- :class:`BoundedEnvironment` is Jinja's immutable sandbox with bounds: every loop step,
  call (macros, ``loop(...)`` of a recursive loop, methods), filter and include counts
  against a CPU-time budget per render; loops against a step budget; every operation that
  can build a big value from small ones (``*``, ``+``, ``~``, ``%``, ``join``, ``replace``,
  ``format``, padding, ``indent``, ``wordwrap``, ``batch``, ``sum``, ...) is checked
  before it runs, and what calls and filters return is checked after (sizes.py).
- :func:`render_bounded` renders with those budgets and, as the backstops for whatever the
  checks miss, a CPU timer (``ITIMER_VIRTUAL``, on the main thread, where Python delivers
  signals) that interrupts one long call the checks cannot see into, such as
  ``wordwrap(1)`` of a megabyte, and an address-space limit (``RLIMIT_AS``) lowered to what
  the process uses now plus MAX_RENDER_MEMORY for the render's duration and restored after
  it (memory.py). A template that runs out of any budget once is refused at once from then
  on (a run stops at the first template error anyway).
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import nodes

from invitemail.render.jinja_adapter import (
    AdaptedSandbox,
    join_as_compiled,
    passes_argument,
    standing_in,
)
from invitemail.render.memory import cap_address_space, restore_address_space
from invitemail.render.sizes import (
    FILTER_CHECKS,
    MAX_OUTPUT,
    TemplateTooCostly,
    check_result,
    check_string_method,
    check_weight,
    check_width,
    too_large,
    weight,
)
from invitemail.render.template_files import TemplateLoader

MAX_LOOP_STEPS = 1_000_000  # loop iterations per part: loops that write nothing add up too
MAX_POWER_BITS = 10_000  # a ** b past this many bits is a runaway computation
MAX_RENDER_SECONDS = 2.0  # CPU time per part: an ordinary part takes about a millisecond
MAX_RENDER_MEMORY = 512 * 1024 * 1024  # address space a render may add (the backstop)


# -- what a render may cost -----------------------------------------------------------------


class RenderGuard:
    """The budgets of the render under way, shared by the environments of one renderer, and
    the templates that already ran out of one (with the message that said so)."""

    def __init__(self, *, seconds: float = MAX_RENDER_SECONDS,
                 memory: int = MAX_RENDER_MEMORY) -> None:
        self.seconds = seconds
        self.memory = memory
        self.deadline = math.inf  # thread CPU time; infinite between renders
        self.steps_left = MAX_LOOP_STEPS
        self.costly: dict[str, str] = {}

    def tick(self) -> None:
        if time.thread_time() > self.deadline:
            self.deadline = math.inf  # the error's own handling may call back in
            raise TemplateTooCostly(f"it ran for more than {self.seconds:g} s of CPU time")

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left & 63 == 0:  # the clock costs more than a step that calls nothing
            if self.steps_left < 0:
                raise TemplateTooCostly(f"the loops ran more than {MAX_LOOP_STEPS} times")
            self.tick()


class BoundedEnvironment(AdaptedSandbox):
    """Jinja's sandbox, plus bounds on what a template can make the machine do.

    The immutable sandbox: a template cannot change a list or dict it is given, so what one
    registrant's message renders cannot leak into the next one's (the context's shared parts
    and the include cache rely on it).

    The sandbox keeps a template away from Python's internals; these keep it from taking
    the machine down (see the module's docstring). ``guard`` (an option) is the
    :class:`RenderGuard` shared with other environments of the same renderer.
    """

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, guard: RenderGuard | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.guard = guard if guard is not None else RenderGuard()
        self.globals["_bounded_loop"] = self._bounded_loop
        lipsum: Callable[..., Any] = self.globals["lipsum"]  # type: ignore[assignment]
        self.globals["lipsum"] = lambda n=5, html=True, min=20, max=100: lipsum(
            _at_most(n, 100), html, _at_most(min, 1000), _at_most(max, 1000))
        self.filters["_bounded_concat"] = _concat
        self.filters = {name: self._checked(name, f) for name, f in self.filters.items()}
        self.tests = {name: self._checked(name, test) for name, test in self.tests.items()}

    @property
    def steps_left(self) -> int:
        """The loop steps the render under way may still take."""
        return self.guard.steps_left

    @steps_left.setter
    def steps_left(self, value: int) -> None:
        self.guard.steps_left = value

    def _checked(self, name: str, function: Any) -> Callable[..., Any]:
        """``function`` (a filter or a test) counting against the time budget, with its
        arguments checked first (FILTER_CHECKS) and its result after."""
        check = _FILTER_CHECKS.get(name)
        passes = passes_argument(function)
        tick = self.guard.tick

        def checked(*args: Any, **kwargs: Any) -> Any:
            tick()
            if check is not None:
                check(*args[passes:], **kwargs)
            result = check_result(function(*args, **kwargs))
            tick()  # one long filter call counts as soon as it returns
            return result

        return standing_in(checked, function)  # the filter gets what it asked for

    def rewrite(self, tree: nodes.Template, name: str | None) -> nodes.Template:
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("_bounded_loop", "load", lineno=loop.lineno),
                                   [loop.iter], [], None, None, lineno=loop.lineno)
        # ``a ~ b`` is compiled to a plain join: make it a filter, which is checked. (A filter,
        # not a call: the expression still reads only the names it read.)
        for concat in list(tree.find_all(nodes.Concat)):
            operands = nodes.Tuple(concat.nodes, "load", lineno=concat.lineno)
            concat.nodes = [nodes.Filter(operands, "_bounded_concat", [], [], None, None,
                                         lineno=concat.lineno)]
        return tree

    def _bounded_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        step = self.guard.step
        for item in iterable:
            step()
            yield item

    def before_load(self, name: str) -> None:
        self.guard.tick()  # every include, import and extends: a template including itself

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any,
                   right: Any) -> Any:
        self.guard.tick()
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
                    check_weight(sequence, times=times)
        elif operator == "+" and isinstance(left, str | bytes | list | tuple):
            check_weight(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format_size(left, right)
        return super().call_binop(context, operator, left, right)

    def before_call(self, obj: Any, args: tuple[Any, ...], *,
                    recursive_loop: bool) -> tuple[Any, ...]:
        self.guard.tick()
        if recursive_loop and args:  # loop(...) of a recursive loop
            args = (self._bounded_loop(args[0]), *args[1:])
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str | bytes):
            check_string_method(owner, getattr(obj, "__name__", ""), args)
        return args

    def after_call(self, result: Any) -> Any:
        result = check_result(result)
        self.guard.tick()
        return result

    def checked_format(self, text: str, format: Callable[..., str]) -> Callable[..., str]:
        """``"{:>9999999}".format(x)``: check the format's widths before formatting."""
        widths = 0
        for spec in re.findall(r"\{[^{}]*:([^{}]*)\}", text):
            for number in re.findall(r"\d+", spec):
                widths += check_width(int(number))
        if re.search(r"\{[^{}]*:[^{}]*\{", text):
            raise jinja2.exceptions.SecurityError("a width taken from an argument is not allowed")

        def checked(*args: Any, **kwargs: Any) -> str:
            # Each field may print any argument, padded to its width.
            check_weight(*args, *kwargs.values(), times=text.count("{"),
                          extra=len(text) + widths)
            return format(*args, **kwargs)

        return checked


def _at_most(value: Any, limit: int) -> Any:
    return min(value, limit) if isinstance(value, int) else value


@jinja2.pass_eval_context
def _concat(eval_ctx: jinja2.nodes.EvalContext, operands: tuple[Any, ...]) -> str:
    """``a ~ b ~ c``, as Jinja compiles it, once the operands' sizes are checked."""
    check_weight(*operands)
    return join_as_compiled(eval_ctx, operands)


def _format_widths(text: Any) -> int:
    """``%``-formatting may not pad past MAX_WIDTH, nor take its width from an argument;
    the sum of the widths."""
    total = 0
    if isinstance(text, str):
        for width, precision in re.findall(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?",
                                           text):
            if "*" in (width, precision):
                raise jinja2.exceptions.SecurityError("a '*' width is not allowed")
            total += sum(check_width(int(n)) for n in (width, precision) if n)
    return total


def _check_format_size(text: Any, arguments: Any) -> None:
    """Each ``%`` may print the largest argument, padded: ``('%s' * 10**6) % big`` and
    ``('%9999s' * 10**6) % args`` are refused."""
    widths = _format_widths(text)
    values = arguments.values() if isinstance(arguments, Mapping) else \
        arguments if isinstance(arguments, tuple) else (arguments,)
    largest = max((weight(v) for v in values), default=0)
    if len(str(text)) + widths + str(text).count("%") * largest > MAX_OUTPUT:
        raise too_large()


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 \
            and exponent > 0 and exponent * math.log2(abs(base)) > MAX_POWER_BITS:
        raise jinja2.exceptions.SecurityError(f"{base} ** {exponent} is too large a number")


def _check_format_filter(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_format_size(value, kwargs or args)


_FILTER_CHECKS = {**FILTER_CHECKS, "format": _check_format_filter}


def render_bounded(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render, within the time, step, output and memory budgets of the template's
    environment (a BoundedEnvironment); TemplateTooCostly (``file:line: what``) when one
    runs out."""
    environment = template.environment
    guard: RenderGuard = environment.guard  # type: ignore[attr-defined]
    loader = environment.loader
    roots = loader.folders if isinstance(loader, TemplateLoader) else []
    name = template.name or ""
    if name in guard.costly:
        raise TemplateTooCostly(guard.costly[name])
    guard.steps_left = MAX_LOOP_STEPS
    try:
        restore = cap_address_space(guard.memory)
        timer = None
        try:
            guard.deadline = time.thread_time() + guard.seconds
            timer = _CpuTimer.arm(guard)
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise too_large()
                chunks.append(chunk)
            guard.tick()  # the last call may have run long
            return "".join(chunks)
        finally:
            guard.deadline = math.inf  # first: a timer that fires now finds nothing to stop
            if timer is not None:
                timer.disarm()
            restore_address_space(restore)
    except MemoryError as err:
        reason = f"it needs more than {guard.memory // (1024 * 1024)} MiB of memory"
        where = template_location(err, roots) or template.filename or name
        del err  # the traceback holds the frames that hold the memory
        guard.costly[name] = f"{where}: {reason}"
        raise TemplateTooCostly(guard.costly[name]) from None
    except TemplateTooCostly as err:
        where = template_location(err, roots) or template.filename or name
        guard.costly[name] = f"{where}: {err}"
        raise TemplateTooCostly(guard.costly[name]) from None


class _CpuTimer:
    """A process CPU-time alarm for the render under way on the main thread: when it fires
    while the render's deadline is set, the signal handler raises TemplateTooCostly in the
    middle of whatever Python code runs, a long filter call included. (The budget's own
    checks run between calls; this catches one call that runs on. A call in C, such as
    sorting, is interrupted as it returns; the size checks keep those short.)"""

    # The alarm comes a little after the budget, so the checks between calls normally
    # speak first; the timer is the backstop.
    SLACK = 1.5
    _active: RenderGuard | None = None
    _installed = False

    @classmethod
    def arm(cls, guard: RenderGuard) -> _CpuTimer | None:
        if threading.current_thread() is not threading.main_thread() \
                or not hasattr(signal, "setitimer") or cls._active is not None:
            return None  # only the main thread receives signals; renders do not nest
        if not cls._installed:
            signal.signal(signal.SIGVTALRM, cls._fired)
            cls._installed = True
        cls._active = guard
        signal.setitimer(signal.ITIMER_VIRTUAL, guard.seconds * cls.SLACK)
        return cls()

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        type(self)._active = None

    @classmethod
    def _fired(cls, signum: int, frame: object) -> None:
        guard = cls._active
        if guard is not None and guard.deadline != math.inf:
            guard.deadline = math.inf  # the error's own handling may call back in
            raise TemplateTooCostly(f"it ran for more than {guard.seconds:g} s of CPU time")


def template_location(err: BaseException, roots: Iterable[str]) -> str:
    """``file:line`` of the innermost template frame an error came from (Jinja rewrites
    tracebacks so that template frames carry the template's file and line); "" if none."""
    tb: TracebackType | None = err.__traceback__
    found = ""
    prefixes = tuple(roots)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if prefixes and filename.startswith(prefixes):
            found = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found
