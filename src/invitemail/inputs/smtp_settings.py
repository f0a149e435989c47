"""The [smtp] and [sending] tables of event.toml: the relay and how to send through it
(frozen dataclasses), and how each table is read and checked (through a
:class:`~invitemail.inputs.keys.KeyReader`, so every error names file:line and key). The
``auth`` keys are auth/settings.py's to read."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from invitemail.auth.settings import Auth, read_auth
from invitemail.errors import ConfigError
from invitemail.inputs.keys import KeyReader

SECURITY_MODES: tuple[str, ...] = ("starttls", "tls", "none")
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "tls": 465, "none": 25}

Security = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, slots=True)
class Smtp:
    host: str
    port: int
    security: Security
    username: str | None = None
    timeout: float = 30.0
    ca_file: Path | None = None
    allow_insecure_auth: bool = False
    auth: Auth = field(default_factory=Auth)  # password, or XOAUTH2 (auth/settings.py)
    # RFC 2920 when the relay offers it; false for a relay that offers it but mishandles it.
    pipelining: bool = True

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Sending:
    concurrency: int = 4
    rate: float | None = None  # messages per second; None: as fast as the relay takes them
    rate_text: str | None = None
    max_attempts: int = 5
    max_consecutive_failures: int = 20
    daily_limit: int | None = None  # messages in any 24 hours (the relay's daily quota)
    daily_limit_text: str | None = None


def parse_rate(text: str) -> float:
    """``"10/s"``, ``"600/min"``, ``"3600/h"`` -> messages per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|min|minute|h|hour)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError('write it as "N/s", "N/min" or "N/h" with N above 0, e.g. "10/s"')
    per = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
    return float(match.group(1)) / per[match.group(2)]


def parse_daily_limit(text: str) -> int:
    """``"2000/day"``, ``"2000/24h"`` -> 2000 messages in any 24 hours."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(day|d|24\s*h|24\s*hours?)\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) <= 0:
        raise ValueError('write it as "N/day" (or "N/24h") with N a whole number above 0, '
                         'e.g. "2000/day"')
    return int(match.group(1))


def read_smtp(r: KeyReader) -> Smtp:
    s, n, k = r.section("smtp"), "smtp", r.attempt
    security = k(lambda: _read_security(r, s), "starttls")
    timeout = k(lambda: r.number(s, n, "timeout", 30, 0.001, 3600, integer=False), 30)
    return Smtp(
        host=k(lambda: r.text(s, n, "host")),
        port=k(lambda: r.number(s, n, "port", DEFAULT_PORTS[security], 1, 65535)),
        security=security,
        username=k(lambda: r.text(s, n, "username", None)),
        timeout=float(timeout),
        ca_file=k(lambda: _read_ca_file(r, s)),
        allow_insecure_auth=k(lambda: r.get(s, n, "allow_insecure_auth", bool, False,
                                            describe="true or false")),
        auth=k(lambda: read_auth(s, functools.partial(_auth_error, r), source=str(r.path),
                                 has_username="username" in s), Auth()),
        pipelining=k(lambda: r.get(s, n, "pipelining", bool, True,
                                   describe="true or false")),
    )


def _auth_error(r: KeyReader, key: str, message: str, hint: str | None) -> ConfigError:
    section, _, name = f"smtp.{key}".rpartition(".")
    return r.error(section, name or None, message, hint=hint)


def _read_security(r: KeyReader, s: dict[str, Any]) -> Security:
    security: Security = r.text(s, "smtp", "security", "starttls")
    if security not in SECURITY_MODES:
        raise r.error("smtp", "security", f"{security!r} is not one of "
                      + ", ".join(repr(m) for m in SECURITY_MODES),
                      hint='use "starttls" (port 587), "tls" for implicit TLS (port 465) '
                      'or "none"')
    return security


def _read_ca_file(r: KeyReader, s: dict[str, Any]) -> Path | None:
    ca_file = r.text(s, "smtp", "ca_file", None)
    if ca_file is None:
        return None
    ca_path: Path = (r.path.parent / ca_file).expanduser()
    if ca_path.is_dir():
        raise r.error("smtp", "ca_file", f"{ca_path} is a folder, not a file",
                      hint="give the PEM file that holds the CA certificate")
    if not ca_path.is_file():
        raise r.error("smtp", "ca_file", f"{ca_path} does not exist")
    return ca_path


def read_sending(r: KeyReader) -> Sending:
    s, n, k = r.section("sending"), "sending", r.attempt
    rate_text = k(lambda: r.text(s, n, "rate", None))
    rate = k(lambda: _read_rate(r, rate_text)) if rate_text is not None else None
    daily, daily_text = k(lambda: _read_daily_limit(r, s), (None, None))
    return Sending(
        concurrency=k(lambda: r.number(s, n, "concurrency", 4, 1, 100)),
        rate=rate,
        rate_text=rate_text,
        max_attempts=k(lambda: r.number(s, n, "max_attempts", 5, 1, 100)),
        max_consecutive_failures=k(lambda: r.number(s, n, "max_consecutive_failures", 20,
                                                    1, 100000)),
        daily_limit=daily,
        daily_limit_text=daily_text,
    )


def _read_rate(r: KeyReader, rate_text: str) -> float:
    try:
        return parse_rate(rate_text)
    except ValueError as err:
        raise r.error("sending", "rate", f"{rate_text!r} is not a rate",
                      hint=str(err)) from None


def _read_daily_limit(r: KeyReader, s: dict[str, Any]) -> tuple[int | None, str | None]:
    n = "sending"
    written = s.get("daily_limit")
    shown = None
    if isinstance(written, int) and not isinstance(written, bool):  # 2000: per day
        s, shown = {**s, "daily_limit": f"{written}/day"}, str(written)
    daily_text = r.text(s, n, "daily_limit", None)
    daily = None
    if daily_text is not None:
        try:
            daily = parse_daily_limit(daily_text)
        except ValueError as err:
            raise r.error(n, "daily_limit", f"{shown or repr(daily_text)} is not a "
                          "daily limit", hint=str(err)) from None
    return daily, daily_text
