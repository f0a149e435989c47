"""What a relay says is shown and stored without the password and without terminal control
(issue 11, class 8).

- The SMTP password, and every base64 form a relay can echo (the AUTH PLAIN payload with and
  without an authzid, the AUTH LOGIN payload, standard or URL-safe, padded or not, alone or
  inside a longer run of base64), is redacted wherever it appears in a reply, whatever
  punctuation surrounds it, before white space is touched: a password with two spaces or a
  tab is found too.
- Escape sequences (OSC titles and OSC 8 links, CSI, ...) are removed and other control
  characters (BEL, C1, bidi overrides, bytes that were not UTF-8) shown as ``?``, in stderr,
  the journal, ``status`` and ``status --report``.
- A password that is not valid UTF-8 stops ``send`` with an error and a hint, exit 1.

The pure functions first (property tests), then real relays (aiosmtpd) that echo what the
client sent and answer with escape sequences, then the CLI in a process of its own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invitemail.send.redaction import MAX_REPLY, REDACTED, clean_reply, format_reply, redact
from support.cli import run_cli
from support.event import EventBuilder
from support.relay import SERVER_NAME, RecordingHandler, Script, ScriptedSMTP, SmtpServer

USER = "arrangementer"
PASSWORD_ENV = "INVITEMAIL_SMTP_PASSWORD"
# Two spaces and a tab: white space that collapsing would change.
SECRET = "Qv7  Zr2\tLx-smtp"


def base64_forms(secret: str, user: str = USER) -> list[str]:
    """Every base64 text of ``secret`` a relay can echo (each one must never be shown)."""
    data = secret.encode("utf-8")
    payloads = [data, b"\0" + user.encode() + b"\0" + data,  # LOGIN; PLAIN
                user.encode() + b"\0" + user.encode() + b"\0" + data]  # PLAIN with authzid
    forms: list[str] = []
    for payload in payloads:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(payload).decode()
            forms += [text, text.rstrip("=")]
    # Inside any longer base64 text, at each of the three alignments: the characters that
    # only the password's bytes decide (long enough to mean something).
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + data).decode()
            core = text[(8 * shift + 5) // 6:8 * (shift + len(data)) // 6]
            if len(core) >= 4:
                forms.append(core)
    return forms


def assert_clean(text: str, secret: str, *, lines: bool = False) -> None:
    """No password, no base64 form of it, no escape or other control character."""
    assert secret not in text
    for form in base64_forms(secret):
        assert form not in text, form
    allowed = "\r\n" if lines else ""
    bad = [c for c in text if not c.isprintable() and c not in allowed]
    assert not bad, bad


# -- the pure functions ------------------------------------------------------------------------


ESCAPES = ["\x1b]0;title\x07", "\x1b]8;;http://evil.example\x1b\\", "\x1b]8;;\x1b\\", "\x1b[2J",
           "\x1b[31;1m", "\x07", "\x08", "\x1b", "\x9b31m", "\x9d0;t\x9c", "\x1bP1$r\x1b\\",
           "\u202e", "\u2066", "\u200f", "\x85", "\x7f", "\udcff", "\x00", "\x1bc"]
around = st.sampled_from([
    "", " ", "  ", "\t", "\r\n", ":", "(auth=", ")", "=", "/", "+", "-", "_", "<", ">", "'", '"',
    "[", "]", ",", ".", "you sent:", "535 5.7.8 ", "AAAA", "x", "Zm9v", "\u00a0", *ESCAPES])
noise = st.lists(around, max_size=5).map("".join) | st.text(max_size=12)
passwords = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24) | \
    st.sampled_from(["two  spaces", "a\ttab", "  ", "\t", "a", "ab", "abc", "[", "]", "e",
                     "d]x", "*", "*#~%!", "y\u059c", "p@ss w0rd!", "pässwørd", "🔑🔑"])


@st.composite
def echoes(draw: st.DrawFn) -> tuple[str, str]:
    """A password, and a reply that echoes it (or a base64 form of it) somewhere."""
    secret = draw(passwords)
    data = secret.encode()
    user = draw(st.sampled_from([USER, "u", "user@example.org"]))
    login = user.encode()
    payload = draw(st.sampled_from([
        data, b"\0" + login + b"\0" + data, login + b"\0" + login + b"\0" + data,
        draw(st.binary(max_size=5)) + data + draw(st.binary(max_size=5))]))
    encode = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
    encoded = encode(payload).decode()
    form = draw(st.sampled_from([secret, encoded, encoded.rstrip("=")]))
    copies = [draw(noise) + form for _ in range(draw(st.integers(1, 3)))]
    return secret, "".join(copies) + draw(noise)


@given(echoes())
@settings(max_examples=400, deadline=None)
@example(("Qv7  Zr2\tLx", "535 5.7.8 you sent:" + base64.b64encode(b"\0u\0Qv7  Zr2\tLx").decode()))
@example(("Qv7  Zr2\tLx", "535 echoed: Qv7  Zr2\tLx, with its white space"))
@example(("hunter22", "(auth=" + base64.urlsafe_b64encode(b"hunter22").decode().rstrip("=") + ")"))
@example(("e", "you sent: e\x07e"))
@example(("a?b", "550 a\x07b"))
@example(("y\u059c", "535 " + base64.b64encode("y\u059c".encode()).decode()))  # "edac"
@example(("pw", "x" * (MAX_REPLY - 3) + "pw"))
def test_clean_reply_never_holds_the_password_or_its_base64_or_control(
        echo: tuple[str, str]) -> None:
    secret, reply = echo

    cleaned = clean_reply(reply, secret)

    assert_clean(cleaned, secret)
    assert len(cleaned) <= MAX_REPLY + 3 + len(REDACTED)
    assert "\n" not in cleaned and "  " not in cleaned


@given(secret=passwords, reply=noise)
@settings(max_examples=200, deadline=None)
def test_clean_reply_of_any_text_holds_no_control(secret: str, reply: str) -> None:
    assert_clean(clean_reply(reply, secret), secret)
    shown = format_reply(550, reply, secret)
    assert shown.startswith("550")
    assert_clean(shown[3:], secret)  # the code is invitemail's, not the relay's
    garbled = format_reply(-1, reply, secret)  # not SMTP at all
    if garbled != "an empty reply":  # invitemail's words
        assert_clean(garbled, secret)
        assert len(garbled) <= 120 + 3 + len(REDACTED)


@pytest.mark.parametrize(("reply", "shown"), [
    ("535 5.7.8 \x1b]0;pwned\x07Authentication failed", "535 5.7.8 Authentication failed"),
    ("550 see \x1b]8;;http://evil.example\x1b\\this link\x1b]8;;\x1b\\ now",
     "550 see this link now"),
    ("451 \x1b[2J\x1b[1;31mred\x1b[0m", "451 red"),
    ("550 bell\x07 back\x08space", "550 bell? back?space"),
    ("550 \u202eoverride\u202c \u2066isolate\u2069", "550 ?override? ?isolate?"),
    ("550 C1 \x9b2J and \x9d0;t\x9c done", "550 C1 and done"),
    ("550 not utf-8: \udcff\udcfe", "550 not utf-8: ??"),
    ("550 5.1.1 <a@b>:\r\nUser\tunknown\u2028now", "550 5.1.1 <a@b>: User unknown now"),
    ("421 \x1bPq#0;2;0;0;0\x1b\\sixel", "421 sixel"),
    ("550 unterminated \x1b]0;title", "550 unterminated"),
])
def test_escape_sequences_are_removed_and_controls_shown_as_question_marks(
        reply: str, shown: str) -> None:
    assert clean_reply(reply) == shown


@pytest.mark.parametrize("template", [
    "535 5.7.8 you sent:{b64}", "535 (auth={b64})", "535 auth={b64}.", "535 '{b64}'",
    "535 x/{b64}/y", "535 a{b64}", "535 <{b64}>", "535\t{b64}\t", "535 {b64}\x1b[0m",
])
@pytest.mark.parametrize("payload", [
    f"\0{USER}\0{SECRET}", f"{USER}\0{USER}\0{SECRET}", SECRET, f"xx{SECRET}yyy"])
def test_auth_payloads_are_redacted_whatever_surrounds_them(template: str, payload: str) -> None:
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for b64 in (encode(payload.encode()).decode(), encode(payload.encode()).decode()
                    .rstrip("=")):
            shown = format_reply(535, template.format(b64=b64)[4:], SECRET)
            assert_clean(shown, SECRET)
            assert REDACTED in shown and shown.startswith("535 ")


def test_a_password_with_two_spaces_or_a_tab_is_found_before_white_space_is_collapsed() -> None:
    for secret in ("two  spaces", "a\ttab", "end "):
        shown = format_reply(535, f"5.7.8 you said {secret} here", secret)
        assert shown == f"535 5.7.8 you said {REDACTED} here"


def test_redaction_comes_before_the_cut() -> None:
    reply = "x" * (MAX_REPLY - 5) + SECRET
    shown = clean_reply(reply, SECRET)
    assert SECRET[:5] not in shown and shown.endswith("...")


def test_redact_keeps_the_rest_and_leaves_other_text_alone() -> None:
    plain = base64.b64encode(f"\0{USER}\0{SECRET}".encode()).decode()
    assert redact(f"a {plain} b {SECRET} c", SECRET) == f"a {REDACTED} b {REDACTED} c"
    assert redact("250 2.0.0 Ok: queued as 00000A", SECRET) == "250 2.0.0 Ok: queued as 00000A"
    assert redact("250 ok", None) == "250 ok"
    # A marker that would spell the password is not used.
    assert "e" not in redact("e", "e") and redact("e", "e")


# -- real relays -------------------------------------------------------------------------------


class RawReplies(RecordingHandler):
    """Scripted RCPT and DATA replies sent as bytes: "\\udcff" in a script is the byte 0xff."""

    async def handle_RCPT(self, *args: Any) -> Any:
        return (await super().handle_RCPT(*args)).encode("utf-8", "surrogateescape")

    async def handle_DATA(self, *args: Any) -> Any:
        return (await super().handle_DATA(*args)).encode("utf-8", "surrogateescape")


class EchoingRelay(SmtpServer):
    """A STARTTLS relay speaking UTF-8, whose AUTH answers with ``auth_reply`` (``{payload}``:
    the base64 the client sent) unless the login is ``login``; ``mechanism`` is the only AUTH
    mechanism it offers."""

    def __init__(self, *, mechanism: str, auth_reply: str, login: tuple[str, str],
                 script: Script | None = None) -> None:
        super().__init__(script=script, tls="starttls", auth=login)
        self.handler = RawReplies(self.script)
        self.mechanism = mechanism
        self.auth_reply = auth_reply

    def _new_session(self) -> ScriptedSMTP:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ScriptedSMTP(
                self.handler, hostname=SERVER_NAME, tls_context=self._tls_context,
                require_starttls=True, auth_required=True, auth_require_tls=True,
                authenticator=self._echo, timeout=self.timeout, loop=self._loop,
                enable_SMTPUTF8=True,
                auth_exclude_mechanism=[m for m in ("LOGIN", "PLAIN") if m != self.mechanism])

    def _echo(self, server: Any, session: Any, envelope: Any, mechanism: str,
              auth_data: Any) -> AuthResult:
        assert self.auth is not None and isinstance(auth_data, LoginPassword)
        if (auth_data.login.decode(), auth_data.password.decode()) == self.auth:
            return AuthResult(success=True, auth_data=auth_data)
        sent = (b"\0" + auth_data.login + b"\0" + auth_data.password if mechanism == "PLAIN"
                else auth_data.password)
        echo = self.auth_reply.format(payload=base64.b64encode(sent).decode())
        return AuthResult(success=False, handled=False, message=echo)


def event_for(folder: Path, relay: SmtpServer) -> Path:
    return EventBuilder().relay(
        {"host": "127.0.0.1", "port": relay.port, "security": "starttls", "username": USER,
         "timeout": 5, "ca_file": str(relay.ca_file)},
        {"max_attempts": 1}).write(folder).folder


def written_by_the_tool(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (folder / ".invitemail").iterdir() if p.is_file()}


def assert_stored_clean(path: Path, data: bytes, secret: str) -> None:
    """Neither the password nor its base64 in the file's bytes; no escape or other control
    character in its text (for the journal: in every value it holds)."""
    assert secret.encode() not in data, path
    for form in base64_forms(secret):
        assert form.encode() not in data, (path, form)
    if path.suffix == ".sqlite":
        with contextlib.closing(sqlite3.connect(path)) as journal:
            data = "\n".join(journal.iterdump()).encode()
    for marker in (b"\x1b", b"\x07", b"\xc2\x9b", "\u202e".encode(), b"http://evil"):
        assert marker not in data, (path, marker)


@pytest.mark.parametrize(("mechanism", "auth_reply"), [
    ("PLAIN", "535 5.7.8 you sent:{payload}\x1b]0;pwned\x07"),
    ("LOGIN", "535 5.7.8 Authentication failed (auth={payload}) \x1b[2J\x07\u202eevil"),
    ("PLAIN", "535 5.7.8 \x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\ {payload}"),
])
def test_a_relay_echoing_the_auth_payload_shows_neither_it_nor_its_escapes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mechanism: str, auth_reply: str) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    with EchoingRelay(mechanism=mechanism, auth_reply=auth_reply,
                      login=(USER, "another-password")) as relay:
        event = event_for(tmp_path / "e", relay)
        sent = run_cli("send", event, "--yes")
        status = run_cli("status", event, "--report", tmp_path / "report.csv")

    assert sent.exit_code == 1, sent.output
    assert "refused the login of user 'arrangementer': 535 5.7.8" in sent.stderr
    assert REDACTED in sent.stderr
    for run in (sent, status):
        assert_clean(run.output, SECRET, lines=True)
    assert relay.transactions == []
    for path, data in {**written_by_the_tool(event), tmp_path / "report.csv":
                       (tmp_path / "report.csv").read_bytes()}.items():
        assert_stored_clean(path, data, SECRET)


def test_replies_with_echoes_escapes_and_raw_bytes_are_clean_in_every_output_and_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = base64.b64encode(f"\0{USER}\0{SECRET}".encode()).decode()
    login = base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("=")
    script = Script(
        reject={"soren@example.org"},
        reject_reply="550 5.7.1 <{address}> \x1b]8;;http://evil.example\x1b\\refused"
                     "\x1b]8;;\x1b\\ you sent:" + plain + " and " + SECRET + " \udcff\udcfe\x07",
        temp_fail_first=1,
        temp_fail_reply="451 4.7.0 (auth=" + login + ")\x1b[2J\x1b]0;title\x07 \u202eevil \x9b31m",
    )
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    with EchoingRelay(mechanism="PLAIN", auth_reply="535 no", login=(USER, SECRET),
                      script=script) as relay:
        event = event_for(tmp_path / "e", relay)
        sent = run_cli("send", event, "--yes")
        status = run_cli("status", event)
        report = run_cli("status", event, "--report", tmp_path / "report.csv")

    assert sent.exit_code == 3, sent.output  # both refused: a rerun with --retry-failed goes on
    assert "2 failed" in sent.stdout
    for run in (sent, status, report):
        assert_clean(run.output, SECRET, lines=True)
    assert "failed: soren@example.org (line 2): 550 5.7.1 <soren@example.org> refused you " \
        f"sent:{REDACTED} and {REDACTED} ???" in status.stdout
    assert f"failed: karen@example.org (line 3): 451 4.7.0 (auth={REDACTED}) ?evil" \
        in status.stdout
    csv = (tmp_path / "report.csv").read_text(encoding="utf-8-sig")  # with a BOM, for Excel
    assert csv.count(REDACTED) == 3
    assert_clean(csv, SECRET, lines=True)
    for path, data in {**written_by_the_tool(event),
                       tmp_path / "report.csv": csv.encode()}.items():
        assert_stored_clean(path, data, SECRET)


def test_a_greeting_with_escapes_is_shown_clean(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(refuse_connections=1, refuse_reply="554 5.7.1 \x1b]0;title\x07go away "
                    "\x1b[5m\u202e" + base64.b64encode(SECRET.encode()).decode())
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    with EchoingRelay(mechanism="PLAIN", auth_reply="535 no", login=(USER, SECRET),
                      script=script) as relay:
        event = event_for(tmp_path / "e", relay)
        sent = run_cli("send", event, "--yes")

    assert sent.exit_code == 1, sent.output
    assert f"refused the connection: 554 5.7.1 go away ?{REDACTED}" in sent.stderr
    assert_clean(sent.output, SECRET, lines=True)


# -- a password that is not UTF-8 ----------------------------------------------------------------


def test_a_password_that_is_not_utf8_is_an_error_with_a_hint_not_a_traceback(
        tmp_path: Path) -> None:
    with EchoingRelay(mechanism="PLAIN", auth_reply="535 no", login=(USER, SECRET)) as relay:
        event = event_for(tmp_path / "e", relay)
        env = {**os.environb, PASSWORD_ENV.encode(): b"caf\xe9-secret\xff",
               b"PYTHONUTF8": b"1", b"PYTHONPATH": os.pathsep.join(sys.path).encode()}
        result = subprocess.run([sys.executable, "-m", "invitemail", "send", str(event), "--yes"],
                                env=env, capture_output=True, timeout=120, check=False)

    stderr = result.stderr.decode("utf-8")
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"127.0.0.1:{relay.port}: the password for user 'arrangementer' is not valid UTF-8" \
        in stderr
    assert "Hint: set INVITEMAIL_SMTP_PASSWORD to the password encoded as UTF-8" in stderr
    assert b"caf" not in result.stdout + result.stderr
    assert relay.connections == 0
