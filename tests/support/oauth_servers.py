"""Real OAuth2 parts for the tests: a token server and an SMTP relay that takes AUTH XOAUTH2.

- :class:`OAuthServer`: ``http.server`` in a thread on 127.0.0.1 with the endpoints a
  provider has: device authorization (RFC 8628), token (device code, authorization code,
  refresh token grants), a browser authorization page that redirects to the loopback address
  it was given. Access tokens expire ``lifetime`` seconds after they were issued, on the
  server's ``clock`` (a :class:`~support.relay.FakeClock` in the transport tests, so no test
  sleeps); refresh tokens can be revoked. Every token is random and unique, so a search for
  it in an output can only find that token.
- :class:`XOAuth2Server`: :class:`~support.relay.SmtpServer` offering AUTH XOAUTH2 only,
  taking a token only while :meth:`OAuthServer.valid` says it is; a refused one gets
  ``334 <base64 JSON>``, then ``535`` after the client's empty line, as Microsoft and Google do.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from support.event import EventBuilder, EventToml
from support.relay import HOST, SERVER_NAME, ScriptedSMTP, SmtpServer, tls_files


class OAuthServer:
    """A local OAuth2 provider. ``pending_polls``: how many device-code polls are answered
    ``authorization_pending`` before the user "has signed in"."""

    def __init__(self, *, lifetime: float = 3600.0, clock: Callable[[], float] = time.monotonic,
                 pending_polls: int = 1, rotate: bool = False, tls: bool = False,
                 client_id: str = "invitemail-test", account: str | None = None) -> None:
        self.lifetime = lifetime
        self.tls = tls  # https with the tests' CA (support.relay.tls_files), as msal wants
        self.client_id = client_id
        # With an account: answers carry an OpenID id_token and Microsoft's client_info for
        # it (what msal builds its account from).
        self.account = account
        self.clock = clock
        self.pending_polls = pending_polls
        self.rotate = rotate  # a new refresh token with every refresh
        self.lock = threading.Lock()
        self.access: dict[str, float] = {}  # token -> expires at (clock)
        self.refresh_tokens: set[str] = set()
        self.revoked: set[str] = set()
        self.devices: dict[str, int] = {}  # device code -> polls so far
        self.codes: set[str] = set()  # authorization codes issued
        self.refreshes = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.all_access: list[str] = []  # every access token issued, in order
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"{'https' if self.tls else 'http'}://{HOST}:{self._http.server_address[1]}"

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        """What Microsoft's login server says at /TENANT/v2.0/.well-known/openid-configuration."""
        base = f"{self.url}/{tenant}"
        return {"issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"}

    def _identity(self, form: dict[str, str]) -> dict[str, Any]:
        if self.account is None:
            return {}
        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
        now = int(time.time())
        claims = {"iss": f"{self.url}/tenant-1/v2.0", "sub": "subject-1", "aud": self.client_id,
                  "exp": now + 3600, "iat": now, "preferred_username": self.account,
                  "oid": "object-1", "tid": "tenant-1"}
        return {"id_token": f"{part({'alg': 'none'})}.{part(claims)}.",
                "client_info": part({"uid": "object-1", "utid": "tenant-1"}),
                "scope": form.get("scope", "")}

    def settings_toml(self, *, device: bool = True) -> str:
        """An ``[smtp.oauth]`` table for the generic provider at this server."""
        flow = (f'device_authorization_url = "{self.url}/device"' if device
                else f'authorization_url = "{self.url}/authorize"')
        return (f'[smtp.oauth]\nprovider = "generic"\nclient_id = "invitemail-test"\n'
                f'{flow}\ntoken_url = "{self.url}/token"\nscopes = ["smtp.send"]\n')

    # -- what the tests look at and do -----------------------------------------------------

    def valid(self, token: str) -> bool:
        with self.lock:
            expires = self.access.get(token)
            return expires is not None and self.clock() < expires

    def revoke_all(self) -> None:
        """The account's sign-in is withdrawn: every refresh token and access token dies."""
        with self.lock:
            self.revoked |= self.refresh_tokens
            self.access.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access.clear()

    def issued(self) -> list[str]:
        """Every token this server handed out (access and refresh)."""
        with self.lock:
            return [*self.all_access, *self.refresh_tokens, *self.revoked]

    # -- the protocol ------------------------------------------------------------------------

    def _new_access(self) -> dict[str, Any]:
        token = "at-" + secrets.token_urlsafe(18)
        self.access[token] = self.clock() + self.lifetime
        self.all_access.append(token)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def _new_refresh(self) -> str:
        token = "rt-" + secrets.token_urlsafe(18)
        self.refresh_tokens.add(token)
        return token

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        with self.lock:
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                code = form.get("device_code", "")
                if code not in self.devices:
                    return 400, {"error": "invalid_grant"}
                self.devices[code] += 1
                if self.devices[code] <= self.pending_polls:
                    return 400, {"error": "authorization_pending"}
                del self.devices[code]
                return 200, {**self._new_access(), "refresh_token": self._new_refresh(),
                             **self._identity(form)}
            if grant == "authorization_code":
                if form.get("code") not in self.codes:
                    return 400, {"error": "invalid_grant"}
                self.codes.discard(form["code"])
                return 200, {**self._new_access(), "refresh_token": self._new_refresh()}
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh in self.revoked or refresh not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant", "error_description":
                                 "AADSTS70008: the refresh token has expired or is revoked"}
                self.refreshes += 1
                answer = {**self._new_access(), **self._identity(form)}
                if self.rotate:
                    self.refresh_tokens.discard(refresh)
                    self.revoked.add(refresh)
                    answer["refresh_token"] = self._new_refresh()
                return 200, answer
        return 400, {"error": "unsupported_grant_type"}

    def device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client"}
        code = "dc-" + secrets.token_urlsafe(12)
        with self.lock:
            self.devices[code] = 0
        return 200, {"device_code": code, "user_code": "WDJB-MJHT",
                     "verification_uri": f"{self.url}/activate", "expires_in": 600,
                     "interval": 0, "message": "Open the activation page and enter WDJB-MJHT"}

    def authorize(self, query: dict[str, str]) -> str:
        """The browser sign-in: where the provider sends the browser back (with a code)."""
        code = "ac-" + secrets.token_urlsafe(12)
        with self.lock:
            self.codes.add(code)
        back = {"code": code, "state": query.get("state", "")}
        return f"{query['redirect_uri']}?{urllib.parse.urlencode(back)}"

    # -- running -----------------------------------------------------------------------------

    def start(self) -> OAuthServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                path = urllib.parse.urlsplit(self.path).path
                server.requests.append((path, form))
                if path.endswith("/token"):  # /token, or Microsoft's /T/oauth2/v2.0/token
                    self._answer(*server.token(form))
                elif path.endswith(("/device", "/devicecode")):
                    self._answer(*server.device(form))
                else:
                    self._answer(404, {"error": "not_found"})

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                if parts.path.endswith("/v2.0/.well-known/openid-configuration"):
                    self._answer(200, server.openid_configuration(parts.path.split("/")[1]))
                    return
                if parts.path != "/authorize":
                    self._answer(404, {"error": "not_found"})
                    return
                self.send_response(302)
                self.send_header("Location",
                                 server.authorize(dict(urllib.parse.parse_qsl(parts.query))))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._http = ThreadingHTTPServer((HOST, 0), Handler)
        if self.tls:
            self._http.socket = tls_files().server_context().wrap_socket(
                self._http.socket, server_side=True)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _XOAuth2SMTP(ScriptedSMTP):
    oauth: OAuthServer
    user: str
    refusals: list[str]
    relay: XOAuth2Server

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        relay = self.relay
        if relay.busy_auth > 0:  # a passing problem at the provider's side
            relay.busy_auth -= 1
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure")
        if relay.revoke_after is not None and len(relay.transactions) >= relay.revoke_after:
            relay.revoke_after = None
            self.oauth.revoke_all()  # the sign-in is withdrawn (password reset, admin)
        blob = base64.b64decode(args[1]) if len(args) > 1 else b""
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        if fields.get("user") == self.user and self.oauth.valid(token):
            return AuthResult(success=True, auth_data=LoginPassword(self.user.encode(), b""))
        self.refusals.append(token)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "smtp.send"})
        await self.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(success=False, handled=False,
                          message="535 5.7.3 Authentication unsuccessful")


