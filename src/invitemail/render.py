"""Templates -> subject, text and HTML: the only module that uses Jinja2.

Templates run in Jinja2's sandbox (a template passed around by email must not reach Python
internals), with StrictUndefined (a misspelt variable is an error, never an empty string or
"None") and autoescape for HTML (a registrant named ``<script>`` stays text).

Templates are looked up by ``LANG/NAME.PART``, first in the event's ``templates/`` folder,
then in the built-in ones, so an event overrides one file and keeps the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from invitemail.errors import TemplateError

BUILTIN_TEMPLATES = ("invitation", "reminder", "update", "cancellation")
SHARED_KEY = "_shared"  # the context variable that names what registrants have in common
PARTS = ("subject.txt", "txt", "html")
MAX_OUTPUT = 2 * 1024 * 1024  # characters per part: a bigger one is a runaway template


def builtin_template_dir() -> Path:
    """Where the built-in templates are: inside the installed package, or in a checkout."""
    packaged = Path(str(resources.files("invitemail"))) / "templates" / "email"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "templates" / "email"
    if checkout.is_dir():
        return checkout
    raise TemplateError("the built-in templates are missing from the installation",
                        hint="reinstall invitemail")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    """Loads and renders one event's templates."""

    def __init__(self, event_templates: Path | None = None) -> None:
        self.event_templates = event_templates if event_templates and event_templates.is_dir() \
            else None
        self.builtin = builtin_template_dir()
        searchpath = [str(p) for p in (self.event_templates, self.builtin) if p is not None]
        self.env = _PartialCachingEnvironment(
            loader=jinja2.FileSystemLoader(searchpath),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                default_for_string=False),
            keep_trailing_newline=True,
            auto_reload=False,
        )

    def names(self) -> list[str]:
        """Every template a user can pick: the built-in ones and the event's own."""
        found = set(BUILTIN_TEMPLATES)
        if self.event_templates is not None:
            found.update(p.name.removesuffix(".subject.txt")
                         for p in self.event_templates.glob("*/*.subject.txt"))
        return sorted(found)

    def exists(self, name: str, language: str) -> bool:
        try:
            self.env.get_template(f"{language}/{name}.subject.txt")
        except jinja2.TemplateNotFound:
            return False
        except jinja2.TemplateSyntaxError:
            return True
        return True

    def load(self, name: str, languages: Iterable[str]) -> None:
        """Parse every part of ``name`` in each language, so syntax errors surface early."""
        for language in languages:
            for part in PARTS:
                self._template(f"{language}/{name}.{part}", name)

    def source_of(self, template_name: str) -> str:
        """The file a template was loaded from (for error messages and `init --templates`)."""
        for folder in (self.event_templates, self.builtin):
            if folder is not None and (folder / template_name).is_file():
                return str(folder / template_name)
        return template_name

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
               row: str = "") -> Rendered:
        """Render the three parts of ``name`` for one registrant.

        ``row`` (``file:line`` of the registrant) goes into error messages, so an undefined
        name points at both the template line and the registrant.
        """
        parts = []
        for part in PARTS:
            template_name = f"{language}/{name}.{part}"
            template = self._template(template_name, name)
            try:
                output = _render_bounded(template, context)
            except jinja2.UndefinedError as err:
                where = _template_line(err, self)
                raise TemplateError(f"{where}: {_undefined_message(err, where)}"
                                    + (f" (rendering for {row})" if row else ""),
                                    hint="the README lists every variable a template can use"
                                    ) from None
            except jinja2.exceptions.SecurityError as err:
                raise TemplateError(f"{_template_line(err, self)}: not allowed in a template: "
                                    f"{err}") from None
            except _OutputTooLarge:
                raise TemplateError(f"{self.source_of(template_name)}: the output is larger than "
                                    f"{MAX_OUTPUT // (1024 * 1024)} MiB; is there a runaway loop?"
                                    ) from None
            except jinja2.TemplateError as err:
                raise TemplateError(f"{_template_line(err, self)}: {err}"
                                    + (f" (rendering for {row})" if row else "")) from None
            except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as err:
                raise TemplateError(f"{_template_line(err, self)}: {type(err).__name__}: {err}"
                                    + (f" (rendering for {row})" if row else "")) from None
            parts.append(output)
        subject, text, html = parts
        return Rendered(subject=" ".join(subject.split()), text=text, html=html)


class _PartialCachingEnvironment(SandboxedEnvironment):
    """Renders each partial once per group of registrants that share it.

    A partial (``LANG/_name.*``, included by a template) holds what every registrant with
    the same language, join link and time zone gets: the meeting details, the FAQ, the
    support contact. It is rendered once per value of the context's ``_shared`` key and the
    text reused, which removes most of the per-registrant rendering. A partial therefore
    cannot use ``registrant``: it renders without it, so trying is an error that says so.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.partial_cache: dict[tuple[str, str], str] = {}

    def get_template(self, name: str | jinja2.Template, parent: str | None = None,
                     globals: MutableMapping[str, Any] | None = None) -> Any:
        template = super().get_template(name, parent, globals)
        if parent is not None and isinstance(name, str) and _is_partial(name):
            return _CachedPartial(template, self.partial_cache)
        return template


def _is_partial(name: str) -> bool:
    folder, _, base = name.rpartition("/")
    return bool(folder) and base.startswith("_")


class _CachedPartial:
    """What ``{% include %}`` needs of a template: ``new_context`` and ``root_render_func``."""

    def __init__(self, template: jinja2.Template, cache: dict[tuple[str, str], str]) -> None:
        self.template = template
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.template, name)

    def new_context(self, vars: dict[str, Any] | None = None, shared: bool = False,
                    locals: Mapping[str, Any] | None = None) -> jinja2.runtime.Context:
        context = self.template.new_context(vars, shared, locals)
        # Only an include with no loop variables around it renders the same for the group.
        context.cacheable = not locals  # type: ignore[attr-defined]
        return context

    def root_render_func(self, context: jinja2.runtime.Context) -> Iterator[str]:
        key = context.get(SHARED_KEY)
        if key is None or not getattr(context, "cacheable", False):
            yield from self.template.root_render_func(context)
            return
        cache_key = (str(self.template.name), str(key))
        text = self.cache.get(cache_key)
        if text is None:
            without_registrant = {k: v for k, v in context.get_all().items()
                                  if k != "registrant"}
            text = "".join(self.template.root_render_func(
                self.template.new_context(without_registrant)))
            self.cache[cache_key] = text
        yield text


class _OutputTooLarge(Exception):
    pass


def _render_bounded(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render, stopping a template whose output grows past MAX_OUTPUT."""
    chunks: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise _OutputTooLarge
        chunks.append(chunk)
    return "".join(chunks)


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

