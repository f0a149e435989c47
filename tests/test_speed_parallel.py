"""The workers' first tasks are small (the sending starts after a few builds), and what the
workers build in those tasks and the ones after is what the main process builds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from invitemail import pool as parallel
from invitemail.campaign import Campaign
from invitemail.inputs.registrants import unique_registrants
from support.event import NOW, write_event


def test_tasks_start_small_and_grow_to_a_chunk() -> None:
    sizes = list(itertools.islice(parallel.chunk_sizes(), 8))
    assert sizes[0] == parallel.FIRST_CHUNK < parallel.CHUNK
    assert sizes == sorted(sizes)
    assert sizes[-3:] == [parallel.CHUNK] * 3
    assert all(b in (a * 2, parallel.CHUNK) for a, b in itertools.pairwise(sizes))


def test_messages_built_by_workers_equal_those_built_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,100 registrants in two languages (the workers warm up on each), in the growing
    tasks: every message comes back in order, byte for byte what this process builds."""
    monkeypatch.setenv("INVITEMAIL_WORKERS", "2")
    rows = [(f"Deltager {i}", f"deltager{i}@example.org", ("da", "en")[i % 3 == 0])
            for i in range(1100)]
    folder = write_event(tmp_path / "event", rows)
    campaign = Campaign.open(folder, now=NOW)
    campaign.start_workers()
    built = list(campaign.messages(unique_registrants(campaign.source)))
    assert campaign in parallel._POOLS  # built by the workers
    here = Campaign.open(folder, now=NOW)
    expected = [here.build(r) for r in unique_registrants(here.source)]
    assert [b.recipient for b in built] == [f"deltager{i}@example.org" for i in range(1100)]
    assert [b.data for b in built] == [b.data for b in expected]
