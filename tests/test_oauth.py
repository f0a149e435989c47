"""OAuth2 (XOAUTH2) in the transport: a real relay that takes AUTH XOAUTH2 only with a token
a real local OAuth2 server says is valid now (support/oauth_servers.py), on a fake clock shared by
both, so tokens expire mid-run without a test sleeping.

- a login (generic provider, device flow) is stored 0600 in the config folder and sends;
- a run that outlives several tokens refreshes before each expires: no refusal at all;
- a token the relay refuses (revoked at the server) is refreshed once, the connection made
  again, and nothing is lost or sent twice, with one refresh between concurrent connections;
- a withdrawn login (refresh token revoked) stops the run with the login hint, every message
  either sent once or left without an outcome (pending), none failed;
- token_command: its first line is the token; a failing, empty or hanging one is a clear
  error that never shows the token.
"""

from __future__ import annotations

import asyncio
import os
import random
import stat
import sys
import time
from pathlib import Path

import pytest

from invitemail.auth import oauth
from invitemail.auth.credentials import CommandSource, LoginError, Token, TokenCredential
from invitemail.auth.settings import Auth, OAuthSettings
from invitemail.auth.xoauth2 import error_detail, initial_response
from invitemail.inputs.config import Sending, Smtp
from invitemail.send.transport import AuthenticationError, DeliveryReport, State, deliver
from support.oauth_servers import OAuthServer, XOAuth2Server
from support.relay import FakeClock, Script, SmtpServer
from support.transport import Journal, address, envelopes

USER = "arrangementer@example.org"


def generic(server: OAuthServer) -> OAuthSettings:
    return OAuthSettings(provider="generic", client_id="invitemail-test",
                         device_authorization_url=f"{server.url}/device",
                         token_url=f"{server.url}/token", scopes=("smtp.send",))


def sign_in(server: OAuthServer) -> tuple[Path, list[str]]:
    shown: list[str] = []
    path = oauth.login(generic(server), USER, say=shown.append, sleep=lambda _: None)
    return path, shown


def credential(server: OAuthServer, clock: FakeClock) -> TokenCredential:
    source = oauth.RefreshSource(generic(server), USER, hint="run invitemail login EVENT")
    return TokenCredential(source, clock=clock, hint="run invitemail login EVENT")


async def send(relay: XOAuth2Server, count: int, cred: TokenCredential, clock: FakeClock, *,
               sending: Sending, journal: Journal | None = None) -> tuple[DeliveryReport,
                                                                           Journal]:
    journal = journal or Journal(clock)
    smtp: Smtp = relay.smtp_settings(username=USER, auth=Auth(method="xoauth2"))
    report = await deliver(envelopes(count), smtp=smtp, sending=sending, password=cred,
                           hooks=journal, clock=clock, sleep=clock.sleep,
                           rng=random.Random(1), local_hostname="client.test")
    return report, journal


def test_login_is_kept_private_in_the_config_folder_and_sends(data_dir: Path) -> None:
    clock = FakeClock()
    with OAuthServer(clock=clock, pending_polls=2) as provider:
        path, shown = sign_in(provider)
        assert shown == [f"To sign in, open {provider.url}/activate in a browser on any "
                         "device and enter the code WDJB-MJHT"]
        assert path.parent == data_dir / "config" / "tokens"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p for p, _ in provider.requests].count("/token") == 3  # two pending, one yes
        refresh = next(iter(provider.refresh_tokens))
        assert refresh in path.read_text()

        async def scenario() -> None:
            async with XOAuth2Server(provider, USER) as relay:
                report, journal = await send(relay, 5, credential(provider, clock), clock,
                                             sending=Sending(concurrency=2))
                assert report.sent == 5 and report.stopped is None
                assert journal.states() == {State.SENT: 5}
                assert sorted(relay.received()) == [address(n) for n in range(5)]
                assert {t.user for t in relay.transactions} == {USER}
                assert relay.refusals == []

        asyncio.run(scenario())


def test_a_run_that_outlives_its_tokens_refreshes_before_they_expire() -> None:
    clock = FakeClock()
    count = 40
    # Tokens live 10 s; the run sends 1 a second and the relay drops every 3rd connection's
    # session, so new connections sign in all along the run's 40 s.
    with OAuthServer(clock=clock, lifetime=10) as provider:
        sign_in(provider)

        async def scenario() -> None:
            async with XOAuth2Server(provider, USER, script=Script(drop_every=3)) as relay:
                cred = credential(provider, clock)
                report, journal = await send(relay, count, cred, clock,
                                             sending=Sending(concurrency=1, rate=1.0))
                assert clock.now - 1000 >= 30  # the run did outlive several tokens
                assert report.sent == count and report.failed == report.uncertain == 0
                assert relay.received() == {address(n): 1 for n in range(count)}
                assert relay.refusals == []  # each was refreshed before it expired
                assert provider.refreshes >= 4
                assert journal.states() == {State.SENT: count}

        asyncio.run(scenario())


