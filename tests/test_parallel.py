"""Building on worker processes: when they start, and what happens when they die."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from invitemail import pool as parallel
from invitemail.campaign import Campaign
from invitemail.inputs.registrants import unique_registrants
from support.event import NOW, write_event


def test_a_few_messages_of_a_long_list_are_built_without_starting_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`preview` shows one message of 1,100: building it here beats starting processes."""
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    rows = [(f"Deltager {i}", f"deltager{i}@example.org", "da") for i in range(1100)]
    campaign = Campaign.open(write_event(tmp_path / "event", rows), now=NOW)
    first = next(campaign.messages(unique_registrants(campaign.source), expected=1))
    assert first.recipient == "deltager0@example.org"
    assert campaign not in parallel._POOLS


def test_workers_that_die_leave_no_registrant_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes killed (the machine's OOM killer, say): the rest is built here, and
    every registrant still gets exactly one message, in order."""
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    rows = [(f"Deltager {i}", f"deltager{i}@example.org", "da") for i in range(1100)]
    campaign = Campaign.open(write_event(tmp_path / "event", rows), now=NOW)
    campaign.start_workers()
    deadline = time.monotonic() + 30
    while len(parallel.worker_pids(campaign)) < 2:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    for pid in parallel.worker_pids(campaign):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not parallel.broken(campaign):
        assert time.monotonic() < deadline, "the pool did not notice"
        time.sleep(0.01)
    built = [b.recipient for b in campaign.messages(unique_registrants(campaign.source))]
    assert built == [f"deltager{i}@example.org" for i in range(1100)]
