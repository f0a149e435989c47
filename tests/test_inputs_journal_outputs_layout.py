"""inputs/, journal/ and outputs/ split by concern: every name still importable where the
rest of the code finds it, each outside library in its one module, every module under 400
lines; and the units that now stand alone (the key reader, the daily limit, the journal's
schema, the CSV writer) tested on their own."""

from __future__ import annotations

import ast
import csv
import importlib
import io
import sqlite3
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invitemail.errors import ConfigError
from invitemail.inputs.keys import MISSING, KeyReader
from invitemail.inputs.registrants import FORMULA_STARTS, write_csv
from invitemail.inputs.smtp_settings import parse_daily_limit
from invitemail.journal.migrations import LATER_COLUMNS, add_later_columns, connect
from support.event import EventBuilder

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "invitemail"
MAX_LINES = 400

# (where the rest of the code imports it, where it lives now, name)
MOVED = [
    *(("invitemail.inputs.config", "invitemail.inputs.event_settings", name)
      for name in ("Event", "Meeting", "Sender", "Support", "Privacy")),
    *(("invitemail.inputs.config", "invitemail.inputs.smtp_settings", name)
      for name in ("Smtp", "Sending", "Security", "SECURITY_MODES", "DEFAULT_PORTS",
                   "parse_rate", "parse_daily_limit")),
    *(("invitemail.inputs.config", "invitemail.inputs.keys", name)
      for name in ("LANGUAGES", "LINE_BREAKS", "in_language")),
    *(("invitemail.inputs.registrants", "invitemail.inputs.scan", name)
      for name in ("Scan", "unique_registrants")),
    *(("invitemail.journal.store", "invitemail.journal.states", name)
      for name in ("State", "Row", "CalendarRecord", "Identity", "new_journal_id")),
    *(("invitemail.journal.store", "invitemail.journal.location", name)
      for name in ("JOURNAL_DIR", "JOURNAL_FILE")),
    *(("invitemail.outputs.gallery", "invitemail.outputs.gallery_pages", name)
      for name in ("CSP", "INDEX", "page_name", "message_page")),
    *(("invitemail.outputs.gallery", "invitemail.outputs.message_view", name)
      for name in ("MessageView", "read_message", "view_of")),
    *(("invitemail.outputs.report", "invitemail.inputs.registrants", name)
      for name in ("FORMULA_STARTS", "neutralise")),
]


@pytest.mark.parametrize(("old", "new", "name"), MOVED,
                         ids=[f"{old.rsplit('.', 1)[1]}.{name}" for old, _, name in MOVED])
def test_a_moved_name_is_the_same_object_where_it_was(old: str, new: str, name: str) -> None:
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name)


