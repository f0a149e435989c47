"""event.toml: a valid file becomes the dataclasses; every mistake names the file, line and key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from invitemail.errors import ConfigError, Problem
from invitemail.inputs.addresses import Mailbox
from invitemail.inputs.config import load_config, parse_rate
from support.event import EventBuilder, Raw, WrittenEvent

Build = Callable[..., WrittenEvent]


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """``build(builder)``: write the builder's event (the defaults when none) into tmp_path."""

    def write(builder: EventBuilder | None = None) -> WrittenEvent:
        return (builder or EventBuilder()).write(tmp_path)

    return write


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# -- a valid file ---------------------------------------------------------------------------


def test_load_config_reads_every_key(build: Build) -> None:
    path = build().toml_path

    config = load_config(path.parent)

    assert config.path == path
    assert config.folder == path.parent
    event = config.event
    assert event.title == "Persondata i praksis"
    assert event.description == "Et webinar om persondata."
    assert event.start == dt.datetime(2030, 12, 10, 14, 0, tzinfo=ZoneInfo("Europe/Copenhagen"))
    assert event.end == dt.datetime(2030, 12, 10, 15, 0, tzinfo=ZoneInfo("Europe/Copenhagen"))
    assert (event.duration, event.timezone, event.language) == (60, "Europe/Copenhagen", "da")
    assert (event.uid, event.sequence) == ("persondata-2030-12-10@example.org", 0)
    meeting = config.meeting
    assert (meeting.platform, meeting.id, meeting.password) == ("Zoom", "842 1234 5678", "Kx7pQ9")
    assert meeting.join_url == "https://zoom.us/j/84212345678?pwd=abc123"
    assert meeting.web_join_url == "https://zoom.us/wc/join/84212345678"
    assert (meeting.waiting_room, meeting.recorded) == (True, True)
    assert config.sender.mailbox == Mailbox("Djøf Arrangementer", "arrangementer@example.org")
    assert config.sender.reply_to == Mailbox("", "svar@example.org")
    assert config.support.phone == "33 95 97 00"
    assert config.support.hours_in("da") == "hverdage kl. 9.00-16.00"
    assert config.support.hours_in("en") == "weekdays 9:00-16:00"
    assert config.support.email == "kontakt@example.org"
    assert config.privacy.policy_url == "https://example.org/privatliv/webinarer"
    smtp = config.smtp
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.example.org", 2525, "starttls")
    assert (smtp.username, smtp.timeout) == ("arrangementer@example.org", 30.0)
    assert (smtp.ca_file, smtp.allow_insecure_auth) == (None, False)
    sending = config.sending
    assert (sending.concurrency, sending.rate, sending.rate_text) == (4, 10.0, "10/s")
    assert (sending.max_attempts, sending.max_consecutive_failures) == (5, 20)
    assert config.warnings == ()


def test_load_config_accepts_the_path_of_event_toml(build: Build) -> None:
    path = build().toml_path

    assert load_config(path).event.title == "Persondata i praksis"


def test_load_config_start_is_aware_in_the_event_time_zone(build: Build) -> None:
    start = load_config(build().toml_path).event.start

    assert start.tzinfo == ZoneInfo("Europe/Copenhagen")
    assert start.astimezone(dt.UTC) == dt.datetime(2030, 12, 10, 13, 0, tzinfo=dt.UTC)


def test_load_config_start_with_an_offset_is_moved_into_the_event_time_zone(
    build: Build,
) -> None:
    path = build(EventBuilder().set("event", "start", Raw("2030-12-10T14:00:00+00:00"))).toml_path

    start = load_config(path).event.start

    assert start == dt.datetime(2030, 12, 10, 15, 0, tzinfo=ZoneInfo("Europe/Copenhagen"))
    assert start.tzinfo == ZoneInfo("Europe/Copenhagen")


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_load_config_default_port_follows_security(build: Build, security: str,
                                                   port: int) -> None:
    path = build(EventBuilder().drop("smtp", "port").set("smtp", "security", security)).toml_path

    smtp = load_config(path).smtp

    assert (smtp.security, smtp.port, smtp.where) == (security, port, f"smtp.example.org:{port}")


