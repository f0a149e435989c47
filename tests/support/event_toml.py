"""event.toml as lines to change by key: :class:`EventToml`, the default text
(:data:`EVENT_TOML`, every key product.md lists) and how a value is written (:class:`Raw`,
:func:`toml_value`).

A changed key keeps its line, a new one goes to the end of its section, a new section to the
end of the file; :meth:`EventToml.line` says where any key or section is. The event builder
(support/event.py) writes a folder with it; a test that edits a file ``init`` wrote reads it
with :meth:`EventToml.read`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Every key product.md lists. Tests ask EventBuilder for a key's line rather than count here.
EVENT_TOML = """\
[event]
title = "Persondata i praksis"
description = "Et webinar om persondata."
start = 2030-12-10T14:00:00
duration = 60
timezone = "Europe/Copenhagen"
language = "da"
uid = "persondata-2030-12-10@example.org"
sequence = 0

[meeting]
platform = "Zoom"
id = "842 1234 5678"
password = "Kx7pQ9"
join_url = "https://zoom.us/j/84212345678?pwd=abc123"
web_join_url = "https://zoom.us/wc/join/84212345678"
waiting_room = true
recorded = true

[sender]
from = "Djøf Arrangementer <arrangementer@example.org>"
reply_to = "svar@example.org"

[support]
phone = "33 95 97 00"
hours = { da = "hverdage kl. 9.00-16.00", en = "weekdays 9:00-16:00" }
email = "kontakt@example.org"

[privacy]
policy_url = "https://example.org/privatliv/webinarer"

[smtp]
host = "smtp.example.org"
port = 2525
security = "starttls"
username = "arrangementer@example.org"
timeout = 30
allow_insecure_auth = false

[sending]
concurrency = 4
rate = "10/s"
max_attempts = 5
max_consecutive_failures = 20
"""


class Raw(str):
    """A value written into event.toml as it is: TOML source (an inline table, a value of the
    wrong type, a string that does not parse)."""


Value = Raw | str | bool | int | float | dt.datetime | dt.date | dt.time | Mapping[str, "Value"]


def toml_value(value: Value) -> str:
    """``value`` as TOML source: text as a basic string, a mapping as an inline table."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"


_HEADER_LINE = re.compile(r"\[\[?([^\]]+)\]\]?\s*$")  # [section], and [[section]] too
_KEY_LINE = re.compile(r"([A-Za-z0-9_-]+)\s*=")


@dataclass
class _Entry:
    """One piece of the file: a section header, a ``key = value`` (maybe several lines long),
    or anything else (blank lines)."""

    section: str
    key: str | None  # None: the section's header, or not a key (``text`` says which)
    text: str  # without the final newline
    header: bool = False


