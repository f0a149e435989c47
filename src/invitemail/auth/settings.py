"""How invitemail signs in to the relay: ``[smtp] auth``, ``token_command`` and ``[smtp.oauth]``.

Read from event.toml by :mod:`invitemail.inputs.config` (which calls :func:`read_auth` with the raw
``[smtp]`` table) and, for the OAuth2 provider's settings, from the user's own config file
(``[oauth]`` in ``config.toml`` in the user's config folder, :mod:`invitemail.auth.oauth`). The
event's ``[smtp.oauth]`` keys win over the user's ``[oauth]`` ones, key by key.

This module only checks what is written; it runs nothing and reads no other file.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Method = Literal["password", "xoauth2"]
METHODS: tuple[str, ...] = ("password", "xoauth2")
PROVIDERS: tuple[str, ...] = ("microsoft", "google", "generic")
TOKEN_COMMAND_TIMEOUT = 30.0  # seconds, unless smtp.token_command_timeout says otherwise

# The keys of [smtp.oauth] (and of the user's [oauth]); all are text but scopes (a list).
OAUTH_KEYS: tuple[str, ...] = (
    "provider", "client_id", "client_secret", "tenant", "authority",
    "device_authorization_url", "authorization_url", "token_url", "scopes",
)

# Raised by the caller's ``error(key, message, hint)``: a ConfigError with file:line.
ErrorFactory = Callable[[str, str, str | None], Exception]


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """What the built-in login needs to know about the provider (all optional here; which
    are needed depends on the provider, and :mod:`invitemail.auth.oauth` says what is missing)."""

    provider: str | None = None
    client_id: str | None = None
    client_secret: str | None = None  # Google's "Desktop" clients have one (not secret)
    tenant: str | None = None  # Microsoft: the organisation's tenant (name or ID)
    authority: str | None = None  # Microsoft: another cloud's login host
    device_authorization_url: str | None = None  # generic: the device flow
    authorization_url: str | None = None  # generic: the browser flow (loopback redirect)
    token_url: str | None = None  # generic
    scopes: tuple[str, ...] = ()
    source: str = ""  # where the settings were read (for messages)

    def merged_over(self, defaults: OAuthSettings) -> OAuthSettings:
        """These settings, with ``defaults`` filling in what these leave out."""
        values: dict[str, Any] = {}
        for name in OAUTH_KEYS:
            mine = getattr(self, name)
            values[name] = mine if mine not in (None, ()) else getattr(defaults, name)
        sources = [s for s in (self.source, defaults.source) if s]
        return OAuthSettings(**values, source=" and ".join(sources))


@dataclass(frozen=True, slots=True)
class Auth:
    """``smtp.auth`` and where the XOAUTH2 access token comes from."""

    method: Method = "password"
    token_command: tuple[str, ...] | None = None
    token_command_timeout: float = TOKEN_COMMAND_TIMEOUT
    oauth: OAuthSettings = field(default_factory=OAuthSettings)

    @property
    def xoauth2(self) -> bool:
        return self.method == "xoauth2"


def read_auth(smtp: Mapping[str, Any], error: ErrorFactory, *, source: str,
              has_username: bool) -> Auth:
    """Check ``auth``, ``token_command``, ``token_command_timeout`` and ``oauth`` of the
    raw ``[smtp]`` table. ``error("smtp.auth", message, hint)`` makes the error to raise."""
    method = smtp.get("auth", "password")
    if method not in METHODS:
        raise error("auth", f"{method!r} is not one of " + ", ".join(map(repr, METHODS)),
                    'use "password" (the default) or "xoauth2" (OAuth2: Microsoft 365, '
                    "Google Workspace)")
    command = _read_command(smtp.get("token_command"), error)
    timeout = smtp.get("token_command_timeout", TOKEN_COMMAND_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not 0 < timeout <= 3600:
        raise error("token_command_timeout", "must be a number of seconds from 0 to 3600",
                    "write it without quotes: token_command_timeout = 30")
    oauth = read_oauth_table(smtp.get("oauth", {}), lambda key, message, hint: error(
        f"oauth.{key}" if key else "oauth", message, hint), source=source)
    if method == "xoauth2" and not has_username:
        raise error("auth", '"xoauth2" needs smtp.username: the mailbox to sign in as',
                    'add username = "you@example.org" under [smtp]')
    if method != "xoauth2" and (command is not None or smtp.get("oauth") is not None):
        what = "token_command" if command is not None else "[smtp.oauth]"
        raise error("auth", f'is "password", so {what} would not be used',
                    'set auth = "xoauth2" under [smtp] to sign in with OAuth2')
    if command is not None and smtp.get("oauth") is not None:
        raise error("token_command", "and [smtp.oauth] are both given; the token comes from "
                    "one of them", "keep token_command (an existing token helper) or "
                    "[smtp.oauth] (`invitemail login`), not both")
    return Auth(method=method, token_command=command, token_command_timeout=float(timeout),
                oauth=oauth)


def _read_command(value: Any, error: ErrorFactory) -> tuple[str, ...] | None:
    if value is None:
        return None
    hint = 'write the command as a list, token_command = ["oama", "access", "you@example.org"],' \
        " or as one line of text (it is split like a shell would, but run without one)"
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as err:
            raise error("token_command", f"cannot be split into words: {err}", hint) from None
    elif isinstance(value, list) and all(isinstance(word, str) for word in value):
        words = list(value)
    else:
        raise error("token_command", "must be a list of words or one line of text", hint)
    if not words or not words[0].strip():
        raise error("token_command", "is empty", hint)
    if any("\0" in word for word in words):
        raise error("token_command", "holds a NUL character", hint)
    return tuple(words)


def read_oauth_table(table: Any, error: ErrorFactory, *, source: str) -> OAuthSettings:
    """Check an ``[smtp.oauth]`` (or the user's ``[oauth]``) table."""
    if not isinstance(table, dict):
        raise error("", "must be a table, written [smtp.oauth]", None)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in OAUTH_KEYS:
            import difflib

            close = difflib.get_close_matches(key, OAUTH_KEYS, n=1)
            raise error(key, "unknown key", f"did you mean {close[0]!r}?" if close else
                        "known keys: " + ", ".join(OAUTH_KEYS))
        if key == "scopes":
            if not isinstance(value, list) or not value or \
                    not all(isinstance(s, str) and s.strip() and " " not in s for s in value):
                raise error(key, "must be a list of scopes",
                            'write it as scopes = ["https://mail.google.com/"]')
            values[key] = tuple(value)
            continue
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise error(key, "must be one line of text", None)
        values[key] = value.strip()
    provider = values.get("provider")
    if provider is not None and provider not in PROVIDERS:
        raise error("provider", f"{provider!r} is not one of " + ", ".join(map(repr, PROVIDERS)),
                    None)
    for key in ("authority", "device_authorization_url", "authorization_url", "token_url"):
        url = values.get(key)
        if url is not None and not _is_web_address(url):
            raise error(key, f"{url!r} is not an https:// address", None)
    return OAuthSettings(**values, source=source if values else "")


def _is_web_address(url: str) -> bool:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    # Plain http only to this machine (a local test server, a local token proxy).
    return bool(parts.netloc) and (parts.scheme == "https" or
                                   (parts.scheme == "http" and loopback))
