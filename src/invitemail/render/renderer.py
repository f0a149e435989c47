"""Templates -> subject, text and HTML: the public Renderer.

The package by concern: this module picks and renders templates and words their errors;
sandbox.py bounds a render; template_files.py reads template files; includes.py is the
include cache and skeleton.py the skeleton fast path; body.py is the value a rendered part
travels as; jinja_adapter.py holds every use of Jinja2 beyond its documented API.

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
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2

from invitemail.errors import TemplateError
from invitemail.render.body import Body
from invitemail.render.includes import IncludeCachingEnvironment
from invitemail.render.sandbox import (
    MAX_RENDER_MEMORY,
    MAX_RENDER_SECONDS,
    BoundedEnvironment,
    RenderGuard,
    render_bounded,
)
from invitemail.render.sizes import MAX_OUTPUT, TemplateTooCostly
from invitemail.render.skeleton import Skeleton, SkeletonEnvironment
from invitemail.render.template_files import TemplateLoader

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


@dataclass(frozen=True, slots=True)
class Rendered:
    """A registrant's message as the templates make it: the subject, and the text and HTML
    parts as bodies for the encoder (see body.py)."""

    subject: str
    text_body: Body
    html_body: Body

    @property
    def text(self) -> str:
        return self.text_body.text

    @property
    def html(self) -> str:
        return self.html_body.text

    @property
    def html_skeleton(self) -> str | None:
        """The HTML with a marker where each value goes, shared by the group (Body.markup)."""
        return self.html_body.markup


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
        self.env = IncludeCachingEnvironment(**self._options) if fast \
            else BoundedEnvironment(**self._options)
        self._skeleton_env: SkeletonEnvironment | None = None
        # (name, language, group) -> the skeleton (None: not fit), and the context it was
        # made from, but for the registrant
        self._skeletons: dict[tuple[str, str, Hashable],
                              tuple[Skeleton | None, dict[str, Any]]] = {}
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
        group (see :class:`SkeletonEnvironment`), which gives the same text as rendering it
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
                    subject, text, html = filled
                    return Rendered(subject=" ".join(subject.split()), text_body=text,
                                    html_body=html)
        return self._render_full(name, language, context, row)

    def _skeleton(self, name: str, language: str, context: Mapping[str, Any],
                  group: Hashable) -> Skeleton | None:
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
            self._skeleton_env = SkeletonEnvironment(self.env, **self._options)
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
        return Rendered(subject=" ".join(subject.split()), text_body=Body(text),
                        html_body=Body(html))


_ABSENT = object()


def _same_shared(context: Mapping[str, Any], shared: dict[str, Any]) -> bool:
    """Whether ``context`` holds the very objects of ``shared``, and nothing else but the
    registrant."""
    return len(context) == len(shared) + 1 and all(
        context.get(name, _ABSENT) is value for name, value in shared.items())


RUNAWAY_HINT = (f"a template gets {MAX_RENDER_SECONDS:g} s of CPU time, "
                f"{MAX_RENDER_MEMORY // (1024 * 1024)} MiB of memory and "
                f"{MAX_OUTPUT // (1024 * 1024)} MiB of text per part: look for a loop that never "
                "ends, a macro that calls itself, or a value multiplied into a huge one")


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
