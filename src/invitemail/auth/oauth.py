"""OAuth2 sign-in (``invitemail login``/``logout``) and the stored refresh tokens.

Three providers, each through the library made for it:

- ``microsoft``: msal's ``PublicClientApplication`` and the device code flow (the coordinator
  signs in on any device with the code shown). The tenant and the client ID are those of the
  organisation's own app registration; msal's token cache (which holds the refresh token) is
  what is stored.
- ``google``: google-auth-oauthlib's installed-app flow with a loopback redirect (Google's
  device flow does not allow the mail scope).
- ``generic``: explicit endpoints; the device flow (RFC 8628) when
  ``device_authorization_url`` is set, else the browser flow with a loopback redirect
  (google-auth-oauthlib's, which works with any provider's endpoints).

Refreshing (for ``google`` and ``generic``) is one standard form POST to the token endpoint
(RFC 6749 6), done with the standard library: no library is needed for it.

A login is stored per account (``smtp.username``) and provider settings as one JSON file in
``tokens/`` of the user's config folder (``$INVITEMAIL_CONFIG_DIR``, else platformdirs'),
mode 0600, written under a temporary name and renamed (never through a link:
:mod:`invitemail.outputs.files`), never printed, never in the event folder or the journal.
The user's ``config.toml`` there may hold an ``[oauth]`` table: defaults for ``[smtp.oauth]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invitemail.auth.credentials import (
    CommandSource,
    LoginError,
    Token,
    TokenCredential,
    TokenSource,
)
from invitemail.auth.settings import OAuthSettings, read_oauth_table
from invitemail.errors import ConfigError, InvitemailError
from invitemail.inputs.config import Smtp
from invitemail.outputs.files import OutputFolder
from invitemail.send.redaction import clean_reply

if TYPE_CHECKING:
    from invitemail.auth.microsoft import Microsoft

CONFIG_DIR_ENV = "INVITEMAIL_CONFIG_DIR"
USER_CONFIG = "config.toml"
TOKENS = "tokens"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPES = {
    "microsoft": ("https://outlook.office.com/SMTP.Send",),
    "google": ("https://mail.google.com/",),
}
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT = 30.0
NEEDED = {
    "microsoft": ("client_id", "tenant"),
    "google": ("client_id", "client_secret"),
    "generic": ("client_id", "token_url", "scopes"),
}

Say = Callable[[str], None]


def config_dir() -> Path:
    """The user's config folder for invitemail."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    if folder:
        return Path(folder).expanduser()
    import platformdirs

    return platformdirs.user_config_path("invitemail", appauthor=False)


def user_settings() -> OAuthSettings:
    """The ``[oauth]`` table of the user's config.toml, or nothing."""
    path = config_dir() / USER_CONFIG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return OAuthSettings()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(path, f"cannot be read: {err}") from None

    def error(key: str, message: str, hint: str | None) -> ConfigError:
        return ConfigError(path, message, key=f"oauth.{key}" if key else "[oauth]", hint=hint)

    return read_oauth_table(data.get("oauth", {}), error, source=str(path))


def settings_for(smtp: Smtp, event_file: Path) -> OAuthSettings:
    """The provider settings for this event: event.toml's, then the user's; complete."""
    settings = smtp.auth.oauth.merged_over(user_settings())
    where = settings.source or f"{event_file} and {config_dir() / USER_CONFIG}"
    if settings.provider is None:
        raise ConfigError(event_file, "no OAuth2 provider is set, and no smtp.token_command",
                          key="smtp.oauth.provider",
                          hint='add [smtp.oauth] with provider = "microsoft", "google" or '
                          '"generic" (or [oauth] in your own ' + str(config_dir() / USER_CONFIG)
                          + "), or set smtp.token_command to a token helper")
    missing = [key for key in NEEDED[settings.provider] if not getattr(settings, key)]
    if settings.provider == "generic" and not (settings.device_authorization_url
                                               or settings.authorization_url):
        missing.append("device_authorization_url (or authorization_url)")
    if missing:
        raise ConfigError(where, f"the {settings.provider} sign-in needs "
                          + ", ".join(missing), key="smtp.oauth",
                          hint="add them under [smtp.oauth] in event.toml (the README's OAuth2 "
                          "sections say where to find them)")
    return settings


