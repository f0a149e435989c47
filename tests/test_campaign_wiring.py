"""The campaign as wiring: the recipe a worker reopens it from, when it reads the journal,
and the tagged outcomes of building a message, here and on worker processes."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest

from invitemail import pool
from invitemail.campaign import Built, Campaign, CampaignRecipe, campaign_recipe
from invitemail.errors import TemplateError
from invitemail.inputs.registrants import Registrant, unique_registrants
from invitemail.journal.store import CalendarRecord, Journal, State
from invitemail.mime.message import HeaderValueError
from invitemail.outcome import Checked, HeaderRefused, Made, TemplateFailed, outcome_of
from support.event import NOW, EventBuilder, rows, write_event

SEATS = "Pladser pr. person: {{ 100 // registrant.seats|int }}\n"


def _registrants(campaign: Campaign) -> list[Registrant]:
    return list(unique_registrants(campaign.source))


# -- the recipe -------------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "extra"), [
    ("invitation", {}), ("reminder", {}), ("cancellation", {}),
    ("followup", {"assume": "thanks"}), ("followup", {"assume": "missed"}),
    ("invitation", {"stage": "reminder@1 day@x"}),
])
def test_a_campaign_reopened_from_its_pickled_recipe_builds_the_same_bytes(
        tmp_path: Path, template: str, extra: dict[str, Any]) -> None:
    folder = write_event(tmp_path / "event", rows(7))
    campaign = Campaign.open(folder, template=template, now=NOW, **extra)
    assert isinstance(campaign.recipe, CampaignRecipe)
    recipe = pickle.loads(pickle.dumps(campaign.recipe))
    assert recipe == campaign.recipe
    reopened = recipe()
    assert (reopened.template, reopened.stage, reopened.now) == (
        campaign.template, campaign.stage, campaign.now)
    mine = [campaign.build(r).data for r in _registrants(campaign)]
    assert [reopened.build(r).data for r in _registrants(reopened)] == mine


def test_the_recipe_is_made_by_the_factory_with_open_s_arguments(tmp_path: Path) -> None:
    folder = write_event(tmp_path / "event")
    campaign = Campaign.open(folder, template="reminder", now=NOW, delimiter=",",
                             encoding="utf-8")
    assert campaign.recipe == campaign_recipe(folder, template="reminder", now=NOW,
                                              delimiter=",", encoding="utf-8")


def test_a_campaign_opened_without_a_clock_gives_its_workers_its_own(tmp_path: Path) -> None:
    campaign = Campaign.open(write_event(tmp_path / "event"))
    assert campaign.recipe is not None and campaign.recipe.now == campaign.now


def test_use_stage_reaches_the_recipe_and_the_reopened_message_ids(tmp_path: Path) -> None:
    folder = write_event(tmp_path / "event")
    campaign = Campaign.open(folder, now=NOW)
    before = campaign.build(_registrants(campaign)[0]).message_id
    for stage in ("update@rescheduled@2030-12-11T13:00Z", "reminder@1 hour@x"):
        campaign.use_stage(stage)
        assert campaign.recipe is not None and campaign.recipe.stage == stage
        reopened = campaign.recipe()
        first = _registrants(reopened)[0]
        assert reopened.build(first).message_id == campaign.build(first).message_id != before


def test_a_campaign_made_by_hand_builds_here_even_for_a_long_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a recipe there is nothing a worker could reopen: no worker starts."""
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    opened = Campaign.open(write_event(tmp_path / "event", rows(pool.MIN_ROWS + 50)), now=NOW)
    by_hand = Campaign(opened.config, opened.source, opened.renderer, now=NOW)
    assert by_hand.recipe is None
    by_hand.start_workers()
    built = list(by_hand.messages(unique_registrants(by_hand.source)))
    assert len(built) == pool.MIN_ROWS + 50 and by_hand not in pool._POOLS


# -- the journal --------------------------------------------------------------------------------


def _sent(folder: Path, key: str, record: CalendarRecord) -> None:
    journal = Journal.open(folder)
    assert journal is not None
    with journal:
        journal.register("invitation", [(key, key, 2)])
        journal.mark_sending("invitation", key, "<1@example.org>", 1, calendar=record)
        journal.mark_done("invitation", key, State.SENT, "250 ok", 1)


def _record(campaign: Campaign, registrant: Registrant, sequence: int) -> CalendarRecord:
    """The calendar an invitation with this ``sequence`` left (the journal's row)."""
    return dataclasses.replace(campaign.current_record(registrant), sequence=sequence,
                               template="invitation")


def test_a_campaign_made_by_hand_reads_the_journal_when_first_asked(tmp_path: Path) -> None:
    """The constructor opens no journal: one written after it is made is what it reads."""
    folder = write_event(tmp_path / "event")
    opened = Campaign.open(folder, template="update", now=NOW)
    by_hand = Campaign(opened.config, opened.source, opened.renderer, template="update",
                       now=NOW)
    soren = _registrants(opened)[0]
    record = _record(opened, soren, 3)
    _sent(folder, soren.key, record)
    assert by_hand.latest == record and by_hand.history == {soren.key: record}
    assert by_hand.sequence_for(soren, by_hand.history[soren.key]) == 3


