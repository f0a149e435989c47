"""The access token the SMTP connection signs in with (XOAUTH2), and where it comes from.

A :class:`TokenCredential` is what the transport asks for the current token when it opens a
connection (:meth:`TokenCredential.token`) and tells when the relay refused one
(:meth:`TokenCredential.refresh`). It fetches a token from its :class:`TokenSource`:

- :class:`CommandSource`: ``smtp.token_command``, an existing token helper whose standard
  output is the token (msmtp's ``passwordeval``, neomutt's ``oauthbearer_refresh_command``).
  Run without a shell, with its own timeout, stdin closed; what it writes on stderr is shown
  with any token taken out.
- the refresh token a login stored (:mod:`invitemail.auth.oauth`).

A token is refreshed *before* it expires (when less than :data:`MARGIN` of its life is left,
on the injected clock), so a run of hours never meets an expired one; one that the relay
refuses anyway is refreshed once (several connections refusing the same token refresh it
once between them). A token that cannot be had raises :class:`LoginError`: the run stops,
the hint says to run ``invitemail login``.

The tokens live in this process only: never in an environment variable, never in a text
this module produces (:meth:`TokenCredential.secrets` lists what to take out of a text).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from invitemail.errors import InvitemailError
from invitemail.send.redaction import clean_reply, redact

MARGIN = 300.0  # seconds: a token with less life left than this is refreshed first
# A helper's token says not when it expires: taken as this long-lived, it is used for
# COMMAND_TOKEN_LIFE - MARGIN = 5 minutes, then the helper is asked again.
COMMAND_TOKEN_LIFE = 600.0
STDERR_SHOWN = 400  # characters of a failing helper's stderr shown in the error


class LoginError(InvitemailError):
    """No valid access token can be had: the login is missing, expired or revoked, or the
    token helper failed."""


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: float | None  # seconds from when it was fetched; None: not said


class TokenSource(Protocol):
    """Where access tokens come from. :meth:`fetch` blocks (it runs in a thread)."""

    def fetch(self) -> Token:
        """A fresh access token, or :class:`LoginError`."""

    def secrets(self) -> list[str]:
        """Other secrets it holds (a refresh token) that no text may show."""


class TokenCredential:
    """The current access token for one account, refreshed as needed. ``clock`` is the
    run's (monotonic seconds)."""

    def __init__(self, source: TokenSource, *, clock: Callable[[], float] = time.monotonic,
                 margin: float = MARGIN, hint: str = "run invitemail login") -> None:
        self.source = source
        self.hint = hint  # what to do when the relay refuses every token
        self.clock = clock
        self.margin = margin
        self._token: str | None = None
        self._refresh_at: float | None = None  # on ``clock``; None: when refused
        self._lock: asyncio.Lock | None = None
        self._old: list[str] = []  # tokens handed out before: still secret
        self.refreshes = 0  # tokens fetched (for tests and the report)

    def _fresh(self) -> bool:
        if self._token is None:
            return False
        return self._refresh_at is None or self.clock() < self._refresh_at

    async def token(self) -> str:
        """The current access token, fetched first when there is none or it expires soon."""
        async with self._locked():
            if not self._fresh():
                await self._fetch()
            assert self._token is not None
            return self._token

    async def refresh(self, refused: str) -> str:
        """A new token after the relay refused ``refused``; if another connection already
        replaced that one, the new one is returned without asking again."""
        async with self._locked():
            if self._token == refused or self._token is None:
                await self._fetch()
            assert self._token is not None
            return self._token

    def fetch_now(self) -> str:
        """A token, fetched now, outside any event loop (``check``, the CLI's first try)."""
        self._store(self.source.fetch())
        assert self._token is not None
        return self._token

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:  # made in the loop that uses it
            self._lock = asyncio.Lock()
        return self._lock

    async def _fetch(self) -> None:
        self._store(await asyncio.to_thread(self.source.fetch))

    def _store(self, token: Token) -> None:
        if self._token is not None:
            self._old.append(self._token)
        self._token = token.access_token
        life = token.expires_in
        # A token of short life (under twice the margin) is used for half of it.
        self._refresh_at = None if life is None else \
            self.clock() + life - min(self.margin, life / 2)
        self.refreshes += 1

    def secrets(self) -> list[str]:
        """Every token this credential handed out, and the source's own secrets."""
        found = [*self._old, *([self._token] if self._token else []), *self.source.secrets()]
        return [s for s in found if s]

    def clean(self, text: str) -> str:
        """``text`` with every secret of this credential taken out."""
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = redact(text, secret)
        return text


class CommandSource:
    """``smtp.token_command``: the token is the first line of what the command prints."""

    def __init__(self, argv: tuple[str, ...], *, timeout: float, where: str,
                 life: float = COMMAND_TOKEN_LIFE) -> None:
        self.argv = argv
        self.timeout = timeout
        self.where = where  # "event.toml: smtp.token_command", for messages
        self.life = life
        self._seen: list[str] = []

    def secrets(self) -> list[str]:
        return list(self._seen)

    def fetch(self) -> Token:
        name = self.argv[0]
        hint = ("run the command yourself to see what it needs (a login of its own, a "
                "password manager unlocked), or set smtp.token_command to another helper")
        try:
            process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, env=_clean_environment())
        except OSError as err:
            raise LoginError(f"{self.where}: cannot run {name!r}: "
                             f"{err.strerror or err}", hint=hint) from None
        try:
            out, err_bytes = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            raise LoginError(f"{self.where}: {name!r} printed no token within "
                             f"{self.timeout:g} s and was stopped",
                             hint="the helper may be waiting for input (a browser login, a "
                             "passphrase): run it yourself once, or raise "
                             "smtp.token_command_timeout") from None
        text = out.decode("utf-8", "replace")
        lines = text.strip().splitlines()
        token = lines[0].strip() if lines else ""
        if token:
            self._seen.append(token)
        stderr = err_bytes.decode("utf-8", "replace")
        for secret in (text.strip(), token):
            if secret:
                stderr = stderr.replace(secret, "[token]")
        said = clean_reply(stderr, limit=STDERR_SHOWN)
        said = f": {said}" if said else ""
        if process.returncode != 0:
            code = process.returncode
            how = f"was stopped by signal {-code}" if code < 0 else f"exited with status {code}"
            raise LoginError(f"{self.where}: {name!r} {how}{said}", hint=hint)
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            what = "printed nothing" if not token else "printed something that is not a token"
            raise LoginError(f"{self.where}: {name!r} {what} on its standard output{said}",
                             hint=hint)
        return Token(token, self.life)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop a helper that took too long, and whatever it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):  # a grandchild outside the
        process.communicate(timeout=5)  # group may hold the pipes: do not wait for it


PASSWORD_ENV = "INVITEMAIL_SMTP_PASSWORD"


def _clean_environment() -> dict[str, str]:
    """The helper's environment: this one, without the SMTP password."""
    return {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}