def credential_for(smtp: Smtp, event_file: Path, *, login_command: str,
                   clock: Callable[[], float] = time.monotonic) -> TokenCredential:
    """The credential ``smtp.auth = "xoauth2"`` asks for: from ``smtp.token_command``, or
    from the login stored by ``invitemail login`` (``login_command`` is that command, for
    the hint)."""
    assert smtp.username is not None
    auth = smtp.auth
    if auth.token_command is not None:
        source: TokenSource = CommandSource(
            auth.token_command, timeout=auth.token_command_timeout,
            where=f"{event_file}: smtp.token_command")
        hint = ("the relay refused the token smtp.token_command printed: check that the helper "
                f"signs in as {smtp.username} with the mail (SMTP.Send) permission")
    else:
        hint = f"run {login_command} to sign in again"
        source = RefreshSource(settings_for(smtp, event_file), smtp.username, hint=hint)
    return TokenCredential(source, clock=clock, hint=hint)


# -- the stored logins -----------------------------------------------------------------------


def _cache_name(settings: OAuthSettings, account: str) -> str:
    identity = "\0".join([settings.provider or "", account.lower(), settings.client_id or "",
                          settings.tenant or "", settings.authority or "",
                          settings.token_url or ""])
    return f"{settings.provider}-{hashlib.sha256(identity.encode()).hexdigest()[:24]}.json"


def _read_record(name: str) -> dict[str, Any] | None:
    path = config_dir() / TOKENS / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InvitemailError(f"{path}: the stored login cannot be read: {err.strerror}",
                              hint=f"remove {path} and run invitemail login again") from None
    with os.fdopen(fd, "rb") as file:
        raw = file.read()
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise InvitemailError(f"{path}: the stored login is damaged",
                              hint=f"remove {path} and run invitemail login again")
    return record


def _write_record(name: str, record: dict[str, Any]) -> Path:
    with OutputFolder.create(config_dir() / TOKENS) as folder:
        return folder.write(name, json.dumps(record), private=True)


def forget(settings: OAuthSettings, account: str) -> Path | None:
    """Remove the stored login; the path it had, or None when there was none."""
    path = config_dir() / TOKENS / _cache_name(settings, account)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    return path


# -- login -----------------------------------------------------------------------------------


def login(settings: OAuthSettings, account: str, *, say: Say, open_browser: bool = True,
          sleep: Callable[[float], None] = time.sleep) -> Path:
    """Sign ``account`` in with the provider (the user acts on what ``say`` shows) and store
    the refresh token; returns the file it is kept in."""
    name = _cache_name(settings, account)
    if settings.provider == "microsoft":
        record = _microsoft(settings, account, {}).login(say)
    elif settings.provider == "generic" and settings.device_authorization_url:
        record = _device_flow(settings, say=say, sleep=sleep)
    else:
        record = _browser_flow(settings, account, say=say, open_browser=open_browser)
    record.update(provider=settings.provider, account=account)
    return _write_record(name, record)


