"""The keys of one parsed event.toml, read one at a time: each value checked for its kind
(text, a number in bounds, a web address, an address, a table per language), and every error
naming the file, the line where the key stands (when it can be found) and the key.

config.py reads the file and hands its text and data to a :class:`KeyReader`;
event_settings.py and smtp_settings.py read their tables through it. Unknown keys are errors
with a "did you mean" suggestion, because a misspelt ``pasword`` silently ignored would send
invitations without a password.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from invitemail.errors import ConfigError, Problem
from invitemail.inputs.addresses import (
    AddressError,
    is_loopback_host,
    normalize_address,
    parse_mailbox,
)

LANGUAGES: tuple[str, ...] = ("da", "en")
# What str.splitlines() breaks at: any of them in a one-line value could start a new header
# line for some reader, so all count as line breaks, not just CR and LF.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# Keys whose text may well be all digits (a title "2030", a phone number): a bare number there
# was meant as text.
FREE_TEXT_KEYS = frozenset({"title", "description", "platform", "id", "phone", "hours"})
# Keys that take one text, or a table of texts per language ({ da = "...", en = "..." }).
PER_LANGUAGE = 'text, or a table per language such as { da = "...", en = "..." }'
# Keys whose value an error message must never repeat.
SECRET_KEYS = frozenset({("meeting", "password")})


def in_language(texts: Mapping[str, str], language: str, default: str | None = None) -> str:
    """The text for ``language`` from a table per language: else the default language's,
    else the first one written (as ``[support] hours`` has always done)."""
    found = texts.get(language) or (texts.get(default) if default else None)
    return found or next(iter(texts.values()))


T = TypeVar("T")
MISSING = object()  # no default: the key must be given


class KeyReader:
    """Reads the keys of one parsed event.toml, with file, line and key in every error.

    ``errors`` collects the problems of every key (see :meth:`attempt`), so that one run
    reports them all; ``warnings`` the problems that do not stop a run."""

    SECTIONS: Mapping[str, tuple[str, ...]] = {
        "event": ("title", "description", "start", "duration", "timezone", "language", "uid",
                  "sequence", "recording_url", "slides_url", "next_url"),
        "meeting": ("platform", "id", "password", "join_url", "web_join_url", "waiting_room",
                    "recorded"),
        "sender": ("from", "reply_to"),
        "support": ("phone", "hours", "email"),
        "privacy": ("policy_url",),
        "smtp": ("host", "port", "security", "username", "timeout", "ca_file",
                 "allow_insecure_auth", "auth", "token_command", "token_command_timeout",
                 "oauth", "pipelining"),
        "sending": ("concurrency", "rate", "max_attempts", "max_consecutive_failures",
                    "daily_limit"),
        "schedule": ("reminders", "followup", "slack"),
    }
    OPTIONAL_SECTIONS = frozenset({"sending", "schedule"})

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.data = data
        self.warnings: list[Problem] = []
        self.errors: list[ConfigError] = []
        # Keys an unknown key was taken for ("pasword": "password"): that key's "is missing"
        # is the same problem, reported once, with the suggestion.
        self.suggested: set[str] = set()
        # Sending through a local test server: .test, .localhost and .invalid addresses are
        # allowed in the settings too (addresses.py says why). The host is read raw here; the
        # [smtp] section's own checks report a bad one.
        smtp = data.get("smtp")
        host = smtp.get("host") if isinstance(smtp, dict) else None
        self.local_test = isinstance(host, str) and is_loopback_host(host)

    def attempt(self, read: Callable[[], Any], fallback: Any = None) -> Any:
        """``read()``, or ``fallback`` with its problem kept: every key is checked in one run."""
        try:
            return read()
        except ConfigError as err:
            self.errors.append(err)
            return fallback

    def line_of(self, section: str, key: str | None = None) -> int | None:
        """The line where ``[section]`` (or ``key`` inside it) is written, if it can be found."""
        in_section = False
        header = re.compile(r"\s*\[\[?\s*" + re.escape(section) + r"\s*\]\]?\s*(#.*)?$")
        for number, line in enumerate(self.lines, start=1):
            if key is None and re.match(r"\s*\"?" + re.escape(section) + r"\"?\s*=", line):
                return number  # `section = value` where a section was meant
            if line.lstrip().startswith("["):
                in_section = bool(header.match(line))
                if in_section and key is None:
                    return number
                continue
            if in_section and key is not None and re.match(
                r"\s*\"?" + re.escape(key) + r"\"?\s*=", line
            ):
                return number
        return None

    def error(self, section: str, key: str | None, message: str,
              hint: str | None = None) -> ConfigError:
        line = self.line_of(section, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"{section}.{key}" if key else f"[{section}]"
        return ConfigError(where, message, key=name, hint=hint)

    def warn(self, section: str, key: str, message: str) -> None:
        self.warnings.append(
            Problem(str(self.path), self.line_of(section, key), f"{section}.{key}: {message}",
                    warning=True)
        )

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, MISSING)
        if value is MISSING:
            if name in self.OPTIONAL_SECTIONS:
                return {}
            article = "an" if name in ("event", "smtp") else "a"  # as it is read aloud
            raise ConfigError(self.path, f"the [{name}] section is missing",
                              hint=f"add {article} [{name}] section; `invitemail init` writes a "
                              "full example")
        if not isinstance(value, dict):
            what = (f"a list of sections ([[{name}]])" if isinstance(value, list)
                    else _describe_value(value))
            raise self.error(name, None, f"must be one section, written [{name}], not {what}")
        for key in value:
            if key not in self.SECTIONS[name]:
                import difflib  # only for a misspelt name: not on a good file's path

                close = difflib.get_close_matches(key, self.SECTIONS[name], n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else "known keys: " + ", ".join(self.SECTIONS[name]))
                if close and close[0] not in value:
                    self.suggested.add(f"{name}.{close[0]}")
                self.errors.append(self.error(name, key, "unknown key", hint=hint))
        return value

    def get(self, section: dict[str, Any], name: str, key: str, kind: type[T] | tuple[type, ...],
            default: Any = MISSING, *, describe: str | None = None) -> Any:
        value = section.get(key, MISSING)
        if value is MISSING:
            if default is MISSING:
                line = self.line_of(name)
                where = f"{self.path}:{line}" if line else str(self.path)
                raise ConfigError(where, "is missing", key=f"{name}.{key}",
                                  hint=f"add `{key} = ...` under [{name}]")
            return default
        # bool is a subclass of int: never accept true where a number is meant.
        wrong_bool = isinstance(value, bool) and kind is not bool and not (
            isinstance(kind, tuple) and bool in kind)
        if wrong_bool or not isinstance(value, kind):
            wanted = describe or _describe(kind)
            secret = (name, key) in SECRET_KEYS
            hint = f'write it in quotes: {key} = "..."' if secret else _unquote_hint(key, value,
                                                                                    kind)
            raise self.error(name, key, f"must be {wanted}, not "
                             f"{_describe_value(value, secret=secret)}", hint=hint)
        return value

    def text(self, section: dict[str, Any], name: str, key: str, default: Any = MISSING,
             *, one_line: bool = True) -> Any:
        value = self.get(section, name, key, str, default)
        if isinstance(value, str):
            if not value.strip():
                raise self.error(name, key, "is empty")
            self.check_characters(name, key, value, one_line=one_line)
            value = value.strip()
        return value

    def check_characters(self, name: str, key: str, value: str, *, one_line: bool) -> None:
        """No line break in a one-line value, and no control character anywhere: either could
        reach a header or the calendar part."""
        if one_line and any(c in LINE_BREAKS for c in value):
            raise self.error(name, key, "must be on one line")
        allowed = "\t" if one_line else "\t\n\r"
        control = next((c for c in value
                        if c not in allowed and unicodedata.category(c) == "Cc"), None)
        if control is not None:
            raise self.error(name, key, f"contains a control character (U+{ord(control):04X})",
                             hint="delete it (most editors do not show it), or retype the value")

    def url(self, section: dict[str, Any], name: str, key: str, default: Any = MISSING) -> Any:
        value = self.text(section, name, key, default)
        if value is None or value is default:
            return value
        parts = urlsplit(value)
        # urlsplit drops tabs silently; a link with any white space is broken.
        if parts.scheme not in ("http", "https") or not parts.netloc or any(
                c.isspace() for c in value):
            raise self.error(name, key, f"{value!r} is not a web address",
                             hint="write the full link, starting with https://")
        if parts.scheme != "https":
            self.warn(name, key, f"{value} is not https; registrants' browsers may warn")
        return value

    def number(self, section: dict[str, Any], name: str, key: str, default: Any,
               minimum: float, maximum: float | None = None, *, integer: bool = True) -> Any:
        kind: tuple[type, ...] = (int,) if integer else (int, float)
        value = self.get(section, name, key, kind, default,
                         describe="a whole number" if integer else "a number")
        if math.isnan(value) or value < minimum or (maximum is not None and value > maximum):
            bounds = (f"from {minimum} to {maximum}" if maximum is not None
                      else f"at least {minimum}")
            raise self.error(name, key, f"must be {bounds}, not {value}")
        return value

    def address(self, section: dict[str, Any], name: str, key: str, default: Any = MISSING) -> Any:
        value = self.text(section, name, key, default)
        if value is None:
            return None
        try:
            return normalize_address(value, local_test=self.local_test)
        except AddressError as err:
            raise self.error(name, key, f"{value!r} is not a valid address: {err}") from None

    def mailbox(self, section: dict[str, Any], name: str, key: str, default: Any = MISSING) -> Any:
        value = self.text(section, name, key, default)
        if value is None:
            return None
        try:
            return parse_mailbox(value, local_test=self.local_test)
        except AddressError as err:
            raise self.error(name, key, f"{value!r} is not a valid address: {err}") from None

    def per_language(self, s: dict[str, Any], n: str, key: str, default: Any = MISSING, *,
                     one_line: bool = True, url: bool = False) -> dict[str, str]:
        """One text, as ``{"": text}``, or a table per language ({ da = "...", en = "..." }),
        each entry checked as the one text would be; ``{}`` when absent and optional."""
        value = self.get(s, n, key, (str, dict), default, describe=PER_LANGUAGE)
        if value is None or value is default:
            return {}
        check = self.url if url else functools.partial(self.text, one_line=one_line)
        if isinstance(value, str):
            return {"": check(s, n, key)}
        if not value:
            raise self.error(n, key, "is empty",
                             hint='give text per language: { da = "...", en = "..." }')
        texts: dict[str, str] = {}
        for lang, text in value.items():
            if lang not in LANGUAGES or not isinstance(text, str) or not text.strip():
                raise self.error(n, key, f"has a bad entry {lang!r}",
                                 hint='give text per language: { da = "...", en = "..." }')
            texts[lang] = check({key: text}, n, key)
        return texts

    def default_language(self) -> str:
        event = self.data.get("event")
        language = event.get("language") if isinstance(event, dict) else None
        return language if language in LANGUAGES else "da"


def _describe(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
             dict: "a table", dt.datetime: "a date and time"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unquote_hint(key: str, value: Any, kind: type | tuple[type, ...]) -> str | None:
    """How to write a value of the wrong type, when it is clear: a quoted number or true/false
    without the quotes, a number meant as text in quotes, 1 or 0 as true or false."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if str in kinds and key in FREE_TEXT_KEYS:  # a title or phone number of digits
            return f'write it in quotes: {key} = "{value}"'
        if bool in kinds:
            return f"write true or false: {key} = {'true' if value else 'false'}"
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if bool in kinds:
        if text.lower() in ("true", "false"):
            return f"write it without quotes: {key} = {text.lower()}"
        return f"write true or false, without quotes: {key} = true"
    if int in kinds or float in kinds:
        try:
            number = float(text) if float in kinds else int(text)
        except ValueError:
            return None
        if math.isfinite(number):
            return f"write it without quotes: {key} = {text}"
    return None


def _describe_value(value: Any, *, secret: bool = False) -> str:
    if secret:  # the kind only: a secret's value must never reach the terminal or a log
        return {int: "a number", float: "a number", str: "text"}.get(
            type(value), _describe_value(value))
    if isinstance(value, bool):
        return "true/false"
    kinds: dict[type, Callable[[Any], str]] = {
        str: lambda v: f"text {v!r}", int: lambda v: f"the number {v}",
        float: lambda v: f"the number {v}", dict: lambda v: "a table",
        list: lambda v: "a list", dt.datetime: lambda v: "a date and time",
        dt.date: lambda v: "a date", dt.time: lambda v: "a time",
    }
    for kind, describe in kinds.items():
        if type(value) is kind:
            return describe(value)
    return type(value).__name__