@pytest.mark.parametrize(("text", "per_second"), [
    ("10/s", 10.0), ("600/min", 10.0), ("36/h", 0.01), (" 2 / second ", 2.0), ("0.5/s", 0.5),
])
def test_parse_rate_gives_messages_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize(("rate", "per_second"), [("10/s", 10.0), ("600/min", 10.0),
                                                  ("36/h", 0.01)])
def test_load_config_reads_the_rate_as_messages_per_second(build: Build, rate: str,
                                                           per_second: float) -> None:
    path = build(EventBuilder().set("sending", "rate", rate)).toml_path

    sending = load_config(path).sending

    assert sending.rate == pytest.approx(per_second)
    assert sending.rate_text == rate


def test_load_config_without_a_sending_section_uses_the_defaults(build: Build) -> None:
    path = build(EventBuilder().drop("sending")).toml_path
    assert "[sending]" not in path.read_text(encoding="utf-8")

    sending = load_config(path).sending

    assert (sending.concurrency, sending.rate, sending.max_attempts,
            sending.max_consecutive_failures) == (4, None, 5, 20)


def test_load_config_support_hours_as_one_text_serve_every_language(
    build: Build,
) -> None:
    path = build(EventBuilder().set("support", "hours", "hverdage kl. 9.00-16.00")).toml_path

    support = load_config(path).support

    assert support.hours_in("da") == support.hours_in("en") == "hverdage kl. 9.00-16.00"


def test_load_config_meeting_id_may_be_a_number(build: Build) -> None:
    path = build(EventBuilder().set("meeting", "id", 84212345678)).toml_path

    assert load_config(path).meeting.id == "84212345678"


def test_load_config_non_https_join_url_is_a_warning(build: Build) -> None:
    event = build(EventBuilder().set("meeting", "join_url",
                                     "http://zoom.us/j/84212345678?pwd=abc123"))
    path = event.toml_path

    config = load_config(path)

    assert config.meeting.join_url == "http://zoom.us/j/84212345678?pwd=abc123"
    assert config.warnings == (Problem(
        str(path), event.line("meeting", "join_url"),
        "meeting.join_url: http://zoom.us/j/84212345678?pwd=abc123 is not "
        "https; registrants' browsers may warn", warning=True),)
    assert str(config.warnings[0]) == (
        f"{event.where('meeting', 'join_url')}: "
        "warning: meeting.join_url: http://zoom.us/j/84212345678?pwd=abc123 is not "
        "https; registrants' browsers may warn")


# -- the file itself ------------------------------------------------------------------------


def test_load_config_without_event_toml_names_the_file(tmp_path: Path) -> None:
    err = config_error(tmp_path)

    assert str(err) == f"{tmp_path / 'event.toml'}: not found"
    assert err.hint == f"is {tmp_path} an event folder? `invitemail init DIR` makes one"


def test_load_config_without_the_folder_names_it(tmp_path: Path) -> None:
    err = config_error(tmp_path / "nowhere")

    assert str(err) == f"{tmp_path / 'nowhere'}: no such folder or file"
    assert err.hint == "give the event folder, or run `invitemail init DIR` first"


def test_load_config_invalid_toml_names_the_file_and_line(build: Build) -> None:
    event = build()
    EventBuilder().toml.rewrite_header("event", "[event").save(event.toml_path)  # not TOML
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('event')}: "
                        "is not valid TOML: Expected ']' at the end of a table "
                        "declaration (column 7)")
    assert err.hint == "see https://toml.io for the syntax"


def test_load_config_non_utf8_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "event.toml"
    path.write_bytes(EventBuilder().toml.text().encode("cp1252"))

    err = config_error(path)

    assert str(err) == f"{path}: is not UTF-8 text"
    assert err.hint == "save it as UTF-8"


# -- keys and sections ----------------------------------------------------------------------


def test_load_config_unknown_key_suggests_the_close_one(build: Build) -> None:
    builder = EventBuilder()
    builder.toml.rename("meeting", "password", "pasword")
    event = build(builder)

    err = config_error(event.toml_path)

    assert str(err) == f"{event.where('meeting', 'pasword')}: meeting.pasword: unknown key"
    assert err.hint == "did you mean 'password'?"
    assert err.key == "meeting.pasword"


def test_load_config_unknown_key_without_a_close_one_lists_the_known_keys(
    build: Build,
) -> None:
    event = build(EventBuilder().set("support", "fax", "33 95 97 01"))

    err = config_error(event.toml_path)

    assert str(err) == f"{event.where('support', 'fax')}: support.fax: unknown key"
    assert err.hint == "known keys: phone, hours, email"


