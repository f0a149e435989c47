"""OAuth2 from the command line: `login`, `check`, `send` (and `--test-to`), `logout`, with a
real relay that takes AUTH XOAUTH2 and a real local OAuth2 server (support/oauth_servers.py).

The generic provider is tested end to end (device flow, and the browser flow with its
loopback redirect, which is also the google provider's flow with other endpoints). The
microsoft provider is msal end to end against a local login server over https (the tests'
CA, trusted through REQUESTS_CA_BUNDLE) named by smtp.oauth.authority: discovery, device code,
polling, the id_token's account, the refresh.
"""

from __future__ import annotations

import stat
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from invitemail.auth import oauth
from invitemail.auth.settings import OAuthSettings
from support.cli import run_cli
from support.event import EventToml
from support.oauth_servers import ROWS, USER, OAuthServer, XOAuth2Server, oauth_event
from support.relay import Script, tls_files


@pytest.fixture
def provider() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture
def relay(provider: OAuthServer) -> Iterator[XOAuth2Server]:
    with XOAuth2Server(provider, USER) as server:
        yield server


def token_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "config" / "tokens").glob("*"))


def test_login_check_send_and_logout(tmp_path: Path, data_dir: Path, provider: OAuthServer,
                                     relay: XOAuth2Server) -> None:
    event = oauth_event(tmp_path / "event", relay, provider.settings_toml())
    before = run_cli("check", event)
    assert before.exit_code == 1
    assert f"{USER} has not signed in with generic on this computer" in before.stderr
    assert f"Hint: run invitemail login {event} to sign in again" in before.stderr

    signed = run_cli("login", event)
    assert signed.exit_code == 0, signed.output
    assert f"open {provider.url}/activate in a browser on any device and enter the code " \
        "WDJB-MJHT" in signed.stdout
    [kept] = token_files(data_dir)
    assert f"Signed in; the login is kept in {kept}." in signed.stdout
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    assert run_cli("check", event).exit_code == 0
    test = run_cli("send", event, "--yes", "--test-to", "me@example.org")
    assert test.exit_code == 0, test.output
    assert [t.rcpt_tos for t in relay.transactions] == [("me@example.org",)]
    sent = run_cli("send", event, "--yes")
    assert sent.exit_code == 0, sent.output
    assert relay.received() == {"me@example.org": 1, **{r[1]: 1 for r in ROWS}}
    assert {t.user for t in relay.transactions} == {USER}

    out = run_cli("logout", event)
    assert out.exit_code == 0 and f"Forgot the login of {USER} with generic" in out.stdout
    assert token_files(data_dir) == []
    assert "nothing to forget" in run_cli("logout", event).stdout
    assert run_cli("check", event).exit_code == 1


def test_a_login_withdrawn_mid_run_stops_it_and_the_rest_stay_pending(
        tmp_path: Path, provider: OAuthServer) -> None:
    with XOAuth2Server(provider, USER, script=Script(drop_every=2)) as relay:
        event = oauth_event(tmp_path / "event", relay, provider.settings_toml())
        assert run_cli("login", event).exit_code == 0
        relay.revoke_after = 2  # after two messages, the next sign-in finds it withdrawn
        stopped = run_cli("send", event, "--yes")
        assert stopped.exit_code == 3, stopped.output
        assert "no longer valid" in stopped.stderr and "invalid_grant" in stopped.stderr
        assert f"Hint: run invitemail login {event} to sign in again" in stopped.stderr
        assert "Sent 2 messages, 0 failed, 0 uncertain" in stopped.stdout
        status = run_cli("status", event)
        assert "6 registrants: 4 pending, 2 sent" in status.stdout, status.stdout

        assert run_cli("login", event).exit_code == 0
        again = run_cli("send", event, "--yes")
        assert again.exit_code == 0, again.output
        assert relay.received() == {r[1]: 1 for r in ROWS}  # each exactly once


