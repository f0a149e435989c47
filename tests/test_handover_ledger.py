"""The ledger's line for each delivery: written as JSON text directly, the same text as before.

Before, each line was a dict through the one JSONEncoder (ensure_ascii=False, compact). The
line is now put together from json's own string encoder; these hold it to the dict's text,
byte for byte, for any values, and to what reading the ledger gives back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from invitemail.journal.ledger import Ledger
from invitemail.journal.states import CalendarRecord, State

ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # as the ledger had it


def as_before(journal_id: str, template: str, key: str, state: State, message_id: str,
              at: str, calendar: CalendarRecord | None) -> str:
    """The line as the dict and the encoder wrote it."""
    line: dict[str, Any] = {"j": journal_id, "t": template, "k": key, "s": state.value,
                            "m": message_id, "at": at}
    if calendar is not None:
        c = calendar
        line["c"] = [c.sequence, c.start, c.duration, c.join_url, c.password_digest,
                     c.template]
    return ENCODER.encode(line)


# Any text: quotes, backslashes, control characters, U+2028, non-BMP, Danish letters.
TEXT = st.text() | st.sampled_from(['"', "\\", "\x00\x1f\x7f", "\u2028\u2029", "😀", "Søren",
                                    "</script>", "\t\n\r", ""])
CALENDARS = st.none() | st.builds(CalendarRecord, st.integers(-2**70, 2**70), TEXT,
                                  st.integers(-2**40, 2**40), TEXT, TEXT, TEXT)


@given(journal_id=TEXT, template=TEXT, key=TEXT, state=st.sampled_from(State),
       message_id=TEXT, at=TEXT, calendar=CALENDARS)
@example(journal_id="j1", template="påmindelse", key="Søren@example.org", state=State.UNCERTAIN,
         message_id="<ø\u2028>", at="2026-12-02T10:00:00", calendar=None)
@example(journal_id="", template="", key="", state=State.SENT, message_id="", at="",
         calendar=CalendarRecord(0, "", -1, "", "", ""))
def test_ledger_line_is_the_dicts_text_byte_for_byte(
        tmp_path_factory: Any, journal_id: str, template: str, key: str, state: State,
        message_id: str, at: str, calendar: CalendarRecord | None) -> None:
    path = tmp_path_factory.mktemp("ledger") / "l.jsonl"
    with Ledger(path, "event-1") as ledger:
        ledger.open()
        ledger.record(journal_id, template, key, state, message_id, at, calendar)
    first, line, end = path.read_bytes().split(b"\n")
    assert first == ENCODER.encode({"event": "event-1"}).encode() and end == b""
    assert line == as_before(journal_id, template, key, state, message_id, at,
                             calendar).encode()


def test_ledger_lines_read_back_as_written(tmp_path: Path) -> None:
    calendar = CalendarRecord(3, "2026-12-03T14:00:00+01:00", 90, "https://x.example/j?a=1&b=\"",
                              "9f2b", "opdatering")
    with Ledger(tmp_path / "l.jsonl", "event-1") as ledger:
        ledger.begin("j\\1", tmp_path, "2026-12-02T09:00:00")
        ledger.record("j\\1", "invitation", "a\"b@example.org", State.SENT, "<m\u2028>",
                      "2026-12-02T10:00:00", calendar)
        ledger.record("j\\1", "invitation", "ø@example.org", State.UNCERTAIN, "<n>",
                      "2026-12-02T10:00:01", None)
    entries = Ledger(tmp_path / "l.jsonl", "event-1").read().of("j\\1")
    assert entries[("invitation", "a\"b@example.org")].calendar == calendar
    assert entries[("invitation", "ø@example.org")].state is State.UNCERTAIN
    assert entries[("invitation", "ø@example.org")].calendar is None