def test_load_config_unknown_section_suggests_the_close_one(build: Build) -> None:
    builder = EventBuilder()
    builder.toml.rename_section("privacy", "privacyy")
    event = build(builder)

    err = config_error(event.toml_path)

    assert str(err) == f"{event.where('privacyy')}: [privacyy]: unknown section"
    assert err.hint == "did you mean [privacy]?"


def test_load_config_missing_section_names_it(build: Build) -> None:
    path = build(EventBuilder().drop("privacy")).toml_path

    err = config_error(path)

    assert str(err) == f"{path}: the [privacy] section is missing"
    assert err.hint == "add a [privacy] section; `invitemail init` writes a full example"


def test_load_config_missing_key_names_it(build: Build) -> None:
    event = build(EventBuilder().drop("event", "duration"))

    err = config_error(event.toml_path)

    assert str(err) == f"{event.where('event')}: event.duration: is missing"
    assert err.hint == "add `duration = ...` under [event]"


@pytest.mark.parametrize(("key", "value", "message"), [
    pytest.param("event.duration", Raw('"60"'),
                 "event.duration: must be a whole number, not text '60'",
                 id="text-for-number"),
    pytest.param("smtp.port", Raw("true"), "smtp.port: must be a whole number, not "
                 "true/false", id="bool-for-number"),
    pytest.param("smtp.timeout", Raw('"30s"'), "smtp.timeout: must be a number, not "
                 "text '30s'", id="text-for-decimal"),
    pytest.param("event.title", Raw("42"),
                 "event.title: must be text, or a table per language such as "
                     '{ da = "...", en = "..." }, not the number 42', id="number-for-text"),
    pytest.param("meeting.waiting_room", Raw('"yes"'),
                 "meeting.waiting_room: must be true or false, not text 'yes'",
                 id="text-for-bool"),
    pytest.param("meeting.id", Raw("true"),
                 'meeting.id: must be text such as "842 1234 5678", not true/false',
                 id="bool-for-text-or-number"),
    pytest.param("event.start", Raw("14:00:00"),
                 "event.start: must be a date and time such as 2026-12-10T14:00:00, not a "
                 "time", id="time-for-datetime"),
])
def test_load_config_wrong_type_names_the_line_key_and_both_types(
    build: Build, key: str, value: Raw, message: str,
) -> None:
    section, name = key.split(".")
    event = build(EventBuilder().set(section, name, value))

    assert str(config_error(event.toml_path)) == f"{event.where(section, name)}: {message}"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("event.duration", 0, "event.duration: must be from 1 to 1440, not 0"),
    ("event.sequence", -1, "event.sequence: must be at least 0, not -1"),
    ("smtp.port", 70000, "smtp.port: must be from 1 to 65535, not 70000"),
])
def test_load_config_number_out_of_range_gives_the_bounds(
    build: Build, key: str, value: int, message: str,
) -> None:
    section, name = key.split(".")
    event = build(EventBuilder().set(section, name, value))

    assert str(config_error(event.toml_path)) == f"{event.where(section, name)}: {message}"


# -- values ---------------------------------------------------------------------------------


def test_load_config_bad_time_zone(build: Build) -> None:
    event = build(EventBuilder().set("event", "timezone", "Europe/Copenhagn"))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('event', 'timezone')}: "
                        "event.timezone: 'Europe/Copenhagn' is not a known time zone")
    assert err.hint == 'use an IANA name such as "Europe/Copenhagen"'


def test_load_config_invalid_date(build: Build) -> None:
    event = build(EventBuilder().set("event", "start", "2026-13-45"))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('event', 'start')}: "
                        "event.start: '2026-13-45' is not a date and time")
    assert err.hint == "write it as 2026-12-10T14:00:00, without quotes"


@pytest.mark.parametrize("start", ["2030-12-10", '"2030-12-10"'], ids=["toml-date", "text"])
def test_load_config_date_without_time(build: Build, start: str) -> None:
    event = build(EventBuilder().set("event", "start", Raw(start)))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == f"{event.where('event', 'start')}: event.start: has a date but no time"
    assert err.hint == "write it as 2026-12-10T14:00:00"