def test_a_withdrawn_login_sends_nothing_and_exits_1(tmp_path: Path, provider: OAuthServer,
                                                     relay: XOAuth2Server) -> None:
    event = oauth_event(tmp_path / "event", relay, provider.settings_toml())
    assert run_cli("login", event).exit_code == 0
    provider.revoke_all()
    for command in (["check", event], ["send", event, "--yes"],
                    ["send", event, "--yes", "--test-to", "me@example.org"]):
        result = run_cli(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "login of arrangementer@example.org is no longer valid" in result.stderr
        assert "Traceback" not in result.output
    assert relay.transactions == []
    assert "nothing has been sent" in run_cli("status", event).stdout


def helper_command(code: str) -> str:
    return f'token_command = ["{sys.executable}", "-c", "{code}"]\n'


def test_send_with_a_token_command(tmp_path: Path, provider: OAuthServer,
                                   relay: XOAuth2Server) -> None:
    token = provider._new_access()["access_token"]  # as an existing helper would have it
    (tmp_path / "token").write_text(token + "\n")
    code = f"print(open({str(tmp_path / 'token')!r}).read())".replace('"', '\\"')
    event = oauth_event(tmp_path / "event", relay, "", smtp_extra=helper_command(code))
    assert run_cli("check", event).exit_code == 0
    sent = run_cli("send", event, "--yes")
    assert sent.exit_code == 0, sent.output
    assert relay.received() == {r[1]: 1 for r in ROWS}
    assert token not in sent.output


@pytest.mark.parametrize(("code", "timeout", "said"), [
    ("import sys; sys.exit(3)", 10, "exited with status 3"),
    ("import time; time.sleep(30)", 0.5, "printed no token within 0.5 s and was stopped"),
    ("", 10, "printed nothing on its standard output"),
])
def test_a_token_command_that_fails_or_hangs_stops_before_sending(
        tmp_path: Path, relay: XOAuth2Server, code: str, timeout: float, said: str) -> None:
    event = oauth_event(tmp_path / "event", relay, "", smtp_extra=helper_command(code)
                        + f"token_command_timeout = {timeout}\n")
    for command in (["check", event], ["send", event, "--yes"]):
        result = run_cli(*command)
        assert result.exit_code == 1, result.output
        assert f"event.toml: smtp.token_command: '{sys.executable}' {said}" in result.stderr
    assert relay.transactions == []


@pytest.mark.parametrize(("smtp_extra", "oauth_table", "message"), [
    ('', '[smtp.oauth]\nprovider = "yahoo"\n',
     "smtp.oauth.provider: 'yahoo' is not one of 'microsoft', 'google', 'generic'"),
    ('', '[smtp.oauth]\nprovider = "generic"\nclient = "x"\n',
     "smtp.oauth.client: unknown key"),
    ('', '[smtp.oauth]\nprovider = "generic"\ntoken_url = "http://example.org/token"\n',
     "smtp.oauth.token_url: 'http://example.org/token' is not an https:// address"),
    ('', '[smtp.oauth]\nprovider = "generic"\nscopes = "mail"\n',
     "smtp.oauth.scopes: must be a list of scopes"),
    ('token_command = 42\n', '', "smtp.token_command: must be a list of words or one line"),
    ('token_command = "helper \'unclosed"\n', '', "smtp.token_command: cannot be split"),
    ('token_command = []\n', '', "smtp.token_command: is empty"),
    ('token_command = "helper"\n', '[smtp.oauth]\nprovider = "google"\n',
     "smtp.token_command: and [smtp.oauth] are both given"),
    ('token_command_timeout = 0\n', '', "smtp.token_command_timeout: must be a number"),
    ('', '', "smtp.oauth.provider: no OAuth2 provider is set, and no smtp.token_command"),
    ('', '[smtp.oauth]\nprovider = "microsoft"\nclient_id = "abc"\n',
     "smtp.oauth: the microsoft sign-in needs tenant"),
    ('', '[smtp.oauth]\nprovider = "google"\n',
     "smtp.oauth: the google sign-in needs client_id, client_secret"),
])
def test_oauth_settings_errors_name_the_key(tmp_path: Path, relay: XOAuth2Server,
                                            smtp_extra: str, oauth_table: str,
                                            message: str) -> None:
    event = oauth_event(tmp_path / "event", relay, oauth_table, smtp_extra=smtp_extra)
    result = run_cli("login", event)
    assert result.exit_code == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_the_auth_method_and_its_needs_are_checked(tmp_path: Path,
                                                   relay: XOAuth2Server) -> None:
    event = oauth_event(tmp_path / "event", relay, "")
    path = event / "event.toml"
    written = EventToml.read(path)

    def changed(change: Callable[[EventToml], object]) -> None:
        toml = EventToml.read(path)
        change(toml)
        toml.save(path)

    changed(lambda toml: toml.set("smtp", "auth", "oauth2"))
    result = run_cli("check", event)
    assert result.exit_code == 1
    line = written.line("smtp", "auth")
    assert f"event.toml:{line}: smtp.auth: 'oauth2' is not one of 'password', 'xoauth2'" \
        in result.stderr
    written.save(path)
    changed(lambda toml: toml.drop("smtp", "username"))
    assert '"xoauth2" needs smtp.username' in run_cli("check", event).stderr
    written.save(path)
    changed(lambda toml: toml.set("smtp", "auth", "password").add_section(
        "smtp.oauth", {"provider": "google"}))
    assert 'smtp.auth: is "password", so [smtp.oauth] would not be used' in \
        run_cli("check", event).stderr
    written.save(path)
    changed(lambda toml: toml.drop("smtp", "auth"))
    assert "smtp.auth is \"password\"; login is for OAuth2" in run_cli("login", event).stderr


def test_the_provider_settings_can_come_from_the_users_config(
        tmp_path: Path, data_dir: Path, provider: OAuthServer, relay: XOAuth2Server) -> None:
    event = oauth_event(tmp_path / "event", relay, "")
    (data_dir / "config").mkdir()
    (data_dir / "config" / "config.toml").write_text(
        provider.settings_toml().replace("[smtp.oauth]", "[oauth]"))
    assert run_cli("login", event).exit_code == 0
    sent = run_cli("send", event, "--yes")
    assert sent.exit_code == 0, sent.output
    assert relay.received() == {r[1]: 1 for r in ROWS}


def test_the_browser_sign_in_with_a_loopback_redirect(provider: OAuthServer,
                                                      data_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib wants https for the token endpoint; the local test provider speaks http.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    settings = OAuthSettings(provider="generic", client_id="invitemail-test",
                             authorization_url=f"{provider.url}/authorize",
                             token_url=f"{provider.url}/token", scopes=("smtp.send",))
    shown: list[str] = []
    browsers: list[threading.Thread] = []

    def browser(text: str) -> None:  # what the user does: open the address shown
        shown.append(text)
        url = text.rsplit(" ", 1)[-1]
        thread = threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).read())
        thread.start()
        browsers.append(thread)

    path = oauth.login(settings, USER, say=browser, open_browser=False)
    for thread in browsers:
        thread.join(10)
    assert shown[0].startswith(f"To sign in, open this address in a browser on this "
                               f"computer: {provider.url}/authorize?")
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in shown[0]
    [refresh] = provider.refresh_tokens
    assert refresh in path.read_text() and path in token_files(data_dir)