class XOAuth2Server(SmtpServer):
    """An SMTP relay (STARTTLS) that takes ``user`` with a token ``oauth`` says is valid."""

    def __init__(self, oauth: OAuthServer, user: str, **options: Any) -> None:
        super().__init__(tls=options.pop("tls", "starttls"), **options)
        self.oauth = oauth
        self.user = user
        self.refusals: list[str] = []  # tokens refused, in order
        # Once this many messages were taken, the next AUTH finds the login withdrawn.
        self.revoke_after: int | None = None
        self.busy_auth = 0  # the next N AUTHs are answered 454 (try again later)

    def smtp_toml(self, *, extra: str = "") -> str:
        return (f'[smtp]\nhost = "{HOST}"\nport = {self.port}\nsecurity = "{self.tls}"\n'
                f'username = "{self.user}"\ntimeout = 5\nca_file = "{self.ca_file}"\n'
                f'auth = "xoauth2"\n{extra}')

    def _new_session(self) -> ScriptedSMTP:
        session = _XOAuth2SMTP(
            self.handler, hostname=SERVER_NAME,
            tls_context=tls_files().server_context() if self.tls == "starttls" else None,
            require_starttls=self.tls == "starttls", auth_required=True,
            auth_require_tls=self.tls == "starttls",
            auth_exclude_mechanism=["LOGIN", "PLAIN"], timeout=self.timeout, loop=self._loop)
        session.oauth, session.user, session.refusals = self.oauth, self.user, self.refusals
        session.relay = self
        return session


# -- an event folder that signs in to such a relay -------------------------------------------

USER = "arrangementer@example.org"


ROWS = [(f"Deltager {n}", f"deltager{n}@example.org", "da") for n in range(6)]


def oauth_event(folder: Path, relay: XOAuth2Server, oauth_table: str, *, smtp_extra: str = "",
                rows: list[tuple[str, str, str]] = ROWS) -> Path:
    builder = EventBuilder(rows=rows).set("event", "uid", f"{folder.name}@example.org")
    builder.drop("smtp").drop("sending")
    builder.toml.entries.extend(EventToml.parse(
        relay.smtp_toml(extra=smtp_extra) + oauth_table + "\n[sending]\nconcurrency = 1\n").entries)
    return builder.write(folder).folder
