"""The bench's table of measurements (bench/scenarios.py): ``--only`` takes its keys and
refuses any other with the list of known ones, before anything is measured."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))

import scenarios  # bench/ is scripts, not a package: its folder is on sys.path


def test_every_key_has_one_row_and_only_accepts_each() -> None:
    assert sorted(row.key for row in scenarios.SCENARIOS) == sorted(scenarios.KEYS)
    for key in scenarios.KEYS:
        assert scenarios.parse_only(key) == {key}
    assert scenarios.parse_only("a0,c0") == {"a0", "c0"}
    assert scenarios.parse_only(" a50 , c50 ") == {"a50", "c50"}


def test_the_latency_rows_are_the_proxied_ones_in_order() -> None:
    assert [[row.key for row in scenarios.at_latency(latency)]
            for latency in scenarios.LATENCIES] == [["c50", "a50", "b50"], ["c100", "a100"]]
    assert {row.key for row in scenarios.SCENARIOS if not row.sink} == {"relay_cap",
                                                                       "random_451"}


@pytest.mark.parametrize(("only", "unknown"), [
    ("x9", "'x9'"), ("A0", "'A0'"), ("a0,a5", "'a5'"), ("a 0,c0", "'a 0'"),
    ("e-send,relay-cap", "'e-send', 'relay-cap'"), ("c0;a0", "'c0;a0'"),
])
def test_an_unknown_key_is_refused_with_the_known_ones(only: str, unknown: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        scenarios.parse_only(only)
    assert str(refused.value) == (f"unknown measurement {unknown}: choose from "
                                  + ", ".join(scenarios.KEYS))


@pytest.mark.parametrize("only", ["", ",", " , "])
def test_no_key_at_all_is_refused(only: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="no measurement given: choose from"):
        scenarios.parse_only(only)
