"""The sending takes the registrants the check read (kept_rows.py) instead of reading the
list again: whatever the list holds, what it gets equals what reading it again gives.

The differential property test draws registrant lists with what makes the reading decide
something (an address repeated in another case, a repeat with another personal join link,
an invalid address, a blank row, an unknown language, a row of too few cells), checks the
campaign as `send` does, and compares the kept registrants with ``unique_registrants`` of
the same file: the same registrants (every field), in the same order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invitemail.campaign import Campaign
from invitemail.inputs import kept_rows
from invitemail.inputs.registrants import unique_registrants
from invitemail.send.delivery import SendOptions, SendResult, _selected
from support.event import NOW, write_event

HEADER = ("Navn", "E-mail", "Sprog", "Join URL")
LINKS = ("", "https://zoom.us/w/1?tk=a", "https://zoom.us/w/1?tk=b")


@st.composite
def rows(draw: st.DrawFn) -> list[list[str]]:
    """A registrant list whose rows share addresses (in any case), links and languages."""
    people = draw(st.lists(st.sampled_from(("ane", "bo", "Carl", "dorte", "eva")),
                           min_size=1, max_size=5))
    drawn: list[list[str]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=14))):
        kind = draw(st.sampled_from(("good", "good", "good", "bad address", "blank",
                                     "bad language", "short")))
        who = draw(st.sampled_from(people))
        address = f"{who}@example.org"
        if draw(st.booleans()):
            address = address.upper()
        language = draw(st.sampled_from(("da", "en", "", "EN", "dansk")))
        link = draw(st.sampled_from(LINKS))
        if kind == "bad address":
            address = f"{who}@@example.org"
        elif kind == "blank":
            drawn.append(["", "", "", ""])
            continue
        elif kind == "bad language":
            language = "tlh"
        elif kind == "short":
            drawn.append([who, address])
            continue
        drawn.append([who.title(), address, language, link])
    return drawn


def _campaign(folder: Path, rows: list[list[str]]) -> Campaign:
    write_event(folder, rows, header=HEADER)
    return Campaign.open(folder, now=NOW)


@settings(max_examples=40, deadline=None)
@given(rows())
def test_kept_registrants_equal_a_second_reading(drawn: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        campaign = _campaign(Path(tmp) / "event", drawn)
        campaign.check()
        assert campaign.kept.rows is not None  # a short list is kept
        kept = list(campaign.kept.registrants())
        again = list(unique_registrants(campaign.source))
        assert kept == again


def test_conflicting_rows_are_left_out_of_the_kept_ones(tmp_path: Path) -> None:
    """Two rows of one address with different personal links: neither gets a message,
    though the first was yielded (and kept) before the second came."""
    campaign = _campaign(tmp_path / "event", [
        ["Ane", "ane@example.org", "da", LINKS[1]],
        ["Bo", "bo@example.org", "en", ""],
        ["Ane", "ANE@example.org", "da", LINKS[2]],
        ["Bo", "BO@example.org", "en", ""],  # a duplicate: one message
    ])
    campaign.check()
    assert campaign.kept.rows is not None
    assert [r.email for r in campaign.kept.rows] == ["ane@example.org", "bo@example.org"]
    assert [r.email for r in campaign.kept.registrants()] == ["bo@example.org"]
    assert list(campaign.kept.registrants()) == list(unique_registrants(campaign.source))


def test_a_long_list_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_rows, "KEEP_ROWS", 3)
    campaign = _campaign(tmp_path / "event", [
        [f"P{i}", f"p{i}@example.org", "da", ""] for i in range(5)])
    campaign.check()
    assert campaign.kept.rows is None
    assert [r.email for r in campaign.kept.registrants()] == [
        f"p{i}@example.org" for i in range(5)]


def test_a_pass_that_stops_early_keeps_nothing(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path / "event", [
        [f"P{i}", f"p{i}@example.org", "da", ""] for i in range(5)])
    passing = campaign.kept.keep(unique_registrants(campaign.source))
    assert next(passing).email == "p0@example.org"
    passing.close()
    assert campaign.kept.rows is None
    assert len(list(campaign.kept.registrants())) == 5


def test_the_sending_takes_the_kept_registrants(tmp_path: Path) -> None:
    """The send's selection reads the kept registrants, not the file: what it yields is the
    kept list (here cut short, to tell the two apart)."""
    campaign = _campaign(tmp_path / "event", [
        [f"P{i}", f"p{i}@example.org", "da", ""] for i in range(4)])
    campaign.check()
    assert campaign.kept.rows is not None
    campaign.kept.rows = campaign.kept.rows[1:3]
    chosen = _selected(campaign, {}, SendOptions(), SendResult())
    assert [r.email for r in chosen] == ["p1@example.org", "p2@example.org"]
