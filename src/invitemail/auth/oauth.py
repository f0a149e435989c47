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
(RFC 6749 6), done with the standard library (:mod:`invitemail.auth.endpoints`, with the
device flow); the browser flow is :mod:`invitemail.auth.google`, Microsoft's
:mod:`invitemail.auth.microsoft`.

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invitemail.auth import endpoints, google
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

if TYPE_CHECKING:
    from invitemail.auth.microsoft import Microsoft

CONFIG_DIR_ENV = "INVITEMAIL_CONFIG_DIR"
USER_CONFIG = "config.toml"
TOKENS = "tokens"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
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
        record = endpoints.device_flow(settings, say=say, sleep=sleep)
    else:
        record = {"refresh_token": google.browser_flow(
            client_id=settings.client_id or "", client_secret=settings.client_secret or "",
            auth_uri=settings.authorization_url or endpoints.GOOGLE_AUTH_URL,
            token_uri=endpoints.token_url(settings), scopes=endpoints.scopes(settings),
            account=account, say=say, open_browser=open_browser)}
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
            answer = endpoints.refresh_grant(self.settings, refresh, self.account, self.hint)
            rotated = answer.get("refresh_token")
            changed = None
            if isinstance(rotated, str) and rotated and rotated != refresh:
                self._secrets.append(rotated)
                changed = {**record, "refresh_token": rotated}
            token = endpoints.token_of(answer, self.settings)
        self._secrets.append(token.access_token)
        if changed is not None:
            _write_record(self.name, changed)
        return token


def _microsoft(settings: OAuthSettings, account: str, record: dict[str, Any]) -> Microsoft:
    from invitemail.auth.microsoft import Microsoft

    return Microsoft(settings, account, record, scopes=endpoints.scopes(settings),
                     timeout=endpoints.HTTP_TIMEOUT,
                     authority=f"{settings.authority or MICROSOFT_AUTHORITY}/{settings.tenant}")