class RefreshSource:
    """The stored login of one account, as a :class:`~invitemail.auth.credentials.TokenSource`:
    each :meth:`fetch` trades the refresh token for a new access token (and stores a new
    refresh token when the provider rotates it)."""

    def __init__(self, settings: OAuthSettings, account: str, *, hint: str) -> None:
        self.settings = settings
        self.account = account
        self.hint = hint  # "run invitemail login EVENT"
        self.name = _cache_name(settings, account)
        self._secrets: list[str] = []

    def secrets(self) -> list[str]:
        return list(self._secrets)

    def _record(self) -> dict[str, Any]:
        record = _read_record(self.name)
        if record is None:
            raise LoginError(f"{self.account} has not signed in with {self.settings.provider} "
                             "on this computer (no stored login)", hint=self.hint)
        return record

    def fetch(self) -> Token:
        record = self._record()
        if self.settings.provider == "microsoft":
            token, changed = _microsoft(self.settings, self.account, record).refresh(self.hint)
        else:
            refresh = record.get("refresh_token")
            if not isinstance(refresh, str) or not refresh:
                raise LoginError(f"the stored login of {self.account} holds no refresh token",
                                 hint=self.hint)
            self._secrets.append(refresh)
            answer = _refresh(self.settings, refresh, self.account, self.hint)
            rotated = answer.get("refresh_token")
            changed = None
            if isinstance(rotated, str) and rotated and rotated != refresh:
                self._secrets.append(rotated)
                changed = {**record, "refresh_token": rotated}
            token = _token_of(answer, self.settings)
        self._secrets.append(token.access_token)
        if changed is not None:
            _write_record(self.name, changed)
        return token


def _token_of(answer: dict[str, Any], settings: OAuthSettings) -> Token:
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise LoginError(f"{settings.token_url}: the answer holds no access token")
    life = answer.get("expires_in")
    try:
        seconds = float(life) if life is not None else None
    except (TypeError, ValueError):
        seconds = None
    return Token(access, seconds)


def _token_url(settings: OAuthSettings) -> str:
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


def _refresh(settings: OAuthSettings, refresh: str, account: str, hint: str) -> dict[str, Any]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh,
            "client_id": settings.client_id or ""}
    if settings.client_secret:
        form["client_secret"] = settings.client_secret
    url = _token_url(settings)
    try:
        return _post(url, form, [refresh])
    except _OAuthError as err:
        raise LoginError(f"the {settings.provider} login of {account} is no longer valid "
                         f"({url} says {err.message})", hint=hint) from None


def _scopes(settings: OAuthSettings) -> list[str]:
    return list(settings.scopes or DEFAULT_SCOPES.get(settings.provider or "", ()))


def _device_flow(settings: OAuthSettings, *, say: Say,
                 sleep: Callable[[float], None]) -> dict[str, Any]:
    """RFC 8628: show the code, poll the token endpoint until the user has signed in."""
    assert settings.device_authorization_url is not None
    client = {"client_id": settings.client_id or ""}
    if settings.client_secret:
        client["client_secret"] = settings.client_secret
    start = _post(settings.device_authorization_url,
                  {**client, "scope": " ".join(_scopes(settings))}, [])
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
            answer = _post(_token_url(settings), {**client, "grant_type": DEVICE_GRANT,
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


def _browser_flow(settings: OAuthSettings, account: str, *, say: Say,
                  open_browser: bool) -> dict[str, Any]:
    """The installed-app flow: a browser signs in, the provider redirects to a loopback port."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    class Flow(InstalledAppFlow):  # type: ignore[misc]  # shows the address through ``say``, not print()
        def authorization_url(self, **kwargs: Any) -> tuple[str, str]:
            url, state = super().authorization_url(**kwargs)
            say(f"To sign in, open this address in a browser on this computer: {url}")
            return url, state

    config = {"installed": {
        "client_id": settings.client_id, "client_secret": settings.client_secret or "",
        "auth_uri": settings.authorization_url or GOOGLE_AUTH_URL,
        "token_uri": _token_url(settings)}}
    flow = Flow.from_client_config(config, scopes=_scopes(settings))
    try:
        credentials = flow.run_local_server(
            host="127.0.0.1", port=0, open_browser=open_browser,
            authorization_prompt_message=None, timeout_seconds=600,
            success_message="Signed in; you may close this window and go back to invitemail.",
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
    return {"refresh_token": refresh}


def _microsoft(settings: OAuthSettings, account: str, record: dict[str, Any]) -> Microsoft:
    from invitemail.auth.microsoft import Microsoft

    return Microsoft(settings, account, record, scopes=_scopes(settings), timeout=HTTP_TIMEOUT,
                     authority=f"{settings.authority or MICROSOFT_AUTHORITY}/{settings.tenant}")