def runtime_imports(path: Path) -> set[str]:
    """The top-level packages a module imports when it runs (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for guard in ast.walk(tree) if isinstance(guard, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(guard.test)
                   for node in ast.walk(guard)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


OWN = sorted(path for folder in ("inputs", "journal", "outputs")
             for path in (PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize(("library", "allowed"), [
    ("csv", {"inputs/registrants.py"}),
    ("tomllib", {"inputs/config.py"}),
    # store.py reads and writes the rows; migrations.py opens the file and makes the schema
    ("sqlite3", {"journal/store.py", "journal/migrations.py"}),
    ("openpyxl", {"inputs/workbook.py"}),
])
def test_an_outside_library_is_imported_by_its_one_module(library: str,
                                                          allowed: set[str]) -> None:
    users = {str(path.relative_to(PACKAGE)) for path in OWN if library in runtime_imports(path)}
    assert users == allowed


def test_the_type_only_import_of_sqlite3_is_not_taken_for_a_use(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlite3\n"
                      "import csv\n", encoding="utf-8")
    assert runtime_imports(module) == {"typing", "csv"}


@pytest.mark.parametrize("path", OWN, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_module_stays_under_400_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) < MAX_LINES


# -- the key reader on its own --------------------------------------------------------------

# Not an event folder (those come from tests/support/event.py's builder): a text made to try
# the reader's line finding on what the builder never writes, a quoted key, an array of
# tables, comments after values.
ODD_TOML = '''\
# an event
[event]
title = "Webinar"   # line 3
"duration" = 60

[[sending]]
rate = "1/s"

[smtp]
host = "127.0.0.1"
port = "25"
'''


def reader(tmp_path: Path, text: str = ODD_TOML) -> KeyReader:
    path = tmp_path / "event.toml"
    return KeyReader(path, text, tomllib.loads(text))


@pytest.mark.parametrize(("section", "key", "line"), [
    ("event", None, 2), ("event", "title", 3), ("event", "duration", 4), ("sending", None, 6),
    ("sending", "rate", 7), ("smtp", "port", 11), ("smtp", "title", None),
    ("privacy", None, None),
])
def test_line_of_finds_the_section_or_key(tmp_path: Path, section: str, key: str | None,
                                          line: int | None) -> None:
    assert reader(tmp_path).line_of(section, key) == line


def test_a_key_of_the_wrong_kind_names_file_line_and_key(tmp_path: Path) -> None:
    keys = reader(tmp_path)
    smtp = keys.section("smtp")
    with pytest.raises(ConfigError) as caught:
        keys.number(smtp, "smtp", "port", MISSING, 1, 65535)
    assert str(caught.value) == (f"{tmp_path / 'event.toml'}:11: smtp.port: must be a whole "
                                 "number, not text '25'")
    assert caught.value.hint == "write it without quotes: port = 25"


def test_attempt_keeps_every_problem_and_goes_on(tmp_path: Path) -> None:
    keys = reader(tmp_path)
    event = keys.section("event")
    first = keys.attempt(lambda: keys.text(event, "event", "timezone"), "fallback")
    second = keys.attempt(lambda: keys.text(event, "event", "title"))
    assert (first, second) == ("fallback", "Webinar")
    assert [err.key for err in keys.errors] == ["event.timezone"]


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("localhost", True), ("smtp.example.org", False)])
def test_the_smtp_host_on_this_machine_allows_test_addresses(
        tmp_path: Path, host: str, local: bool) -> None:
    toml = EventBuilder().set("smtp", "host", host).write(tmp_path / "event").toml_path
    text = toml.read_text(encoding="utf-8")
    assert KeyReader(toml, text, tomllib.loads(text)).local_test is local


@pytest.mark.parametrize(("text", "limit"), [
    ("2000/day", 2000), (" 5 / d ", 5), ("300/24h", 300), ("7/24 hours", 7), ("1/DAY", 1),
])
def test_parse_daily_limit_reads_a_limit_per_day(text: str, limit: int) -> None:
    assert parse_daily_limit(text) == limit


@pytest.mark.parametrize("text", ["0/day", "2000", "2.5/day", "100/h", "-3/day", "/day"])
def test_parse_daily_limit_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r'write it as "N/day"'):
        parse_daily_limit(text)


# -- the journal's schema -------------------------------------------------------------------


def test_connect_gives_an_older_journal_its_later_columns_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE deliveries (template TEXT, key TEXT, address TEXT, line INTEGER,"
                " state TEXT, attempts INTEGER, last_reply TEXT, message_id TEXT, "
                "created_at TEXT, updated_at TEXT, sent_at TEXT, PRIMARY KEY (template, key))")
    old.commit()
    old.close()
    first, second = connect(path), connect(path)
    try:
        add_later_columns(second)  # already there: nothing to add, no error
        columns = {row[1] for row in first.execute("PRAGMA table_info(deliveries)")}
        assert set(LATER_COLUMNS) <= columns
        assert "calendar_sequence" in columns
        assert first.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        first.close()
        second.close()
    assert path.stat().st_mode & 0o777 == 0o600


# -- the CSV the tool writes ----------------------------------------------------------------

cells = st.one_of(st.none(), st.integers(), st.text(max_size=12),
                  st.builds(lambda start, rest: start + rest, st.sampled_from(FORMULA_STARTS),
                            st.text(max_size=6)))


@given(rows=st.lists(st.lists(cells, min_size=3, max_size=3), max_size=6),
       delimiter=st.sampled_from([",", ";"]))
def test_write_csv_reads_back_every_cell_as_text(rows: list[list[object]],
                                                  delimiter: str) -> None:
    out = io.StringIO(newline="")
    assert write_csv(out, ("a", "b", "c"), rows, delimiter=delimiter) == len(rows)
    read = list(csv.reader(io.StringIO(out.getvalue(), newline=""), delimiter=delimiter))
    assert read[0] == ["a", "b", "c"]
    assert len(read) == len(rows) + 1
    for written, back in zip(rows, read[1:], strict=True):
        for value, cell in zip(written, back, strict=True):
            text = "" if value is None else str(value)
            assert cell == ("'" + text if text.startswith(FORMULA_STARTS) else text)
            assert not cell.startswith(FORMULA_STARTS)
