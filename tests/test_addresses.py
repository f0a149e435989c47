"""Address validation: the fast path for plain addresses says what email-validator says."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invitemail.inputs.addresses import AddressError, _fast, normalize_address

LOCAL = st.text(alphabet="abcxyz0189._-+!#$%&'*/=?^`{|}~AZ\"@ æ", min_size=0, max_size=70)
DOMAIN = st.one_of(
    st.sampled_from(["example.org", "Example.ORG", "djøf.dk", "xn--djf-tna.dk", "localhost",
                     "x.local", "a.test", "nodot", "a..b.dk", "-a.dk", "a.123", "a_b.dk",
                     "ex ample.org", "a.dk.", "[127.0.0.1]", "b" * 63 + ".dk",
                     ".".join(["c" * 60] * 4) + ".dk", ""]),
    st.from_regex(r"[a-zæø0-9-]{1,20}(\.[a-z0-9-]{1,10}){1,3}", fullmatch=True))


def library(address: str) -> str | None:
    try:
        info = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return f"{info.local_part}@{info.ascii_domain}"


@settings(max_examples=600, deadline=None)
@given(local=LOCAL, domain=DOMAIN)
@example(local="postmaster", domain="example.org")
@example(local="a" * 64, domain="b" * 63 + ".dk")
@example(local="a" * 64, domain=".".join(["c" * 60] * 3) + ".example.dk")
def test_the_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    fast = _fast(address)
    if fast is not None:  # the fast path answers only for what the library accepts as is
        assert fast == library(address)
    expected = library(address.strip())  # normalize_address strips a cell's spaces first
    if expected is None:
        with pytest.raises(AddressError):
            normalize_address(address)
    else:
        assert normalize_address(address) == expected


def test_the_fast_path_takes_the_ordinary_address() -> None:
    assert _fast("ane.hansen@Example.ORG") == "ane.hansen@example.org"
    assert _fast("Ane.Hansen@example.org") is None  # upper case: the full validation
    assert _fast("ane@localhost") is None  # a domain the library refuses
