"""A valid event folder on disk: event.toml with every key product.md lists, and registrants.csv.

:class:`EventBuilder` is the one way to write one: the defaults of :data:`EVENT_TOML`, then
overrides per section and key (a changed key keeps its line, a new one goes to the end of its
section, a new section to the end of the file), the registrant rows, and extra files. It
reports the line of any key or section it wrote, so a test that expects ``event.toml:N`` asks
the builder for N instead of counting::

    event = EventBuilder().set("meeting", "password", Raw("42")).write(tmp_path / "e")
    assert f"{event.toml_path}:{event.line('meeting', 'password')}:" in run.stderr

:func:`write_event`, :func:`event_for` and the other helpers are shorthands over it.

Test files import these as ``from support.event import ...`` (see support/__init__.py),
event.toml's own model too (:class:`EventToml`, :class:`Raw`; support/event_toml.py).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from support.event_toml import EVENT_TOML, EventToml, Raw, Value, toml_value

if TYPE_CHECKING:  # the builder itself needs no relay (nor aiosmtpd): the bench can use it
    from support.relay import SmtpServer

__all__ = ["EVENT_TOML", "HEADER", "NOW", "ROWS", "EventBuilder", "EventToml", "Raw", "Value",
           "WrittenEvent", "edit_event", "event_for", "event_line", "rows", "set_key",
           "toml_value", "write_event"]

# A clock for tests that build messages: the event below is in the future from here, and the
# CLI (which uses the real clock) still sees it in the future for years.
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

HEADER = ("Navn", "E-mail", "Sprog")
ROWS: tuple[tuple[str, ...], ...] = (
    ("Søren Kierkegaard", "soren@example.org", "da"),
    ("Karen Blixen", "karen@example.org", "en"),
)


@dataclass
class EventBuilder:
    """An event folder to write: event.toml, registrants.csv and any other files."""

    toml: EventToml = field(default_factory=EventToml.parse)
    header: Sequence[str] = HEADER
    rows: Sequence[Sequence[str]] = ROWS
    registrants: bytes | None = None  # registrants.csv byte for byte, instead of the rows
    files: dict[str, bytes | str] = field(default_factory=dict)  # more files, by relative path

    @classmethod
    def from_text(cls, toml: str) -> EventBuilder:
        return cls(toml=EventToml.parse(toml))

    def set(self, section: str, key: str, value: Value) -> EventBuilder:
        self.toml.set(section, key, value)
        return self

    def drop(self, section: str, key: str | None = None) -> EventBuilder:
        self.toml.drop(section, key)
        return self

    def line(self, section: str, key: str | None = None) -> int:
        return self.toml.line(section, key)

    def smtp_for(self, server: SmtpServer, **extra: Value) -> EventBuilder:
        """[smtp] pointing at ``server``: its port, security, login and CA, timeout 5 s."""
        settings: dict[str, Value] = {"host": "127.0.0.1", "port": server.port,
                                      "security": server.tls, "timeout": 5}
        if server.auth:
            settings["username"] = server.auth[0]
        if server.tls == "none" and server.auth:
            settings["allow_insecure_auth"] = True
        if server.ca_file is not None:
            settings["ca_file"] = str(server.ca_file)
        settings.update(extra)
        self.toml.replace_section("smtp", settings)
        return self

    def relay(self, smtp: Mapping[str, Value],
              sending: Mapping[str, Value] | None = None) -> EventBuilder:
        """[smtp] with exactly ``smtp``, and [sending] with exactly ``sending`` (no [sending]
        section when None)."""
        self.toml.replace_section("smtp", smtp)
        if sending is None:
            self.toml.drop("sending")
        else:
            self.toml.replace_section("sending", sending)
        return self

    def plain_relay(self, port: int, host: str = "127.0.0.1") -> EventBuilder:
        """The default [smtp] at ``host:port`` in plaintext, without a login (its timeout and
        allow_insecure_auth stay as they are)."""
        self.toml.set("smtp", "host", host).set("smtp", "port", port)
        self.toml.set("smtp", "security", "none").drop("smtp", "username")
        return self

    def write(self, folder: Path) -> WrittenEvent:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "event.toml").write_text(self.toml.text(), encoding="utf-8")
        if self.registrants is not None:
            (folder / "registrants.csv").write_bytes(self.registrants)
        else:
            with (folder / "registrants.csv").open("w", encoding="utf-8", newline="") as file:
                writer = csv.writer(file, lineterminator="\n")
                writer.writerow(self.header)
                writer.writerows(self.rows)
        for name, content in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return WrittenEvent(folder, self.toml)


@dataclass(frozen=True)
class WrittenEvent:
    """An event folder the builder wrote, and where its keys are."""

    folder: Path
    toml: EventToml

    @property
    def toml_path(self) -> Path:
        return self.folder / "event.toml"

    def line(self, section: str, key: str | None = None) -> int:
        return self.toml.line(section, key)

    def where(self, section: str, key: str | None = None) -> str:
        """``FOLDER/event.toml:LINE``, as errors name a key."""
        return f"{self.toml_path}:{self.line(section, key)}"


def event_line(section: str, key: str | None = None) -> int:
    """The line of ``section.key`` in the default event.toml (EVENT_TOML)."""
    return EventToml.parse().line(section, key)


def write_event(folder: Path, rows: Iterable[Sequence[str]] = ROWS, *,
                header: Sequence[str] = HEADER, toml: str = EVENT_TOML) -> Path:
    """Write event.toml and registrants.csv (UTF-8, ``,``) into ``folder``; return it.

    ``toml`` is the whole event.toml as text (EventBuilder changes keys by name).
    Rows are written with ``csv.writer``, so a value with a comma or a line break is quoted.
    """
    return EventBuilder(EventToml.parse(toml), header, list(rows)).write(folder).folder


def rows(count: int, *, start: int = 0) -> list[tuple[str, str, str]]:
    """``count`` registrants user{start}@example.org, ...: Danish names with æ and ø, every
    third one in English."""
    return [(f"Deltager Ærø {i}", f"user{i}@example.org", "da" if i % 3 else "en")
            for i in range(start, start + count)]


def event_for(server: SmtpServer, folder: Path, registrants: Iterable[tuple[str, ...]] = (),
              *, sending: str = "", smtp: dict[str, str] | None = None) -> Path:
    """An event folder whose [smtp] points at ``server``; ``smtp`` adds or replaces keys
    (values as TOML source) and ``sending`` is the [sending] section's text."""
    builder = EventBuilder(rows=list(registrants) or rows(5)).smtp_for(
        server, **{key: Raw(value) for key, value in (smtp or {}).items()})
    builder.toml.section_source("sending", sending or "concurrency = 4\nmax_attempts = 5\n")
    return builder.write(folder).folder


@contextmanager
def edit_event(folder: Path) -> Iterator[EventToml]:
    """``folder``'s event.toml to change by key; written back when the block ends::

        with edit_event(folder) as toml:
            toml.set("meeting", "password", "Nyt42x")
    """
    toml = EventToml.read(folder / "event.toml")
    yield toml
    toml.save(folder / "event.toml")


def set_key(folder: Path, section: str, key: str, value: Value) -> None:
    """``section.key = value`` in ``folder``'s event.toml, on the key's line."""
    with edit_event(folder) as toml:
        assert toml.has(section, key), f"{section}.{key} is not in {folder / 'event.toml'}"
        toml.set(section, key, value)