def test_a_refused_token_is_refreshed_once_and_nothing_is_lost_or_sent_twice() -> None:
    clock = FakeClock()
    count = 30
    with OAuthServer(clock=clock, rotate=True) as provider:
        sign_in(provider)

        async def scenario() -> None:
            async with XOAuth2Server(provider, USER, script=Script(drop_every=4)) as relay:
                cred = credential(provider, clock)
                journal = Journal(clock)

                def revoke_some(outcome: object) -> None:
                    if len(journal.outcomes) == 10:  # the provider withdraws the access tokens
                        provider.expire_access_tokens()

                journal.on_finished = revoke_some
                report, _ = await send(relay, count, cred, clock,
                                       sending=Sending(concurrency=3), journal=journal)
                assert report.stopped is None, report.stopped
                assert report.sent == count and report.failed == report.uncertain == 0
                assert relay.received() == {address(n): 1 for n in range(count)}
                assert relay.refusals  # the relay did refuse the withdrawn token
                # The first token, then one refresh, however many connections were refused.
                assert provider.refreshes == 2
                assert len(set(relay.refusals)) == 1

        asyncio.run(scenario())


def test_a_withdrawn_login_stops_the_run_with_the_login_hint_and_loses_nothing() -> None:
    clock = FakeClock()
    count = 20
    with OAuthServer(clock=clock) as provider:
        sign_in(provider)

        async def scenario() -> None:
            async with XOAuth2Server(provider, USER, script=Script(drop_every=3)) as relay:
                journal = Journal(clock)

                def withdraw(outcome: object) -> None:
                    if len(journal.outcomes) == 7:
                        provider.revoke_all()

                journal.on_finished = withdraw
                report, _ = await send(relay, count, credential(provider, clock), clock,
                                       sending=Sending(concurrency=2), journal=journal)
                stopped = report.stopped
                assert isinstance(stopped, AuthenticationError)
                assert "no longer valid" in str(stopped) and "invalid_grant" in str(stopped)
                assert stopped.hint is not None and "invitemail login EVENT" in stopped.hint
                assert report.failed == report.uncertain == 0
                # Sent once each, and the journal heard of exactly those; the rest have no
                # outcome (the journal keeps them pending).
                assert set(relay.received().values()) == {1}
                assert set(relay.received()) == set(journal.outcomes)
                assert 7 <= report.sent < count

        asyncio.run(scenario())


def test_a_temporary_auth_failure_is_retried_without_a_new_token() -> None:
    clock = FakeClock()
    with OAuthServer(clock=clock) as provider:
        sign_in(provider)

        async def scenario() -> None:
            async with XOAuth2Server(provider, USER) as relay:
                relay.busy_auth = 2
                report, journal = await send(relay, 3, credential(provider, clock), clock,
                                             sending=Sending(concurrency=1))
                assert report.stopped is None and report.sent == 3
                assert relay.received() == {address(n): 1 for n in range(3)}
                assert report.retried == 2 and "454 4.7.0" in journal.retries[0][1]
                assert provider.refreshes == 1 and relay.refusals == []

        asyncio.run(scenario())


def test_a_relay_without_xoauth2_is_a_clear_error() -> None:
    clock = FakeClock()
    with OAuthServer(clock=clock) as provider:
        sign_in(provider)

        async def scenario() -> None:
            async with SmtpServer(tls="starttls", auth=(USER, "pw")) as relay:
                smtp = relay.smtp_settings(auth=Auth(method="xoauth2"))
                report = await deliver(envelopes(2), smtp=smtp, sending=Sending(),
                                       password=credential(provider, clock), hooks=Journal(clock),
                                       clock=clock, sleep=clock.sleep, local_hostname="c.test")
                assert isinstance(report.stopped, AuthenticationError)
                assert str(report.stopped) == (
                    f"{relay.smtp_settings().where} does not offer AUTH XOAUTH2 for user "
                    f"{USER!r} (offered: login, plain)")
                assert relay.transactions == []

        asyncio.run(scenario())


def test_a_login_that_is_missing_says_how_to_sign_in() -> None:
    with OAuthServer() as provider:
        cred = credential(provider, FakeClock())
        with pytest.raises(LoginError) as caught:
            cred.fetch_now()
    assert "has not signed in with generic" in str(caught.value)
    assert caught.value.hint == "run invitemail login EVENT"


def test_the_xoauth2_initial_response_and_error_challenge() -> None:
    # Google's documented example (developers.google.com/gmail/imap/xoauth2-protocol).
    assert initial_response("someuser@example.com",
                            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg") == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
        b"QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==")
    assert error_detail("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczov"
                        "L21haWwuZ29vZ2xlLmNvbS8ifQ==") == \
        "status 401, scope https://mail.google.com/"
    for garbled in ("", "not base64!", "WzFd", "bnVsbA=="):  # nothing, junk, a list, null
        assert error_detail(garbled) == ""


