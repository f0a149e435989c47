"""Per-language event text: `[event] title`, `description` and `[privacy] policy_url` take one
text or a table per language, and every registrant gets their language's text everywhere it
appears (subject, both parts, the calendar entry, the add-to-calendar links); the follow-up's
links (`recording_url`, `slides_url`, `next_url`) are checked like the other links."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote_plus

import icalendar
import pytest

from invitemail.campaign import Campaign
from invitemail.errors import ConfigError
from invitemail.inputs.config import load_config
from invitemail.inputs.registrants import unique_registrants
from invitemail.render.renderer import Renderer
from support.cli import run_cli
from support.event import NOW, EventBuilder, Raw, WrittenEvent, write_event

ROWS = [("Søren", "soren@example.org", "da"), ("Karen", "karen@example.org", "en")]


SECTIONS = {"policy_url": "privacy"}  # the other keys here are [event]'s


def event(tmp_path: Path, *lines: str) -> WrittenEvent:
    """The event with each ``key = value`` (TOML source) set by its key: in place of the
    key's line, or at the end of its section for a key the default file does not have."""
    builder = EventBuilder(rows=ROWS)
    for line in lines:
        key, value = line.split(" = ", 1)
        builder.set(SECTIONS.get(key, "event"), key, Raw(value))
    return builder.write(tmp_path / "event")


