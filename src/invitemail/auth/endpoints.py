"""OAuth2 with explicit endpoints, done with the standard library: the refresh grant
(RFC 6749 6, one form POST to the token endpoint) and the device flow (RFC 8628). No
library is needed for them; the providers' own sign-in flows are :mod:`invitemail.auth.google`
and :mod:`invitemail.auth.microsoft`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from invitemail.auth.credentials import LoginError, Token
from invitemail.auth.settings import OAuthSettings
from invitemail.send.redaction import clean_reply

__all__ = [
    "DEFAULT_SCOPES",
    "DEVICE_GRANT",
    "GOOGLE_AUTH_URL",
    "GOOGLE_TOKEN_URL",
    "HTTP_TIMEOUT",
    "device_flow",
    "refresh_grant",
    "scopes",
    "token_of",
    "token_url",
]

DEFAULT_SCOPES = {
    "microsoft": ("https://outlook.office.com/SMTP.Send",),
    "google": ("https://mail.google.com/",),
}
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT = 30.0

Say = Callable[[str], None]


def token_of(answer: dict[str, Any], settings: OAuthSettings) -> Token:
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise LoginError(f"{settings.token_url}: the answer holds no access token")
    life = answer.get("expires_in")
    try:
        seconds = float(life) if life is not None else None
    except (TypeError, ValueError):
        seconds = None
    return Token(access, seconds)


def token_url(settings: OAuthSettings) -> str:
    url = settings.token_url or (GOOGLE_TOKEN_URL if settings.provider == "google" else None)
    assert url is not None  # settings_for checked it
    return url


def _post(url: str, form: dict[str, str], secrets: list[str]) -> dict[str, Any]:
    """POST ``form`` to ``url``; the JSON answer, or LoginError naming the OAuth2 error."""
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        raw = err.read()
        answer = _json(raw)
        code = answer.get("error") if isinstance(answer.get("error"), str) else f"HTTP {err.code}"
        detail = answer.get("error_description")
        text = f"{code}: {detail}" if isinstance(detail, str) else str(code)
        for secret in secrets:
            text = text.replace(secret, "[redacted]")
        raise _OAuthError(str(code), clean_reply(text, limit=300)) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise LoginError(f"cannot reach {url}: {reason}",
                         hint="check the network connection, then run the same command "
                         "again") from None
    return _json(raw)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _OAuthError(LoginError):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


def refresh_grant(settings: OAuthSettings, refresh: str, account: str, hint: str) -> dict[str, Any]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh,
            "client_id": settings.client_id or ""}
    if settings.client_secret:
        form["client_secret"] = settings.client_secret
    url = token_url(settings)
    try:
        return _post(url, form, [refresh])
    except _OAuthError as err:
        raise LoginError(f"the {settings.provider} login of {account} is no longer valid "
                         f"({url} says {err.message})", hint=hint) from None


def scopes(settings: OAuthSettings) -> list[str]:
    return list(settings.scopes or DEFAULT_SCOPES.get(settings.provider or "", ()))


def device_flow(settings: OAuthSettings, *, say: Say,
                 sleep: Callable[[float], None]) -> dict[str, Any]:
    """RFC 8628: show the code, poll the token endpoint until the user has signed in."""
    assert settings.device_authorization_url is not None
    client = {"client_id": settings.client_id or ""}
    if settings.client_secret:
        client["client_secret"] = settings.client_secret
    start = _post(settings.device_authorization_url,
                  {**client, "scope": " ".join(scopes(settings))}, [])
    device_code, user_code = start.get("device_code"), start.get("user_code")
    uri = start.get("verification_uri_complete") or start.get("verification_uri")
    if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
        raise LoginError(f"{settings.device_authorization_url}: the answer is not a device "
                         "authorization (no device_code, user_code or verification_uri)")
    assert isinstance(device_code, str)
    say(f"To sign in, open {uri} in a browser on any device and enter the code {user_code}")
    interval = _number(start.get("interval"), 5.0)
    deadline = time.monotonic() + _number(start.get("expires_in"), 900.0)
    while time.monotonic() < deadline:
        sleep(interval)
        try:
            answer = _post(token_url(settings), {**client, "grant_type": DEVICE_GRANT,
                                                  "device_code": device_code}, [device_code])
        except _OAuthError as err:
            if err.code == "authorization_pending":
                continue
            if err.code == "slow_down":
                interval += 5
                continue
            raise LoginError(f"the sign-in did not succeed: {err.message}",
                             hint="run invitemail login again") from None
        refresh = answer.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise LoginError(f"{settings.token_url} gave no refresh token",
                             hint="ask for offline access: add the provider's scope for it "
                             "(often offline_access) to smtp.oauth.scopes")
        return {"refresh_token": refresh}
    raise LoginError("the sign-in code expired before it was used",
                     hint="run invitemail login again and sign in within the time shown")


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else default