# -- the credential --------------------------------------------------------------------------


class Counting:
    """A token source that counts its fetches (the credential's own logic, no network)."""

    def __init__(self, life: float | None) -> None:
        self.life = life
        self.fetched = 0

    def fetch(self) -> Token:
        self.fetched += 1
        return Token(f"token-{self.fetched}", self.life)

    def secrets(self) -> list[str]:
        return []


@pytest.mark.parametrize(("life", "reuse_until"), [(3600, 3300), (120, 60), (None, 10**9)])
def test_a_token_is_reused_until_its_margin_then_refreshed(life: float | None,
                                                            reuse_until: float) -> None:
    clock = FakeClock(0)
    source = Counting(life)
    cred = TokenCredential(source, clock=clock)

    async def scenario() -> None:
        assert await cred.token() == "token-1"
        clock.now = reuse_until - 1
        assert await cred.token() == "token-1"
        if life is not None:
            clock.now = reuse_until
            assert await cred.token() == "token-2"
        # A refusal of an old token does not fetch again; of the current one it does.
        current = await cred.token()
        assert await cred.refresh("token-0") == current
        assert await cred.refresh(current) != current

    asyncio.run(scenario())


def test_concurrent_refusals_of_one_token_refresh_it_once() -> None:
    source = Counting(3600)
    cred = TokenCredential(source, clock=FakeClock(0))

    async def scenario() -> None:
        first = await cred.token()
        tokens = await asyncio.gather(*(cred.refresh(first) for _ in range(5)))
        assert set(tokens) == {"token-2"} and source.fetched == 2

    asyncio.run(scenario())


# -- token_command ---------------------------------------------------------------------------


def helper(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_token_command_prints_the_token_on_its_first_line() -> None:
    source = CommandSource(helper("print('tok-Zx81 '); print('more')"), timeout=10, where="w")
    assert source.fetch() == Token("tok-Zx81", source.life)


@pytest.mark.parametrize(("code", "said"), [
    ("import sys; print('tok-Q3'); sys.stderr.write('cannot refresh tok-Q3 now'); sys.exit(2)",
     "'{exe}' exited with status 2: cannot refresh [token] now"),
    ("import sys; sys.stderr.write('no account configured\\n')",
     "'{exe}' printed nothing on its standard output: no account configured"),
    ("print('two words')", "'{exe}' printed something that is not a token on its standard "
     "output"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
     "'{exe}' was stopped by signal 15"),
])
def test_a_failing_token_command_is_a_clear_error_without_the_token(code: str,
                                                                    said: str) -> None:
    source = CommandSource(helper(code), timeout=10, where="event.toml: smtp.token_command")
    with pytest.raises(LoginError) as caught:
        source.fetch()
    assert str(caught.value) == "event.toml: smtp.token_command: " + \
        said.format(exe=sys.executable)
    assert "tok-Q3" not in str(caught.value)


def test_a_token_command_that_hangs_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    # It starts a child of its own that hangs too: both are stopped.
    code = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
            f"'import time; time.sleep(60)']); open({str(marker)!r}, 'w').write(str(p.pid)); "
            "time.sleep(60)")
    source = CommandSource(helper(code), timeout=1.0, where="w")
    started = time.monotonic()
    with pytest.raises(LoginError) as caught:
        source.fetch()
    assert time.monotonic() - started < 8
    assert "printed no token within 1 s and was stopped" in str(caught.value)
    child = int(marker.read_text())
    for _ in range(50):  # the group was killed; the child is gone once reaped by init
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the helper's child still runs")


def test_a_token_command_that_does_not_exist_is_named() -> None:
    source = CommandSource(("/nonexistent/token-helper",), timeout=5, where="w")
    with pytest.raises(LoginError, match="cannot run '/nonexistent/token-helper': No such file"):
        source.fetch()


def test_the_token_command_never_sees_the_smtp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVITEMAIL_SMTP_PASSWORD", "pw-secret-8Hq")
    code = "import os; print('tok-' + str(len([v for v in os.environ.values() " \
        "if 'pw-secret-8Hq' in v])))"
    assert CommandSource(helper(code), timeout=10, where="w").fetch().access_token == "tok-0"


def test_a_helpers_token_is_used_for_five_minutes_then_asked_for_again(tmp_path: Path) -> None:
    count = tmp_path / "count"
    code = (f"import pathlib; p = pathlib.Path({str(count)!r}); "
            "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
            "print(f'tok-{n}')")
    clock = FakeClock(0)
    cred = TokenCredential(CommandSource(helper(code), timeout=10, where="w"), clock=clock)

    async def scenario() -> None:
        assert await cred.token() == "tok-1"
        clock.now = 299
        assert await cred.token() == "tok-1"
        clock.now = 300
        assert await cred.token() == "tok-2"

    asyncio.run(scenario())
