"""Email addresses: the only module that uses email-validator.

Addresses are checked for syntax only (no DNS: ``check`` must work offline and fast).
International addresses are accepted; SMTPUTF8 is needed for a non-ASCII local part, which
we report rather than send.

The special-use domains made for trying things out (``.test``, ``.localhost``, ``.invalid``,
RFC 6761) can never receive real mail: they are refused, unless the run sends through a
local test server (``[smtp] host`` a loopback address; see :func:`is_loopback_host`), where
they are what a test list should use.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# email-validator (its import compiles many regular expressions) and email.headerregistry are
# imported where they are used: a run whose addresses take the fast path needs email-validator
# only for the first address on each domain, and a file check or a send gets further first.


def preload() -> None:
    """Import email-validator now (see mime.ics.preload)."""
    import email_validator  # noqa: F401


class AddressError(ValueError):
    """An address that cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A display name and an address, as in ``From: Name <addr>``."""

    name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


# Addresses already checked that are their own normal form (almost all of them). A run reads
# the registrant file twice (check, then send); remembering these costs a set of strings,
# where checking each address again costs a fifth of a millisecond.
_KNOWN_GOOD: set[str] = set()
_KNOWN_GOOD_LIMIT = 1 << 18

# The fast path for the common address: a plain lower-case dot-atom before the @ (what
# email-validator accepts as it is) and a domain already validated for another address.
# The domain's verdict is what email-validator says of "x@domain"; what an address adds to
# it (the local part, the lengths) is checked here, and anything unusual (upper case, quotes,
# a long local part, an address near 254 octets) takes the full validation.
_PLAIN_LOCAL = re.compile(r"[a-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-z0-9_!#$%&'*+\-/=?^`{|}~]+)*")
_PLAIN_DOMAIN = re.compile(r"[\w.-]+")
_DOMAINS: dict[str, tuple[str, str] | None] = {}  # domain -> (ascii, unicode form), or None
_DOMAINS_LIMIT = 1 << 14
_MAX_LOCAL = 64  # octets (RFC 5321 4.5.3.1.1)
_MAX_ADDRESS = 254  # octets (RFC 3696 errata 1690)


def _fast(candidate: str) -> str | None:
    """The normal form of a plain address on a known-good domain; None: validate in full."""
    local, _, domain = candidate.rpartition("@")
    if not (0 < len(local) <= _MAX_LOCAL and _PLAIN_LOCAL.fullmatch(local)
            and _PLAIN_DOMAIN.fullmatch(domain)):
        return None
    try:
        forms = _DOMAINS[domain]
    except KeyError:
        from email_validator import EmailNotValidError, validate_email

        try:
            info = validate_email("x@" + domain, check_deliverability=False,
                                  allow_smtputf8=False)
            forms = (info.ascii_domain, info.domain)
        except EmailNotValidError:
            forms = None
        if len(_DOMAINS) >= _DOMAINS_LIMIT:
            _DOMAINS.clear()
        _DOMAINS[domain] = forms
    if forms is None:
        return None
    longest = max(len(candidate.encode()), len(local) + 1 + max(
        len(form.encode()) for form in forms))
    return f"{local}@{forms[0]}" if longest <= _MAX_ADDRESS else None


# The top-level domains of RFC 6761 that a local test server may use (allowed only then).
LOCAL_TEST_DOMAINS = ("test", "localhost", "invalid")


def is_loopback_host(host: str) -> bool:
    """Whether an SMTP host is this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _local_test_domain(candidate: str) -> str | None:
    """The special-use top-level domain of ``candidate``'s domain (``test``, ...), or None."""
    domain = candidate.rpartition("@")[2].strip().rstrip(".").lower()
    tld = domain.rpartition(".")[2]
    return tld if tld in LOCAL_TEST_DOMAINS else None


def _normalize_local_test(candidate: str, tld: str) -> str:
    """Validate an address on a local-test domain: email-validator allows ``.test`` in its
    test environment, so the top-level domain is checked as ``test`` and put back."""
    local, _, domain = candidate.rpartition("@")
    stem = domain.rstrip(".")[: -len(tld)]  # "" or "name." (case kept for the validator)
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(f"{local}@{stem}test", check_deliverability=False,
                              allow_smtputf8=False, test_environment=True)
    except EmailNotValidError as err:
        raise AddressError(str(err)) from None
    return f"{info.local_part}@{info.ascii_domain.removesuffix('test')}{tld}"


def normalize_address(text: str, *, local_test: bool = False) -> str:
    """Return the address in the form to send to, or raise :class:`AddressError`.

    The domain is converted to its ASCII (IDNA) form, so that a relay without SMTPUTF8 accepts
    it; the local part must be ASCII for the same reason. ``local_test``: the run sends
    through a local test server, so ``.test``, ``.localhost`` and ``.invalid`` addresses are
    allowed (they are refused otherwise, with a message that says so).
    """
    candidate = text.strip()
    if candidate in _KNOWN_GOOD:
        return candidate
    tld = _local_test_domain(candidate) if "@" in candidate else None
    if tld is not None and "<" not in candidate:
        if not local_test:
            raise AddressError(
                f".{tld} is a domain reserved for tests: no real mailbox has it. It is allowed "
                "only when [smtp] host is a local test server (localhost, 127.0.0.1 or ::1); "
                "otherwise use the registrant's real address")
        return _normalize_local_test(candidate, tld)  # never cached in _KNOWN_GOOD
    if not candidate:
        raise AddressError("the address is empty")
    named = re.fullmatch(r"[^<>]*<([^<>]+)>", candidate)
    if named:  # "Name <addr>" where the bare address belongs (a CSV cell, support.email)
        raise AddressError(f"give the address alone ({named.group(1).strip()}), without a name "
                           "and < >")
    normal = _fast(candidate)
    if normal is None:
        from email_validator import EmailNotValidError, validate_email

        try:
            info = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as err:
            raise AddressError(str(err)) from None
        normal = f"{info.local_part}@{info.ascii_domain}"
    if normal == candidate:
        if len(_KNOWN_GOOD) >= _KNOWN_GOOD_LIMIT:
            _KNOWN_GOOD.clear()
        _KNOWN_GOOD.add(normal)
    return normal


def parse_mailbox(text: str, *, local_test: bool = False) -> Mailbox:
    """Parse ``"Name <addr>"`` or a bare address; raise :class:`AddressError` when invalid.
    ``local_test``: as for :func:`normalize_address`."""
    if "\n" in text or "\r" in text:
        raise AddressError("it contains a line break")
    from email.headerregistry import Address

    try:
        parsed = Address(addr_spec=text.strip()) if "<" not in text else None
    except (ValueError, IndexError):
        parsed = None
    if parsed is not None:
        return Mailbox("", normalize_address(parsed.addr_spec, local_test=local_test))
    name, sep, rest = text.strip().rpartition("<")
    if not sep or not rest.endswith(">"):
        raise AddressError('write it as "Name <address@example.org>" or just the address')
    return Mailbox(name.strip().strip('"').strip(),
                   normalize_address(rest[:-1], local_test=local_test))
