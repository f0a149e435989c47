"""Microsoft 365 sign-in with msal (the only module that imports it): the device code flow,
and msal's token cache (which holds the refresh token) kept in the stored login."""

from __future__ import annotations

from typing import Any

import msal

from invitemail.auth.credentials import LoginError, Token
from invitemail.auth.settings import OAuthSettings
from invitemail.send.redaction import clean_reply


class Microsoft:
    def __init__(self, settings: OAuthSettings, account: str, record: dict[str, Any], *,
                 scopes: list[str], authority: str, timeout: float) -> None:
        self.account = account
        self.scopes = scopes
        self.cache = msal.SerializableTokenCache()
        serialized = record.get("msal_cache")
        if isinstance(serialized, str):
            self.cache.deserialize(serialized)
        try:
            # Another authority than Microsoft's own (given in smtp.oauth.authority) is not
            # checked against Microsoft's list of clouds.
            self.app = msal.PublicClientApplication(
                settings.client_id, authority=authority, token_cache=self.cache,
                instance_discovery=False if settings.authority else None, timeout=timeout)
        except ValueError as err:  # a malformed authority or tenant
            raise LoginError(f"the Microsoft sign-in cannot start at {authority}: {err}",
                             hint="check smtp.oauth.tenant (and smtp.oauth.authority)") from None
        except Exception as err:  # msal's network errors reaching the authority
            raise LoginError(f"the Microsoft sign-in cannot start at {authority}: "
                             f"{type(err).__name__}: {clean_reply(str(err), limit=300)}",
                             hint="check smtp.oauth.tenant and the network connection") from None

    def login(self, say: Any) -> dict[str, Any]:
        flow = self.app.initiate_device_flow(scopes=self.scopes)
        if "user_code" not in flow:
            raise LoginError(f"Microsoft did not start the sign-in: {_said(flow)}",
                             hint="check smtp.oauth.client_id and smtp.oauth.tenant, and that "
                             "the app registration allows public client flows")
        say(str(flow.get("message") or f"To sign in, open {flow.get('verification_uri')} and "
                f"enter the code {flow['user_code']}"))
        result = self.app.acquire_token_by_device_flow(flow)
        if "access_token" not in result:
            raise LoginError(f"the Microsoft sign-in did not succeed: {_said(result)}",
                             hint="run invitemail login again")
        claims = result.get("id_token_claims") or {}
        who = claims.get("preferred_username") if isinstance(claims, dict) else None
        if isinstance(who, str) and who.lower() != self.account.lower():
            raise LoginError(f"signed in as {who}, but smtp.username is {self.account}",
                             hint=f"run invitemail login again and sign in as {self.account}, "
                             "or change smtp.username")
        return {"msal_cache": self.cache.serialize()}

    def refresh(self, hint: str) -> tuple[Token, dict[str, Any] | None]:
        accounts = self.app.get_accounts(username=self.account) or self.app.get_accounts()
        if not accounts:
            raise LoginError(f"{self.account} has not signed in with Microsoft on this "
                             "computer", hint=hint)
        result = self.app.acquire_token_silent_with_error(
            self.scopes, account=accounts[0], force_refresh=True)
        if not result or "access_token" not in result:
            raise LoginError(f"the Microsoft login of {self.account} is no longer valid "
                             f"({_said(result or {})})", hint=hint)
        changed = {"msal_cache": self.cache.serialize()} if self.cache.has_state_changed \
            else None
        life = result.get("expires_in")
        return Token(result["access_token"],
                     float(life) if isinstance(life, int | float) else None), changed


def _said(result: dict[str, Any]) -> str:
    error = result.get("error") or "no answer"
    detail = result.get("error_description")
    text = f"{error}: {detail}" if detail else str(error)
    return clean_reply(text.split("\r\n")[0], limit=300)
