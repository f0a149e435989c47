"""The tests' event builder (support/event.py): it writes what it is told, and the line it
reports for a key is the line invitemail's own config loader names for that key."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from invitemail.errors import ConfigError
from invitemail.inputs.config import load_config
from support.event import EVENT_TOML, HEADER, ROWS, EventBuilder, EventToml, Raw, event_line


def loader_line(path: Path) -> str:
    """The ``file:line`` the config loader names in its error for ``path``."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value).split(": ", 1)[0]


def test_the_defaults_are_event_toml_byte_for_byte(tmp_path: Path) -> None:
    event = EventBuilder().write(tmp_path / "e")

    assert event.toml_path.read_bytes() == EVENT_TOML.encode("utf-8")
    assert (tmp_path / "e" / "registrants.csv").read_text(encoding="utf-8").splitlines() == [
        ",".join(row) for row in (HEADER, *ROWS)]
    assert load_config(event.folder).warnings == ()


@pytest.mark.parametrize(("section", "key"), [
    ("event", "title"), ("event", "sequence"), ("meeting", "password"), ("support", "hours"),
    ("smtp", "allow_insecure_auth"), ("sending", "max_consecutive_failures"),
])
def test_a_misspelt_key_is_where_the_builder_says(tmp_path: Path, section: str,
                                                  key: str) -> None:
    builder = EventBuilder()
    builder.toml.rename(section, key, key + "x")
    event = builder.write(tmp_path)

    assert loader_line(event.toml_path) == event.where(section, key + "x")
    assert event.line(section, key + "x") == event_line(section, key)  # renamed in place


@pytest.mark.parametrize("section", ["event", "meeting", "support", "smtp", "sending"])
def test_a_new_key_goes_to_the_end_of_its_section(tmp_path: Path, section: str) -> None:
    event = EventBuilder().set(section, "unheard_of", 1).write(tmp_path)

    assert loader_line(event.toml_path) == event.where(section, "unheard_of")
    following = [line for line in event.toml_path.read_text(encoding="utf-8").splitlines()
                 [event.line(section, "unheard_of"):] if line.strip()]
    assert following == [] or following[0].startswith("[")


def test_values_are_written_as_toml_of_their_type(tmp_path: Path) -> None:
    builder = EventBuilder().set("event", "title", 'Say "hej"\\ and ø')
    builder.set("meeting", "waiting_room", False).set("smtp", "timeout", 2.5)
    builder.set("event", "start", dt.datetime(2031, 1, 2, 3, 4, 5))
    builder.set("support", "hours", {"da": "altid", "en": "always"})
    builder.set("meeting", "id", Raw("84212345678"))
    event = builder.write(tmp_path)

    data = tomllib.loads(event.toml_path.read_text(encoding="utf-8"))

    assert data["event"]["title"] == 'Say "hej"\\ and ø'
    assert data["meeting"]["waiting_room"] is False
    assert data["smtp"]["timeout"] == 2.5
    assert data["event"]["start"] == dt.datetime(2031, 1, 2, 3, 4, 5)
    assert data["support"]["hours"] == {"da": "altid", "en": "always"}
    assert data["meeting"]["id"] == 84212345678


def test_a_value_over_several_lines_moves_the_keys_after_it(tmp_path: Path) -> None:
    event = EventBuilder().set("event", "description", Raw('"""one\ntwo\nthree"""')) \
        .set("event", "language", "de").write(tmp_path)

    assert event.line("event", "language") == event_line("event", "language") + 2
    assert loader_line(event.toml_path) == event.where("event", "language")


def test_dropping_and_adding_sections(tmp_path: Path) -> None:
    builder = EventBuilder().drop("privacy")
    builder.toml.add_section("schedule", {"reminder": "1 day"})
    event = builder.write(tmp_path)
    text = event.toml_path.read_text(encoding="utf-8")

    assert "[privacy]" not in text and "policy_url" not in text
    assert text.endswith('\n\n[schedule]\nreminder = "1 day"\n')
    assert event.line("schedule") == text.splitlines().index("[schedule]") + 1
    with pytest.raises(KeyError, match=r"\[privacy\] is not in this event.toml"):
        event.line("privacy")


def test_replace_section_keeps_its_place(tmp_path: Path) -> None:
    builder = EventBuilder()
    builder.toml.replace_section("smtp", {"host": "127.0.0.1", "port": 2600})
    event = builder.write(tmp_path)

    assert event.line("smtp") == event_line("smtp")
    assert event.line("sending") == event_line("sending") - 4  # six keys became two
    assert load_config(event.folder).smtp.where == "127.0.0.1:2600"


def test_registrants_and_extra_files_are_written_as_given(tmp_path: Path) -> None:
    cp1252 = b"Navn;E-mail\r\nS\xf8ren;s@example.org\r\n"
    builder = EventBuilder(registrants=cp1252,
                           files={"templates/da/invitation.subject.txt": "Hej\n",
                                  "logo.png": b"\x89PNG"})
    event = builder.write(tmp_path)

    assert (tmp_path / "registrants.csv").read_bytes() == cp1252
    assert (tmp_path / "templates" / "da" / "invitation.subject.txt").read_text() == "Hej\n"
    assert (tmp_path / "logo.png").read_bytes() == b"\x89PNG"
    assert event.folder == tmp_path


def test_parse_keeps_any_text_it_is_given() -> None:
    text = EventToml.parse().rewrite_header("privacy", "[privacyy]").text()

    assert EventToml.parse(text).text() == text
    assert EventToml.parse(text).line("privacyy") == event_line("privacy")