@dataclass
class EventToml:
    """event.toml as a list of entries, changed in place; see the module docstring."""

    entries: list[_Entry] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str = "") -> EventToml:
        """Split ``text`` (one key per line, as EVENT_TOML writes them) into entries."""
        entries: list[_Entry] = []
        section = ""
        text = text or EVENT_TOML
        lines = text.split("\n")  # TOML's lines: not str.splitlines(), which splits at U+2028
        if text.endswith("\n"):
            lines.pop()
        for line in lines:
            header = _HEADER_LINE.match(line)
            key = _KEY_LINE.match(line)
            if header:
                section = header.group(1).strip()
                entries.append(_Entry(section, None, line, header=True))
            elif key:
                entries.append(_Entry(section, key.group(1), line))
            else:
                entries.append(_Entry(section, None, line))
        return cls(entries)

    @classmethod
    def read(cls, path: Path) -> EventToml:
        """An event.toml on disk (one written by ``init``, say), to change by key."""
        return cls.parse(path.read_text(encoding="utf-8"))

    def text(self) -> str:
        return "".join(entry.text + "\n" for entry in self.entries)

    def save(self, path: Path) -> None:
        path.write_text(self.text(), encoding="utf-8")

    def value(self, section: str, key: str) -> str:
        """The TOML source of ``section.key``'s value, without a trailing comment."""
        text = self.entries[self._index(section, key)].text.split("=", 1)[1]
        return re.sub(r"""\s+#[^"]*$""", "", text).strip()

    # -- where things are ------------------------------------------------------------------

    def _index(self, section: str, key: str | None = None, nth: int = 1) -> int:
        found = 0
        for index, entry in enumerate(self.entries):
            if entry.section == section and (
                    entry.header if key is None else entry.key == key and not entry.header):
                found += 1
                if found == nth:
                    return index
        where = f"[{section}]" if key is None else f"{section}.{key}"
        raise KeyError(f"{where} is not in this event.toml")

    def has(self, section: str, key: str | None = None) -> bool:
        try:
            self._index(section, key)
        except KeyError:
            return False
        return True

    def line(self, section: str, key: str | None = None, nth: int = 1) -> int:
        """The 1-based line of ``section.key`` (of the ``[section]`` header when key is None);
        ``nth``: of its nth occurrence, in a file that has it more than once."""
        index = self._index(section, key, nth)
        return 1 + sum(entry.text.count("\n") + 1 for entry in self.entries[:index])

    def _section_end(self, section: str) -> int:
        """The index after the section's last key."""
        last = self._index(section)
        for index, entry in enumerate(self.entries):
            if entry.section == section and entry.key is not None:
                last = index
        return last + 1

    # -- changes ---------------------------------------------------------------------------

    def set(self, section: str, key: str, value: Value) -> EventToml:
        """``key = value`` in ``[section]``: in place if the key is there, else at the end of
        the section (which is added at the end of the file if it is not there)."""
        text = f"{key} = {toml_value(value)}"
        if self.has(section, key):
            self.entries[self._index(section, key)].text = text
            return self
        if not self.has(section):
            self.add_section(section)
        self.entries.insert(self._section_end(section), _Entry(section, key, text))
        return self

    def drop(self, section: str, key: str | None = None) -> EventToml:
        """Remove ``section.key``, or the whole section with its keys when key is None."""
        if key is not None:
            del self.entries[self._index(section, key)]
            return self
        start = self._index(section)
        end = self._section_end(section)
        if end < len(self.entries) and self.entries[end].text == "" and (
                start == 0 or self.entries[start - 1].text == ""):
            end += 1  # and the blank line that parted it from the next
        del self.entries[start:end]
        return self

    def rename(self, section: str, key: str, new: str) -> EventToml:
        """Write ``key`` as ``new`` (a misspelt key), on the same line."""
        entry = self.entries[self._index(section, key)]
        entry.text = new + entry.text[len(key):]
        entry.key = new
        return self

    def comment_out(self, section: str, key: str, note: str) -> EventToml:
        """Turn ``key = value`` into ``# key = value  (note)``, on the same line."""
        entry = self.entries[self._index(section, key)]
        entry.text = f"# {entry.text}  ({note})"
        entry.key = None
        return self

    def repeat(self, section: str, key: str, value: Value) -> EventToml:
        """A second ``key = value`` in ``[section]``, on the line after the first (a duplicate
        key: ``line(section, key, nth=2)`` is its line)."""
        index = self._index(section, key)
        self.entries.insert(index + 1, _Entry(section, key, f"{key} = {toml_value(value)}"))
        return self

    def rewrite_header(self, section: str, text: str) -> EventToml:
        """Write ``[section]``'s header line as ``text`` (``[[section]]``, or a header that is
        not TOML), on the same line; its keys follow and keep their lines."""
        self.entries[self._index(section)].text = text
        return self

    def rename_section(self, section: str, new: str) -> EventToml:
        """Write ``[section]`` as ``[new]``, on the same line; its keys follow."""
        for entry in self.entries:
            if entry.section == section:
                entry.section = new
                if entry.header:
                    entry.text = f"[{new}]"
        return self

    def add_section(self, section: str, values: Mapping[str, Value] | None = None, *,
                    before: str | None = None) -> EventToml:
        """A new ``[section]`` at the end of the file (after a blank line), with ``values``;
        ``before``: just above that section's header instead (and a blank line). A section
        that is there already is written a second time (``line(section, nth=2)``)."""
        new = [_Entry(section, None, f"[{section}]", header=True)]
        new += [_Entry(section, key, f"{key} = {toml_value(value)}")
                for key, value in (values or {}).items()]
        if before is not None:
            at = self._index(before)
            self.entries[at:at] = [*new, _Entry(section, None, "")]
            return self
        if self.entries and self.entries[-1].text != "":
            self.entries.append(_Entry(self.entries[-1].section, None, ""))
        self.entries.extend(new)
        return self

    def section_source(self, section: str, body: str) -> EventToml:
        """``[section]`` with exactly the ``key = value`` lines of ``body`` (TOML source, one
        key a line), where it was (at the end if it was not)."""
        values = {entry.key: Raw(entry.text.split("=", 1)[1].strip())
                  for entry in EventToml.parse(f"[{section}]\n{body}").entries
                  if entry.key is not None}
        return self.replace_section(section, values)

    def replace_section(self, section: str, values: Mapping[str, Value]) -> EventToml:
        """``[section]`` with exactly ``values``, where it was (at the end if it was not)."""
        if not self.has(section):
            return self.add_section(section, values)
        start = self._index(section)
        end = self._section_end(section)
        del self.entries[start + 1:end]
        for offset, (key, value) in enumerate(values.items(), start=1):
            self.entries.insert(start + offset,
                                _Entry(section, key, f"{key} = {toml_value(value)}"))
        return self
