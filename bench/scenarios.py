"""The bench's measurements as a typed table: one :class:`Scenario` per ``--only`` key.

``--only`` takes these keys (comma-separated) and rejects any other with the list of known
ones; :class:`~measure.Bench` runs the table's rows by key, in the table's order per kind.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal, TypeGuard, get_args

from common import LATENCY, LATENCY_FAR

Key = Literal["help", "check", "a0", "b0", "c0", "c50", "a50", "b50", "c100", "a100",
              "e_send", "e_preview", "relay_cap", "random_451"]
# (a) invitemail send, (b) mailmerge, (c) raw aiosmtplib; "" for the others
Kind = Literal["a", "b", "c", ""]


@dataclass(frozen=True)
class Scenario:
    """One measurement ``--only`` can choose."""

    key: Key
    about: str
    kind: Kind = ""
    latency: float = 0.0  # seconds the delaying proxy adds to every server reply
    sink: bool = True  # needs smtp-sink (the pace runs have a relay of their own)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("help", "invitemail --help, best of 5"),
    Scenario("check", "invitemail check of the list"),
    Scenario("a0", "(a) invitemail send", "a"),
    Scenario("c0", "(c) raw aiosmtplib, the ceiling", "c"),
    Scenario("b0", "(b) mailmerge 2.3.0", "b"),
    Scenario("c50", "(c) at 50 ms", "c", LATENCY),
    Scenario("a50", "(a) at 50 ms", "a", LATENCY),
    Scenario("b50", "(b) at 50 ms", "b", LATENCY),
    Scenario("c100", "(c) at 100 ms", "c", LATENCY_FAR),
    Scenario("a100", "(a) at 100 ms", "a", LATENCY_FAR),
    Scenario("e_send", "(e) peak RSS of send, large list"),
    Scenario("e_preview", "(e) peak RSS of preview --out, large list"),
    Scenario("relay_cap", "the pace against a relay capping its rate", sink=False),
    Scenario("random_451", "the pace against 20% random 451", sink=False),
)
BY_KEY: dict[Key, Scenario] = {scenario.key: scenario for scenario in SCENARIOS}
KEYS: tuple[Key, ...] = get_args(Key)
assert set(BY_KEY) == set(KEYS) and len(BY_KEY) == len(SCENARIOS), "one row per key"
LATENCIES: tuple[float, ...] = tuple(dict.fromkeys(s.latency for s in SCENARIOS if s.latency))


def is_key(text: str) -> TypeGuard[Key]:
    return text in BY_KEY


def parse_only(text: str) -> frozenset[Key]:
    """``--only``'s value: known keys, comma-separated; an unknown one is an error that
    lists the known ones."""
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in BY_KEY]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown measurement {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(KEYS)}")
    if not chosen:
        raise argparse.ArgumentTypeError(f"no measurement given: choose from {', '.join(KEYS)}")
    return frozenset(part for part in chosen if is_key(part))


def at_latency(latency: float) -> tuple[Scenario, ...]:
    """The rows sent through the delaying proxy at ``latency``, in the table's order."""
    return tuple(s for s in SCENARIOS if s.latency == latency)