def test_campaign_open_reads_the_journal_when_it_opens(tmp_path: Path) -> None:
    """As its workers do when they start: what is written later is read by load_history."""
    folder = write_event(tmp_path / "event")
    opened = Campaign.open(folder, now=NOW)
    soren = _registrants(opened)[0]
    record = _record(opened, soren, 1)
    _sent(folder, soren.key, record)
    assert opened.history == {} and opened.latest is None
    opened.load_history()
    assert opened.history == {soren.key: record} and opened.latest == record


# -- the tagged outcomes ------------------------------------------------------------------------


def _seats_event(folder: Path, seats: list[str]) -> Path:
    return EventBuilder(
        header=("Navn", "E-mail", "Sprog", "Seats"),
        rows=[(f"Deltager {i}", f"user{i}@example.org", "da", n) for i, n in enumerate(seats)],
        files={"templates/da/invitation.txt": SEATS}).write(folder).folder


def test_each_outcome_is_its_own_type(tmp_path: Path) -> None:
    campaign = Campaign.open(_seats_event(tmp_path / "event", ["4", "0", "x", "-0"]), now=NOW)
    four, zero, word, minus_zero = _registrants(campaign)
    made = outcome_of(campaign, four, encode=True, inspect=len_of)
    assert isinstance(made, Made) and made.inspected == len(made.built.data)
    assert isinstance(made.built, Built) and b"Pladser pr. person: 25" in made.built.data
    assert outcome_of(campaign, four, encode=False) == Checked()
    for failing in (zero, word, minus_zero):  # 100 // 0: "x"|int and "-0"|int are 0 too
        for encode in (True, False):
            failed = outcome_of(campaign, failing, encode=encode)
            assert isinstance(failed, TemplateFailed)
            assert "ZeroDivisionError" in failed.error.message
            assert failed.error.__traceback__ is None  # a copy, to cross a process


@pytest.mark.parametrize("name", ["Bo\r\nBcc: x@example.org", "Bo\nx", "Bo\u2028x", "Bo\x07"])
def test_a_value_a_header_cannot_hold_is_a_header_refusal(tmp_path: Path, name: str) -> None:
    """The list's reader refuses such names; one that got past it is refused, not sent."""
    campaign = Campaign.open(write_event(tmp_path / "event"), now=NOW)
    registrant = dataclasses.replace(_registrants(campaign)[0], name=name)
    for encode in (True, False):
        refused = outcome_of(campaign, registrant, encode=encode)
        assert isinstance(refused, HeaderRefused)
        with pytest.raises(HeaderValueError) as raised:
            campaign.validate(registrant)
        assert refused.reason == str(raised.value)


def test_outcomes_survive_the_trip_from_a_worker(tmp_path: Path) -> None:
    campaign = Campaign.open(_seats_event(tmp_path / "event", ["4", "0"]), now=NOW)
    four, zero = _registrants(campaign)
    for outcome in (outcome_of(campaign, four, encode=True), Checked(),
                    outcome_of(campaign, zero, encode=False), HeaderRefused("the name ...")):
        back = pickle.loads(pickle.dumps(outcome))
        assert type(back) is type(outcome)
        if isinstance(outcome, TemplateFailed):
            assert isinstance(back, TemplateFailed) and back.error.message == outcome.error.message
        else:
            assert back == outcome


def len_of(built: Built) -> int:
    """An ``inspect``: module-level, so that a worker can be given it."""
    return len(built.data)


def test_check_on_workers_reports_what_check_here_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,100 rows, a few of which make the template fail: built and inspected on two
    workers, the report, the messages and what inspect said are those built here."""
    seats = ["0" if i in (5, 600, 1099) else str(1 + i % 7) for i in range(1100)]
    folder = _seats_event(tmp_path / "event", seats)
    found: dict[str, tuple[Any, list[bytes], list[Any]]] = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("INVITEMAIL_WORKERS", workers)
        campaign = Campaign.open(folder, now=NOW)
        data: list[bytes] = []
        inspected: list[Any] = []

        def keep(built: Built, said: Any, data: list[bytes] = data,
                 inspected: list[Any] = inspected) -> None:
            data.append(built.data)
            inspected.append(said)

        report = campaign.check(on_message=keep, inspect=len_of)
        assert (campaign in pool._POOLS) == (workers == "2")
        found[workers] = (([str(p) for p in report.problems], report.messages,
                           [e.message for e in report.template_errors]), data, inspected)
        assert report.messages == 1097 and inspected == [len(d) for d in data]
        assert [p.line for p in report.scan.problems] == [7, 602, 1101]
    assert found["1"] == found["2"]


def test_messages_raise_a_template_error_that_fails_for_everyone(tmp_path: Path) -> None:
    folder = EventBuilder(files={"templates/da/invitation.txt": "{{ nobody.here }}\n",
                                 "templates/en/invitation.txt": "{{ nobody.here }}\n"}
                          ).write(tmp_path / "event").folder
    campaign = Campaign.open(folder, now=NOW)
    with pytest.raises(TemplateError, match="nobody"):
        list(campaign.messages(unique_registrants(campaign.source)))
    report = campaign.check()
    assert not report.ok and report.template_errors
