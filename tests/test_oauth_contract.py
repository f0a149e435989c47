"""What auth/ leans on in msal and google-auth-oauthlib, checked one by one.

invitemail.auth.google subclasses google-auth-oauthlib's ``InstalledAppFlow`` so that the
sign-in address is shown through ``say`` (the library core never prints): that relies on
``run_local_server`` calling ``self.authorization_url``, which is not documented. msal is used
through its documented API only (invitemail.auth.microsoft); its signatures are checked here
too, since ``pyproject.toml`` bounds both libraries to the major release these checks passed
on. A release that changes any of it fails here by name, not half way through a sign-in.
"""

from __future__ import annotations

import inspect
import threading
import tomllib
import urllib.request
from importlib.metadata import version
from pathlib import Path

import msal
import pytest
from google_auth_oauthlib.flow import Flow, InstalledAppFlow
from packaging.requirements import Requirement

from invitemail.auth import google
from support.oauth_servers import USER, OAuthServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["msal", "google-auth-oauthlib"])
def test_oauth_contract_pyproject_bounds_the_library_and_it_is_installed_within(
        name: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    [requirement] = [Requirement(d) for d in project["dependencies"]
                     if Requirement(d).name == name]
    assert any(spec.operator == "<" for spec in requirement.specifier), "no upper bound"
    assert requirement.specifier.contains(version(name)), (
        f"{name} {version(name)} is installed, outside {requirement.specifier}")


def _keywords(function: object) -> set[str]:
    return set(inspect.signature(function).parameters)  # type: ignore[arg-type]


def _takes_more_keywords(function: object) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(function).parameters.values())  # type: ignore[arg-type]


def test_oauth_contract_the_flow_signatures_google_py_calls() -> None:
    leaned = google.leaned_on()
    assert set(leaned) == {"InstalledAppFlow.from_client_config",
                           "InstalledAppFlow.run_local_server", "Flow.authorization_url"}
    run = InstalledAppFlow.run_local_server
    assert {"host", "port", "open_browser", "authorization_prompt_message",
            "success_message", "timeout_seconds"} <= _keywords(run)
    # access_type, prompt and login_hint go through to authorization_url.
    assert _takes_more_keywords(run) and _takes_more_keywords(Flow.authorization_url)
    assert "client_config" in _keywords(InstalledAppFlow.from_client_config)
    assert _takes_more_keywords(InstalledAppFlow.from_client_config)  # scopes=
    assert issubclass(google.flow_class(print), InstalledAppFlow)


def test_oauth_contract_run_local_server_shows_the_address_through_the_subclass(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The subclass's ``authorization_url`` is how the address reaches ``say``: the flow
    must call it, and print nothing itself."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test provider speaks http
    shown: list[str] = []
    browsers: list[threading.Thread] = []

    def browser(text: str) -> None:
        shown.append(text)
        url = text.rsplit(" ", 1)[-1]
        thread = threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).read())
        thread.start()
        browsers.append(thread)

    with OAuthServer() as provider:
        refresh = google.browser_flow(
            client_id="invitemail-test", client_secret="", auth_uri=f"{provider.url}/authorize",
            token_uri=f"{provider.url}/token", scopes=["smtp.send"], account=USER,
            say=browser, open_browser=False, timeout_seconds=20)
        for thread in browsers:
            thread.join(10)
        assert provider.refresh_tokens == {refresh}
        authorize = f"{provider.url}/authorize?"
    [said] = shown
    assert said.startswith("To sign in, open this address in a browser on this computer: "
                           + authorize)
    assert "login_hint=" in said and "access_type=offline" in said
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""


def test_oauth_contract_the_msal_calls_microsoft_py_makes() -> None:
    assert {"client_id", "authority", "token_cache", "instance_discovery", "timeout"} <= \
        _keywords(msal.ClientApplication.__init__)
    assert _takes_more_keywords(msal.PublicClientApplication.__init__)  # passed on to it
    app = msal.PublicClientApplication
    assert "scopes" in _keywords(app.initiate_device_flow)
    assert "flow" in _keywords(app.acquire_token_by_device_flow)
    assert "username" in _keywords(app.get_accounts)
    assert {"scopes", "account", "force_refresh"} <= \
        _keywords(app.acquire_token_silent_with_error)
    cache = msal.SerializableTokenCache()
    assert cache.has_state_changed is False
    cache.deserialize(cache.serialize())
    assert isinstance(cache.serialize(), str)
