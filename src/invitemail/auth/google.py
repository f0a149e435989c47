"""The browser sign-in with a loopback redirect, through google-auth-oauthlib's
``InstalledAppFlow`` (the only module that imports it): Google's, and any provider's with
explicit endpoints and no device flow.

The flow prints the sign-in address itself; invitemail's library core never prints, so
:class:`_Flow` subclasses ``InstalledAppFlow`` and shows the address through ``say`` from
its ``authorization_url`` (which ``run_local_server`` calls): beyond the documented API.
``tests/test_oauth_contract.py`` checks what this leans on, and ``pyproject.toml`` bounds
google-auth-oauthlib to the releases that test passed on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from invitemail.auth.credentials import LoginError
from invitemail.send.redaction import clean_reply

__all__ = ["SIGN_IN_TIMEOUT", "browser_flow", "flow_class", "leaned_on"]

SIGN_IN_TIMEOUT: int = 600  # seconds the loopback server waits for the browser
SUCCESS = "Signed in; you may close this window and go back to invitemail."


def flow_class(say: Callable[[str], None]) -> type[Any]:
    """``InstalledAppFlow`` showing the sign-in address through ``say``, not print()."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    class _Flow(InstalledAppFlow):  # type: ignore[misc]
        def authorization_url(self, **kwargs: Any) -> tuple[str, str]:
            url, state = super().authorization_url(**kwargs)
            say(f"To sign in, open this address in a browser on this computer: {url}")
            return url, state

    return _Flow


def browser_flow(*, client_id: str, client_secret: str, auth_uri: str, token_uri: str,
                 scopes: list[str], account: str, say: Callable[[str], None],
                 open_browser: bool, timeout_seconds: int = SIGN_IN_TIMEOUT) -> str:
    """Sign ``account`` in in a browser; the refresh token the provider gave. The loopback
    server waits ``timeout_seconds`` for the browser to come back."""
    config = {"installed": {
        "client_id": client_id, "client_secret": client_secret,
        "auth_uri": auth_uri, "token_uri": token_uri}}
    flow = flow_class(say).from_client_config(config, scopes=scopes)
    try:
        credentials = flow.run_local_server(
            host="127.0.0.1", port=0, open_browser=open_browser,
            authorization_prompt_message=None, timeout_seconds=timeout_seconds,
            success_message=SUCCESS,
            access_type="offline", prompt="consent", login_hint=account)
    except Exception as err:  # the library's own errors (oauthlib, requests, a timeout)
        raise LoginError(f"the sign-in did not succeed: {type(err).__name__}: "
                         f"{clean_reply(str(err), limit=300)}",
                         hint="run invitemail login again") from None
    refresh = getattr(credentials, "refresh_token", None)
    if not isinstance(refresh, str) or not refresh:
        raise LoginError("the provider gave no refresh token",
                         hint="remove invitemail's access in the account's security settings, "
                         "then run invitemail login again")
    return refresh


def leaned_on() -> dict[str, inspect.Signature]:
    """The signatures this module relies on (the contract test compares them)."""
    from google_auth_oauthlib.flow import Flow, InstalledAppFlow

    return {
        "InstalledAppFlow.from_client_config": inspect.signature(
            InstalledAppFlow.from_client_config),
        "InstalledAppFlow.run_local_server": inspect.signature(
            InstalledAppFlow.run_local_server),
        "Flow.authorization_url": inspect.signature(Flow.authorization_url),
    }