def messages(folder: Path, template: str = "invitation") -> dict[str, EmailMessage]:
    campaign = Campaign.open(folder, template=template, now=NOW)
    found = {}
    for registrant in unique_registrants(campaign.source):
        parsed = message_from_bytes(campaign.build(registrant).data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found[registrant.language] = parsed
    return found


def parts(message: EmailMessage) -> tuple[str, str, str, icalendar.Event]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    payload = calendar.get_payload(decode=True)
    assert isinstance(payload, bytes)
    vevent = icalendar.Calendar.from_ical(payload).walk("VEVENT")[0]
    return str(message["Subject"]), text.get_content(), html.get_content(), vevent


@pytest.mark.parametrize("template", ["invitation", "reminder", "update", "cancellation"])
def test_event_languages_each_registrant_gets_their_title_everywhere(
        tmp_path: Path, template: str) -> None:
    folder = event(tmp_path, 'title = { da = "Persondata i praksis", '
                   'en = "Personal data in practice" }',
                   'description = { da = "Om data i hverdagen.", '
                   'en = "About data, day to day." }',
                   'policy_url = { da = "https://example.org/da/privatliv", '
                   'en = "https://example.org/en/privacy" }').folder
    found = messages(folder, template)
    for language, mine, other in (("da", "Persondata i praksis", "Personal data in practice"),
                                  ("en", "Personal data in practice", "Persondata i praksis")):
        subject, text, html, vevent = parts(found[language])
        assert mine in subject and other not in subject
        for body in (text, html):
            assert mine in body and other not in body, (language, template)
        assert str(vevent["SUMMARY"]) == mine
        assert str(vevent["DESCRIPTION"]).startswith(mine + "\n")
        if template == "invitation":
            policy_url = ("https://example.org/da/privatliv" if language == "da"
                          else "https://example.org/en/privacy")
            assert policy_url in text and policy_url in html
            description = "Om data i hverdagen." if language == "da" else "About data, day to day."
            assert description in text and description in html
            # The add-to-calendar links carry the title too.
            assert quote_plus(mine) in html and quote_plus(other) not in html


@pytest.mark.parametrize(("line", "da", "en"), [
    ('title = { en = "Personal data" }', "Personal data", "Personal data"),
    ('title = { da = "Persondata" }', "Persondata", "Persondata"),
    ('title = "Persondata"', "Persondata", "Persondata"),
    ('title = { en = "Personal data", da = "Persondata" }', "Persondata", "Personal data"),
])
def test_event_languages_a_missing_language_falls_back_as_hours_does(
        tmp_path: Path, line: str, da: str, en: str) -> None:
    folder = event(tmp_path, line).folder
    found = messages(folder)
    assert str(parts(found["da"])[3]["SUMMARY"]) == da
    assert str(parts(found["en"])[3]["SUMMARY"]) == en


def test_event_languages_default_title_is_the_event_language_s(tmp_path: Path) -> None:
    folder = event(tmp_path, 'title = { en = "Personal data", da = "Persondata" }').folder
    config = load_config(folder)
    assert config.event.title == "Persondata"  # [event] language = "da"
    assert config.event.title_in("en") == "Personal data"


def test_event_languages_plain_text_and_a_table_of_the_same_text_give_the_same_bytes(
        tmp_path: Path) -> None:
    """One text is the same as a table giving every language that text: the built-in
    messages do not change for an event that writes plain strings."""
    plain = messages(write_event(tmp_path / "a", ROWS))
    table = messages(event(
        tmp_path, 'title = { da = "Persondata i praksis", en = "Persondata i praksis" }',
        'description = { da = "Et webinar om persondata.", '
        'en = "Et webinar om persondata." }',
        'policy_url = { da = "https://example.org/privatliv/webinarer", '
        'en = "https://example.org/privatliv/webinarer" }').folder)
    for language in ("da", "en"):
        assert plain[language].as_bytes() == table[language].as_bytes()


def test_event_languages_fast_path_matches_the_full_render(tmp_path: Path) -> None:
    rows = [(f"N{i}", f"r{i}@example.org", "da" if i % 2 else "en") for i in range(6)]
    folder = EventBuilder(rows=rows).set(
        "event", "title", {"da": "Dansk titel", "en": "English title"}).write(
        tmp_path / "e").folder
    fast = Campaign.open(folder, now=NOW)
    plain = Campaign(fast.config, fast.source, Renderer(folder / "templates", fast=False),
                     now=NOW)
    for registrant in unique_registrants(fast.source):
        data = fast.build(registrant).data
        assert data == plain.build(registrant).data
        wanted = "English title" if registrant.language == "en" else "Dansk titel"
        assert wanted.encode() in data or wanted.replace(" ", "_").encode() in data
    assert fast.renderer.filled == len(rows)  # the skeletons were used, per language


@pytest.mark.parametrize(("line", "message", "hint"), [
    ('title = { de = "Persondaten" }', "event.title: has a bad entry 'de'",
     'give text per language: { da = "...", en = "..." }'),
    ('title = { da = "" }', "event.title: has a bad entry 'da'", None),
    ("title = {}", "event.title: is empty", None),
    ('title = { da = "Linje\\nto" }', "event.title: must be on one line", None),
    ('title = { da = 7 }', "event.title: has a bad entry 'da'", None),
    ('policy_url = { da = "example.org/privatliv" }',
     "privacy.policy_url: 'example.org/privatliv' is not a web address",
     "write the full link, starting with https://"),
    ('policy_url = { da = "https://example.org/x", en = "not a link" }',
     "privacy.policy_url: 'not a link' is not a web address", None),
    ('description = { en = "Tab\\u0007bell" }', "event.description: contains a control "
     "character (U+0007)", None),
])
def test_event_languages_bad_tables_name_the_file_line_and_key(
        tmp_path: Path, line: str, message: str, hint: str | None) -> None:
    key = line.split(" =")[0]
    written = event(tmp_path, line)
    folder = written.folder
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    assert str(caught.value) == f"{written.where(SECTIONS.get(key, 'event'), key)}: {message}"
    if hint is not None:
        assert caught.value.hint == hint
    run = run_cli("check", folder)
    assert run.exit_code == 1 and message in run.stderr and "Traceback" not in run.output


@pytest.mark.parametrize("key", ["recording_url", "slides_url", "next_url"])
@pytest.mark.parametrize(("value", "message"), [
    ('"zoom.us/rec/1"', "'zoom.us/rec/1' is not a web address"),
    ('"ftp://example.org/rec"', "'ftp://example.org/rec' is not a web address"),
    ('"https://example.org/a b"', "'https://example.org/a b' is not a web address"),
    ("42", "must be text, not the number 42"),
])
def test_event_languages_followup_links_are_checked_like_the_other_links(
        tmp_path: Path, key: str, value: str, message: str) -> None:
    written = event(tmp_path, f"{key} = {value}")
    with pytest.raises(ConfigError) as caught:
        load_config(written.folder)
    assert str(caught.value) == f"{written.where('event', key)}: event.{key}: {message}"


def test_event_languages_followup_links_are_read(tmp_path: Path) -> None:
    folder = event(tmp_path, 'recording_url = "https://zoom.us/rec/share/x"',
                   'slides_url = "http://example.org/slides.pdf"').folder
    config = load_config(folder)
    assert config.event.recording_url == "https://zoom.us/rec/share/x"
    assert config.event.slides_url == "http://example.org/slides.pdf"
    assert config.event.next_url is None
    assert [w.message for w in config.warnings] == [
        "event.slides_url: http://example.org/slides.pdf is not https; registrants' browsers "
        "may warn"]
