"""Words that read right: how soon an event starts, in the right number and tense, and the
registrant's own place named wherever their own clock time is shown."""

from __future__ import annotations

import datetime as dt
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from helpers import write_event
from invitemail.campaign import Campaign
from invitemail.dates import describe_when
from invitemail.registrants import Registrant, unique_registrants

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
START = dt.datetime(2030, 12, 10, 14, 0, tzinfo=COPENHAGEN)
END = START + dt.timedelta(hours=1)
# The words babel gives for one of a unit and for many, per language.
SINGULAR = {"en": {"minute": "minute", "hour": "hour", "day": "day"},
            "da": {"minute": "minut", "hour": "time", "day": "dag"}}
PLURAL = {"en": {"minute": "minutes", "hour": "hours", "day": "days"},
          "da": {"minute": "minutter", "hour": "timer", "day": "dage"}}
FUTURE = {"en": "in", "da": "om"}
STARTS = {"en": "starts", "da": "begynder"}
STARTED = {"en": "has started", "da": "er begyndt"}
CITY = {"America/New_York": "New York", "Asia/Tokyo": "Tokyo"}


def when(minutes_ahead: int, language: str, zone: str | None = None) -> dict[str, object]:
    return dict(describe_when(START, END, language, registrant_zone=zone,
                              now=START - dt.timedelta(minutes=minutes_ahead)))


def amount(relative: str, language: str) -> tuple[int, str] | None:
    """The counted amount in ``relative`` ("in 3 hours (at ...)") as (number, unit), with the
    plural checked against the number; None when it names no amount."""
    words = "|".join(SINGULAR[language].values()) + "|" + "|".join(PLURAL[language].values())
    found = re.match(rf"{FUTURE[language]} (\d+) ({words})\b", relative)
    if found is None:
        return None
    number, word = int(found[1]), found[2]
    unit = next(u for u in SINGULAR[language]
                if word in (SINGULAR[language][u], PLURAL[language][u]))
    expected = SINGULAR[language][unit] if number == 1 else PLURAL[language][unit]
    assert word == expected, f"{relative!r}: {number} {word}, expected {number} {expected}"
    return number, unit


# -- the reported cases, first ---------------------------------------------------------------

@pytest.mark.parametrize("minutes", range(71, 90))
def test_71_to_89_minutes_ahead_is_not_one_hours(minutes: int) -> None:
    rounded = 5 * round(minutes / 5)
    assert when(minutes, "en")["relative"] == f"in {rounded} minutes (at 14:00)"
    assert when(minutes, "da")["relative"] == f"om {rounded} minutter (kl. 14.00)"


@pytest.mark.parametrize(("minutes", "en", "da"), [
    (1, "in 1 minute (at 14:00)", "om 1 minut (kl. 14.00)"),
    (2, "in 2 minutes (at 14:00)", "om 2 minutter (kl. 14.00)"),
    (60, "in 1 hour (at 14:00)", "om 1 time (kl. 14.00)"),
    (110, "in 2 hours (at 14:00)", "om 2 timer (kl. 14.00)"),
    (149, "in 2 hours (at 14:00)", "om 2 timer (kl. 14.00)"),
    (150, "in 3 hours (at 14:00)", "om 3 timer (kl. 14.00)"),
    (9 * 24 * 60, "in 9 days, Tuesday, 10 December 2030 at 14:00",
     "om 9 dage, tirsdag den 10. december 2030 kl. 14.00"),
])
def test_counted_amounts_follow_the_plural_rules(minutes: int, en: str, da: str) -> None:
    assert when(minutes, "en")["relative"] == en
    assert when(minutes, "da")["relative"] == da


@pytest.mark.parametrize("minutes", [-180, -61, -2, -1, 0, 1, 89])
@pytest.mark.parametrize("language", ["en", "da"])
def test_started_says_which_tense_reads_right(language: str, minutes: int) -> None:
    described = when(minutes, language)
    assert described["started"] is (minutes < 0)
    assert (described["relative"] == STARTED[language]) is (minutes < 0)


def test_after_the_start_the_danish_reminder_does_not_say_begynder_er_begyndt(
        tmp_path: Path) -> None:
    campaign = Campaign.open(write_event(tmp_path / "e"), template="reminder",
                             now=dt.datetime(2030, 12, 10, 13, 5, tzinfo=dt.UTC))
    for registrant in unique_registrants(campaign.source):
        text = rendered(campaign, registrant)
        assert "begynder er begyndt" not in text and "starts has started" not in text
        assert f"{STARTED[registrant.language]}." in text


def rendered(campaign: Campaign, registrant: Registrant) -> str:
    """The subject and both bodies, tags dropped and white space folded."""
    message = message_from_bytes(campaign.build(registrant).data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    parts = [str(message["Subject"])]
    for subtype in ("plain", "html"):
        body = message.get_body(preferencelist=(subtype,))
        assert body is not None
        parts.append(" ".join(re.sub(r"<[^>]+>", "", body.get_content()).split()))
    return "\n".join(parts)
