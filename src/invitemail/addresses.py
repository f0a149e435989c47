"""Email addresses: the only module that uses email-validator.

Addresses are checked for syntax only (no DNS: ``check`` must work offline and fast).
International addresses are accepted; SMTPUTF8 is needed for a non-ASCII local part, which
we report rather than send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address

from email_validator import EmailNotValidError, validate_email


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


def normalize_address(text: str) -> str:
    """Return the address in the form to send to, or raise :class:`AddressError`.

    The domain is converted to its ASCII (IDNA) form, so that a relay without SMTPUTF8 accepts
    it; the local part must be ASCII for the same reason.
    """
    candidate = text.strip()
    if candidate in _KNOWN_GOOD:
        return candidate
    if not candidate:
        raise AddressError("the address is empty")
    named = re.fullmatch(r"[^<>]*<([^<>]+)>", candidate)
    if named:  # "Name <addr>" where the bare address belongs (a CSV cell, support.email)
        raise AddressError(f"give the address alone ({named.group(1).strip()}), without a name "
                           "and < >")
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


def parse_mailbox(text: str) -> Mailbox:
    """Parse ``"Name <addr>"`` or a bare address; raise :class:`AddressError` when invalid."""
    if "\n" in text or "\r" in text:
        raise AddressError("it contains a line break")
    try:
        parsed = Address(addr_spec=text.strip()) if "<" not in text else None
    except (ValueError, IndexError):
        parsed = None
    if parsed is not None:
        return Mailbox("", normalize_address(parsed.addr_spec))
    name, sep, rest = text.strip().rpartition("<")
    if not sep or not rest.endswith(">"):
        raise AddressError('write it as "Name <address@example.org>" or just the address')
    return Mailbox(name.strip().strip('"').strip(), normalize_address(rest[:-1]))