def test_load_config_start_in_the_spring_dst_gap(build: Build) -> None:
    event = build(EventBuilder().set("event", "start", Raw("2027-03-28T02:30:00")))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('event', 'start')}: "
                        "event.start: 2027-03-28 02:30 does not exist in "
                        "Europe/Copenhagen (the clocks skip that hour)")
    assert err.hint == "choose another time"


def test_load_config_unsupported_language(build: Build) -> None:
    event = build(EventBuilder().set("event", "language", "de"))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == f"{event.where('event', 'language')}: event.language: 'de' is not supported"
    assert err.hint == "use 'da' or 'en'"


@pytest.mark.parametrize("url", ["zoom.us/j/84212345678", "https://", "javascript:alert(1)",
                                 "https://zoom.us/j/842 123", "https://zoom.us/j/842\\t123"])
def test_load_config_invalid_url(build: Build, url: str) -> None:
    event = build(EventBuilder().set("meeting", "join_url", Raw(f'"{url}"')))
    path = event.toml_path

    err = config_error(path)

    shown = url.replace("\\t", "\t")
    assert str(err) == (f"{event.where('meeting', 'join_url')}: "
                        f"meeting.join_url: {shown!r} is not a web address")
    assert err.hint == "write the full link, starting with https://"


def test_load_config_bad_rate(build: Build) -> None:
    event = build(EventBuilder().set("sending", "rate", "fast"))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == f"{event.where('sending', 'rate')}: sending.rate: 'fast' is not a rate"
    assert err.hint == 'write it as "N/s", "N/min" or "N/h" with N above 0, e.g. "10/s"'


def test_load_config_bad_security(build: Build) -> None:
    event = build(EventBuilder().set("smtp", "security", "ssl"))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('smtp', 'security')}: "
                        "smtp.security: 'ssl' is not one of 'starttls', 'tls', 'none'")


@pytest.mark.parametrize(("sender", "why"), [
    ("Djøf <arrangementer@example>",
     "The part after the @-sign is not valid. It should have a period."),
    ("arrangementer.example.org", 'write it as "Name <address@example.org>" or just the address'),
    ("Djøf <søren@example.org>",
     "Internationalized characters before the @-sign are not supported: 'ø'."),
])
def test_load_config_bad_sender_address(build: Build, sender: str, why: str) -> None:
    event = build(EventBuilder().set("sender", "from", sender))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('sender', 'from')}: "
                        f"sender.from: {sender!r} is not a valid address: {why}")


def test_load_config_support_email_must_be_a_bare_address(build: Build) -> None:
    event = build(EventBuilder().set("support", "email", "kontakt"))
    path = event.toml_path

    err = config_error(path)

    assert str(err) == (f"{event.where('support', 'email')}: "
                        "support.email: 'kontakt' is not a valid address: An email "
                        "address must have an @-sign.")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("event.title", Raw('"Persondata\\ni praksis"'), "event.title: must be on one line"),
    ("event.title", Raw('"""Persondata\ni praksis"""'), "event.title: must be on one line"),
    ("meeting.password", Raw('"Kx7p\\rQ9"'), "meeting.password: must be on one line"),
    ("sender.from", Raw('"Djøf\\nBcc: alle@example.org <arrangementer@example.org>"'),
     "sender.from: must be on one line"),
])
def test_load_config_line_break_in_a_value(build: Build, key: str, value: Raw,
                                            message: str) -> None:
    section, name = key.split(".")
    event = build(EventBuilder().set(section, name, value))

    assert str(config_error(event.toml_path)) == f"{event.where(section, name)}: {message}"


def test_load_config_description_may_span_lines(build: Build) -> None:
    path = build(EventBuilder().set("event", "description",
                                    Raw('"""Et webinar\nom persondata."""'))).toml_path

    assert load_config(path).event.description == "Et webinar\nom persondata."


def test_load_config_empty_value(build: Build) -> None:
    event = build(EventBuilder().set("event", "title", "  "))
    path = event.toml_path

    assert str(config_error(path)) == f"{event.where('event', 'title')}: event.title: is empty"


def test_load_config_missing_ca_file(build: Build) -> None:
    event = build(EventBuilder().set("smtp", "ca_file", "ca.pem"))
    path = event.toml_path

    assert str(config_error(path)) == (
        f"{event.where('smtp', 'ca_file')}: smtp.ca_file: {path.parent / 'ca.pem'} does not exist")