# -- microsoft: msal against a local login server (https, with the tests' CA) ----------------

CLIENT_ID = "4b1c6f0e-2d7a-4c55-9f3e-8a1b2c3d4e5f"


def microsoft_table(provider: OAuthServer) -> str:
    return (f'[smtp.oauth]\nprovider = "microsoft"\ntenant = "tenant-1"\n'
            f'client_id = "{CLIENT_ID}"\nauthority = "{provider.url}"\n')


@pytest.fixture
def microsoft(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuthServer]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files().ca_file))  # msal uses requests
    with OAuthServer(tls=True, client_id=CLIENT_ID, account=USER) as server:
        yield server


def test_microsoft_device_code_sign_in_with_msal_then_send(
        tmp_path: Path, data_dir: Path, microsoft: OAuthServer) -> None:
    with XOAuth2Server(microsoft, USER) as relay:
        event = oauth_event(tmp_path / "event", relay, microsoft_table(microsoft))
        signed = run_cli("login", event)
        assert signed.exit_code == 0, signed.output
        assert "Open the activation page and enter WDJB-MJHT" in signed.stdout  # msal's text
        [(_, asked)] = [(p, f) for p, f in microsoft.requests if p.endswith("/devicecode")]
        assert asked["client_id"] == CLIENT_ID
        assert "https://outlook.office.com/SMTP.Send" in asked["scope"].split()
        assert "offline_access" in asked["scope"].split()
        [kept] = token_files(data_dir)
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600

        sent = run_cli("send", event, "--yes")
        assert sent.exit_code == 0, sent.output
        assert relay.received() == {r[1]: 1 for r in ROWS}
        assert microsoft.refreshes == 1  # msal traded the refresh token for a new token

        microsoft.revoke_all()
        check = run_cli("check", event)
        assert check.exit_code == 1
        assert "the Microsoft login of arrangementer@example.org is no longer valid" \
            in check.stderr
        assert f"Hint: run invitemail login {event} to sign in again" in check.stderr


def test_microsoft_sign_in_as_another_mailbox_is_refused(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files().ca_file))
    with OAuthServer(tls=True, client_id=CLIENT_ID, account="someone@example.org") as server, \
            XOAuth2Server(server, USER) as relay:
        event = oauth_event(tmp_path / "event", relay, microsoft_table(server))
        result = run_cli("login", event)
        assert result.exit_code == 1
        assert f"signed in as someone@example.org, but smtp.username is {USER}" in result.stderr
        assert token_files(data_dir) == []
