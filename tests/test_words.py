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

from invitemail.campaign import Campaign
from invitemail.inputs.registrants import Registrant, unique_registrants
from invitemail.mime.dates import describe_when
from support.event import write_event

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


def test_a_registrant_in_another_zone_is_told_the_place_of_their_clock_time() -> None:
    # 19:50 in Copenhagen is 13:50 in New York; the reminder went out 2 hours before.
    start = dt.datetime(2030, 12, 10, 19, 50, tzinfo=COPENHAGEN)
    now = start - dt.timedelta(hours=2)
    en = describe_when(start, start + dt.timedelta(hours=1), "en",
                       registrant_zone="America/New_York", now=now)["relative"]
    da = describe_when(start, start + dt.timedelta(hours=1), "da",
                       registrant_zone="America/New_York", now=now)["relative"]
    assert en == "in 2 hours (at 13:50 in New York)"
    assert da == "om 2 timer (kl. 13.50 i New York)"


# -- every minute from 3 hours after the start to 50 hours before it -------------------------

def local_clock(zone: str | None, language: str) -> str:
    moment = START.astimezone(ZoneInfo(zone)) if zone else START
    return moment.strftime("%H:%M" if language == "en" else "%H.%M")


@pytest.mark.parametrize("zone", [None, "Europe/Copenhagen", "America/New_York",
                                  "Asia/Tokyo"])
@pytest.mark.parametrize("language", ["en", "da"])
def test_every_minute_around_the_start_reads_right(language: str, zone: str | None) -> None:
    clock = local_clock(zone, language)
    city = CITY.get(zone or "")
    for minutes in range(-3 * 60, 50 * 60 + 1):
        described = when(minutes, language, zone)
        relative = str(described["relative"])
        where = f"{minutes} minutes ahead, {language}, {zone}: {relative!r}"
        assert described["started"] is (minutes < 0), where
        sentence = (f"X {STARTED[language]}" if described["started"]
                    else f"X {STARTS[language]} {relative}")
        assert f"{STARTS[language]} {STARTED[language]}" not in sentence, where
        assert not re.search(r"\b1 (hours|timer|minutes|minutter|days|dage)\b", relative), where
        if minutes < 0:
            assert relative == STARTED[language], where
            continue
        if minutes == 0:
            assert relative in ("now", "nu"), where
            continue
        # The start's clock time is always there, in the registrant's own zone, named when
        # it is not the event's.
        assert clock in relative, where
        if city:
            assert f"{clock} {'in' if language == 'en' else 'i'} {city}" in relative, where
        else:
            assert " New York" not in relative and " Tokyo" not in relative, where
        counted = amount(relative, language)
        if counted is None:  # "tomorrow at ...", "today at ...", "on Thursday at ..."
            assert minutes >= 110, where
            continue
        number, unit = counted
        said = number * {"minute": 1, "hour": 60, "day": 24 * 60}[unit]
        # The rounding a reader can live with: exact under 50 minutes, 10 minutes around
        # one hour, 5 minutes up to 110 minutes, half an hour after that.
        allowed = 0 if minutes < 50 else 10 if minutes <= 70 else 2 if minutes < 110 else 30
        if unit == "day":
            allowed = 24 * 60
        assert abs(said - minutes) <= allowed, where


# -- the reminder templates, rendered --------------------------------------------------------

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


@pytest.mark.parametrize("minutes", [-180, -61, -1, 0, 1, 45, 60, 75, 89, 110, 300, 1440,
                                     3000])
def test_the_reminder_reads_right_before_and_after_the_start(tmp_path: Path,
                                                               minutes: int) -> None:
    folder = write_event(tmp_path / "e", [("Ann Lee", "ann@example.org", "en",
                                           "America/New_York"),
                                          ("Bo Ek", "bo@example.org", "da", "Asia/Tokyo"),
                                          ("Cy Ho", "cy@example.org", "en", ""),
                                          ("Di Yu", "di@example.org", "da", "")],
                         header=("Name", "Email", "Language", "Timezone"))
    start = dt.datetime(2030, 12, 10, 13, 0, tzinfo=dt.UTC)
    campaign = Campaign.open(folder, template="reminder",
                             now=start - dt.timedelta(minutes=minutes))
    for registrant in unique_registrants(campaign.source):
        text = rendered(campaign, registrant)
        language = registrant.language
        assert f"{STARTS[language]} {STARTED[language]}" not in text, text
        assert not re.search(r"\b1 (hours|timer|minutes|minutter|days|dage)\b", text), text
        if minutes < 0:
            assert f"{STARTED[language]}." in text, text
        else:
            assert f"{STARTS[language]} " in text, text
        if registrant.timezone:
            city = CITY[registrant.timezone]
            # No clock time is left without its place: a range is the event's with its zone
            # after it, or the registrant's with their city; a single time names the city.
            for found in re.finditer(r"\b(at|kl\.) (\d{1,2}[:.]\d\d)\b(?!-)", text):
                after = text[found.end():found.end() + 20]
                assert re.match(rf" (in|i) {city}\b", after), (found[0], after, text)
        if minutes > 0 and registrant.timezone:
            # Every clock time of theirs that the text shows names their place.
            local = start.astimezone(ZoneInfo(registrant.timezone))
            clock = local.strftime("%H:%M" if language == "en" else "%H.%M")
            for found in re.finditer(re.escape(clock), text):
                after = text[found.end():found.end() + 40]
                assert re.match(rf"(-\S+ )?(in|i) {city}", after.lstrip()), (clock, after)
