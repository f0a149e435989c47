"""event.toml: a valid file becomes the dataclasses; every mistake names the file, line and key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from invitemail.addresses import Mailbox
from invitemail.config import load_config, parse_rate
from invitemail.errors import ConfigError, Problem
from support.event import EVENT_TOML

WriteToml = Callable[..., Path]


@pytest.fixture
def write_toml(tmp_path: Path) -> WriteToml:
    """Write EVENT_TOML with ``old`` replaced by ``new`` (each pair once); return the file."""

    def write(*changes: tuple[str, str]) -> Path:
        text = EVENT_TOML
        for old, new in changes:
            assert old in text, f"{old!r} is not in EVENT_TOML"
            text = text.replace(old, new, 1)
        path = tmp_path / "event.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# -- a valid file ---------------------------------------------------------------------------


def test_load_config_reads_every_key(write_toml: WriteToml) -> None:
    path = write_toml()

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


def test_load_config_accepts_the_path_of_event_toml(write_toml: WriteToml) -> None:
    path = write_toml()

    assert load_config(path).event.title == "Persondata i praksis"


def test_load_config_start_is_aware_in_the_event_time_zone(write_toml: WriteToml) -> None:
    start = load_config(write_toml()).event.start

    assert start.tzinfo == ZoneInfo("Europe/Copenhagen")
    assert start.astimezone(dt.UTC) == dt.datetime(2030, 12, 10, 13, 0, tzinfo=dt.UTC)


def test_load_config_start_with_an_offset_is_moved_into_the_event_time_zone(
    write_toml: WriteToml,
) -> None:
    path = write_toml(("start = 2030-12-10T14:00:00", "start = 2030-12-10T14:00:00+00:00"))

    start = load_config(path).event.start

    assert start == dt.datetime(2030, 12, 10, 15, 0, tzinfo=ZoneInfo("Europe/Copenhagen"))
    assert start.tzinfo == ZoneInfo("Europe/Copenhagen")


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_load_config_default_port_follows_security(write_toml: WriteToml, security: str,
                                                   port: int) -> None:
    path = write_toml(("port = 2525\n", ""), ('security = "starttls"', f'security = "{security}"'))

    smtp = load_config(path).smtp

    assert (smtp.security, smtp.port, smtp.where) == (security, port, f"smtp.example.org:{port}")


@pytest.mark.parametrize(("text", "per_second"), [
    ("10/s", 10.0), ("600/min", 10.0), ("36/h", 0.01), (" 2 / second ", 2.0), ("0.5/s", 0.5),
])
def test_parse_rate_gives_messages_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize(("rate", "per_second"), [("10/s", 10.0), ("600/min", 10.0),
                                                  ("36/h", 0.01)])
def test_load_config_reads_the_rate_as_messages_per_second(write_toml: WriteToml, rate: str,
                                                           per_second: float) -> None:
    path = write_toml(('rate = "10/s"', f'rate = "{rate}"'))

    sending = load_config(path).sending

    assert sending.rate == pytest.approx(per_second)
    assert sending.rate_text == rate


def test_load_config_without_a_sending_section_uses_the_defaults(write_toml: WriteToml) -> None:
    sending_section = EVENT_TOML[EVENT_TOML.index("[sending]"):]
    path = write_toml((sending_section, ""))

    sending = load_config(path).sending

    assert (sending.concurrency, sending.rate, sending.max_attempts,
            sending.max_consecutive_failures) == (4, None, 5, 20)


def test_load_config_support_hours_as_one_text_serve_every_language(
    write_toml: WriteToml,
) -> None:
    path = write_toml(('hours = { da = "hverdage kl. 9.00-16.00", en = "weekdays 9:00-16:00" }',
                       'hours = "hverdage kl. 9.00-16.00"'))

    support = load_config(path).support

    assert support.hours_in("da") == support.hours_in("en") == "hverdage kl. 9.00-16.00"


def test_load_config_meeting_id_may_be_a_number(write_toml: WriteToml) -> None:
    path = write_toml(('id = "842 1234 5678"', "id = 84212345678"))

    assert load_config(path).meeting.id == "84212345678"


def test_load_config_non_https_join_url_is_a_warning(write_toml: WriteToml) -> None:
    path = write_toml(('join_url = "https://zoom.us/j/', 'join_url = "http://zoom.us/j/'))

    config = load_config(path)

    assert config.meeting.join_url == "http://zoom.us/j/84212345678?pwd=abc123"
    assert config.warnings == (Problem(
        str(path), 15, "meeting.join_url: http://zoom.us/j/84212345678?pwd=abc123 is not "
        "https; registrants' browsers may warn", warning=True),)
    assert str(config.warnings[0]) == (
        f"{path}:15: warning: meeting.join_url: http://zoom.us/j/84212345678?pwd=abc123 is not "
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


def test_load_config_invalid_toml_names_the_file_and_line(write_toml: WriteToml) -> None:
    path = write_toml(("[event]\n", "[event\n"))

    err = config_error(path)

    assert str(err) == (f"{path}:1: is not valid TOML: Expected ']' at the end of a table "
                        "declaration (column 7)")
    assert err.hint == "see https://toml.io for the syntax"


def test_load_config_non_utf8_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "event.toml"
    path.write_bytes(EVENT_TOML.encode("cp1252"))

    err = config_error(path)

    assert str(err) == f"{path}: is not UTF-8 text"
    assert err.hint == "save it as UTF-8"


# -- keys and sections ----------------------------------------------------------------------


def test_load_config_unknown_key_suggests_the_close_one(write_toml: WriteToml) -> None:
    path = write_toml(('password = "Kx7pQ9"', 'pasword = "Kx7pQ9"'))

    err = config_error(path)

    assert str(err) == f"{path}:14: meeting.pasword: unknown key"
    assert err.hint == "did you mean 'password'?"
    assert err.key == "meeting.pasword"


def test_load_config_unknown_key_without_a_close_one_lists_the_known_keys(
    write_toml: WriteToml,
) -> None:
    path = write_toml(('phone = "33 95 97 00"', 'phone = "33 95 97 00"\nfax = "33 95 97 01"'))

    err = config_error(path)

    assert str(err) == f"{path}:26: support.fax: unknown key"
    assert err.hint == "known keys: phone, hours, email"


def test_load_config_unknown_section_suggests_the_close_one(write_toml: WriteToml) -> None:
    path = write_toml(("[privacy]", "[privacyy]"))

    err = config_error(path)

    assert str(err) == f"{path}:29: [privacyy]: unknown section"
    assert err.hint == "did you mean [privacy]?"


def test_load_config_missing_section_names_it(write_toml: WriteToml) -> None:
    path = write_toml(('[privacy]\npolicy_url = "https://example.org/privatliv/webinarer"\n', ""))

    err = config_error(path)

    assert str(err) == f"{path}: the [privacy] section is missing"
    assert err.hint == "add a [privacy] section; `invitemail init` writes a full example"


def test_load_config_missing_key_names_it(write_toml: WriteToml) -> None:
    path = write_toml(("duration = 60\n", ""))

    err = config_error(path)

    assert str(err) == f"{path}:1: event.duration: is missing"
    assert err.hint == "add `duration = ...` under [event]"


@pytest.mark.parametrize(("old", "new", "message"), [
    pytest.param("duration = 60", 'duration = "60"',
                 "5: event.duration: must be a whole number, not text '60'",
                 id="text-for-number"),
    pytest.param("port = 2525", "port = true", "34: smtp.port: must be a whole number, not "
                 "true/false", id="bool-for-number"),
    pytest.param("timeout = 30", 'timeout = "30s"', "37: smtp.timeout: must be a number, not "
                 "text '30s'", id="text-for-decimal"),
    pytest.param('title = "Persondata i praksis"', "title = 42",
                 "2: event.title: must be text, or a table per language such as "
                     '{ da = "...", en = "..." }, not the number 42', id="number-for-text"),
    pytest.param("waiting_room = true", 'waiting_room = "yes"',
                 "17: meeting.waiting_room: must be true or false, not text 'yes'",
                 id="text-for-bool"),
    pytest.param('id = "842 1234 5678"', "id = true",
                 '13: meeting.id: must be text such as "842 1234 5678", not true/false',
                 id="bool-for-text-or-number"),
    pytest.param("start = 2030-12-10T14:00:00", "start = 14:00:00",
                 "4: event.start: must be a date and time such as 2026-12-10T14:00:00, not a "
                 "time", id="time-for-datetime"),
])
def test_load_config_wrong_type_names_the_line_key_and_both_types(
    write_toml: WriteToml, old: str, new: str, message: str,
) -> None:
    path = write_toml((old, new))

    assert str(config_error(path)) == f"{path}:{message}"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("duration = 60", "duration = 0", "5: event.duration: must be from 1 to 1440, not 0"),
    ("sequence = 0", "sequence = -1", "9: event.sequence: must be at least 0, not -1"),
    ("port = 2525", "port = 70000", "34: smtp.port: must be from 1 to 65535, not 70000"),
])
def test_load_config_number_out_of_range_gives_the_bounds(
    write_toml: WriteToml, old: str, new: str, message: str,
) -> None:
    path = write_toml((old, new))

    assert str(config_error(path)) == f"{path}:{message}"


# -- values ---------------------------------------------------------------------------------


def test_load_config_bad_time_zone(write_toml: WriteToml) -> None:
    path = write_toml(('timezone = "Europe/Copenhagen"', 'timezone = "Europe/Copenhagn"'))

    err = config_error(path)

    assert str(err) == f"{path}:6: event.timezone: 'Europe/Copenhagn' is not a known time zone"
    assert err.hint == 'use an IANA name such as "Europe/Copenhagen"'


def test_load_config_invalid_date(write_toml: WriteToml) -> None:
    path = write_toml(("start = 2030-12-10T14:00:00", 'start = "2026-13-45"'))

    err = config_error(path)

    assert str(err) == f"{path}:4: event.start: '2026-13-45' is not a date and time"
    assert err.hint == "write it as 2026-12-10T14:00:00, without quotes"


@pytest.mark.parametrize("start", ["2030-12-10", '"2030-12-10"'], ids=["toml-date", "text"])
def test_load_config_date_without_time(write_toml: WriteToml, start: str) -> None:
    path = write_toml(("start = 2030-12-10T14:00:00", f"start = {start}"))

    err = config_error(path)

    assert str(err) == f"{path}:4: event.start: has a date but no time"
    assert err.hint == "write it as 2026-12-10T14:00:00"


def test_load_config_start_in_the_spring_dst_gap(write_toml: WriteToml) -> None:
    path = write_toml(("start = 2030-12-10T14:00:00", "start = 2027-03-28T02:30:00"))

    err = config_error(path)

    assert str(err) == (f"{path}:4: event.start: 2027-03-28 02:30 does not exist in "
                        "Europe/Copenhagen (the clocks skip that hour)")
    assert err.hint == "choose another time"


def test_load_config_unsupported_language(write_toml: WriteToml) -> None:
    path = write_toml(('language = "da"', 'language = "de"'))

    err = config_error(path)

    assert str(err) == f"{path}:7: event.language: 'de' is not supported"
    assert err.hint == "use 'da' or 'en'"


@pytest.mark.parametrize("url", ["zoom.us/j/84212345678", "https://", "javascript:alert(1)",
                                 "https://zoom.us/j/842 123", "https://zoom.us/j/842\\t123"])
def test_load_config_invalid_url(write_toml: WriteToml, url: str) -> None:
    path = write_toml(('join_url = "https://zoom.us/j/84212345678?pwd=abc123"',
                       f'join_url = "{url}"'))

    err = config_error(path)

    shown = url.replace("\\t", "\t")
    assert str(err) == f"{path}:15: meeting.join_url: {shown!r} is not a web address"
    assert err.hint == "write the full link, starting with https://"


def test_load_config_bad_rate(write_toml: WriteToml) -> None:
    path = write_toml(('rate = "10/s"', 'rate = "fast"'))

    err = config_error(path)

    assert str(err) == f"{path}:42: sending.rate: 'fast' is not a rate"
    assert err.hint == 'write it as "N/s", "N/min" or "N/h" with N above 0, e.g. "10/s"'


def test_load_config_bad_security(write_toml: WriteToml) -> None:
    path = write_toml(('security = "starttls"', 'security = "ssl"'))

    err = config_error(path)

    assert str(err) == f"{path}:35: smtp.security: 'ssl' is not one of 'starttls', 'tls', 'none'"


@pytest.mark.parametrize(("sender", "why"), [
    ("Djøf <arrangementer@example>",
     "The part after the @-sign is not valid. It should have a period."),
    ("arrangementer.example.org", 'write it as "Name <address@example.org>" or just the address'),
    ("Djøf <søren@example.org>",
     "Internationalized characters before the @-sign are not supported: 'ø'."),
])
def test_load_config_bad_sender_address(write_toml: WriteToml, sender: str, why: str) -> None:
    path = write_toml(('from = "Djøf Arrangementer <arrangementer@example.org>"',
                       f'from = "{sender}"'))

    err = config_error(path)

    assert str(err) == f"{path}:21: sender.from: {sender!r} is not a valid address: {why}"


def test_load_config_support_email_must_be_a_bare_address(write_toml: WriteToml) -> None:
    path = write_toml(('email = "kontakt@example.org"', 'email = "kontakt"'))

    err = config_error(path)

    assert str(err) == (f"{path}:27: support.email: 'kontakt' is not a valid address: An email "
                        "address must have an @-sign.")


@pytest.mark.parametrize(("old", "new", "message"), [
    ('title = "Persondata i praksis"', 'title = "Persondata\\ni praksis"',
     "2: event.title: must be on one line"),
    ('title = "Persondata i praksis"', 'title = """Persondata\ni praksis"""',
     "2: event.title: must be on one line"),
    ('password = "Kx7pQ9"', 'password = "Kx7p\\rQ9"', "14: meeting.password: must be on one line"),
    ('from = "Djøf Arrangementer <arrangementer@example.org>"',
     'from = "Djøf\\nBcc: alle@example.org <arrangementer@example.org>"',
     "21: sender.from: must be on one line"),
])
def test_load_config_line_break_in_a_value(write_toml: WriteToml, old: str, new: str,
                                            message: str) -> None:
    path = write_toml((old, new))

    assert str(config_error(path)) == f"{path}:{message}"


def test_load_config_description_may_span_lines(write_toml: WriteToml) -> None:
    path = write_toml(('description = "Et webinar om persondata."',
                       'description = """Et webinar\nom persondata."""'))

    assert load_config(path).event.description == "Et webinar\nom persondata."


def test_load_config_empty_value(write_toml: WriteToml) -> None:
    path = write_toml(('title = "Persondata i praksis"', 'title = "  "'))

    assert str(config_error(path)) == f"{path}:2: event.title: is empty"


def test_load_config_missing_ca_file(write_toml: WriteToml) -> None:
    path = write_toml(("allow_insecure_auth = false", 'ca_file = "ca.pem"'))

    assert str(config_error(path)) == (
        f"{path}:38: smtp.ca_file: {path.parent / 'ca.pem'} does not exist")
