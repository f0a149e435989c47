"""The measurements themselves: :class:`Bench` runs each kind ((a) send, (b) mailmerge,
(c) raw aiosmtplib, (e) memory, (f) check and --help), checks its result and records it."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from child import run_child
from common import CONNECTIONS, BenchError, Measurement, note
from mailmerge import mailmerge_bin, mailmerge_folder
from people import Events, registrants
from scenarios import Key
from sink import Sink


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.results: dict[str, Measurement] = {}
        self.bin = Path(sys.executable).parent
        invitemail = self.bin / "invitemail"
        self.invitemail: list[str | Path] = [invitemail] if invitemail.exists() \
            else [sys.executable, "-m", "invitemail"]
        self.env = {k: v for k, v in os.environ.items() if k != "INVITEMAIL_SMTP_PASSWORD"}
        self.env.update(NO_COLOR="1", COLUMNS="120")
        # The record of what was sent (ledger.py) in the work folder, not the user's: the
        # bench's events reuse their uids from run to run, and a later run would be refused
        # as a resend of an event already sent from this machine.
        self.env["INVITEMAIL_DATA_DIR"] = str(work / "data")
        start = dt.date.today() + dt.timedelta(days=60)
        self.start = dt.datetime.combine(start, dt.time(14, 0))
        self.n = args.registrants
        self.large = args.large
        self.n50 = min(self.n, args.sample_50ms)
        self.mm50 = min(self.n, args.mailmerge_50ms)
        people = registrants(max(self.n, self.large))
        self.events = Events(work, people, self.start)
        self.people = people
        self.sink: Sink | None = None

    # -- helpers ---------------------------------------------------------------------------

    def record(self, m: Measurement) -> Measurement:
        self.results[m.key] = m
        status = "ok" if m.ok else f"FAILED: {m.error}"
        rate = f", {m.rate:,.1f} msg/s" if m.rate else ""
        rss = f", peak RSS {m.peak_rss_mb:,.0f} MB" if m.peak_rss_mb else ""
        seconds = f"{m.seconds:.2f} s" if m.seconds is not None else "-"
        note(f"{m.label}: {seconds}{rate}{rss} ({status})")
        return m

    def median(self, key: str, label: str, samples: list[Measurement]) -> Measurement:
        """The sample with the median rate, recorded as ``key`` (the others stay listed)."""
        for sample in samples:
            del self.results[sample.key]
        if not all(sample.ok for sample in samples):
            failed = next(sample for sample in samples if not sample.ok)
            return self.record(replace(failed, key=key, label=label))
        ranked = sorted(samples, key=lambda sample: sample.rate or 0.0)
        middle = ranked[len(ranked) // 2]
        runs = ", ".join(f"{sample.rate:,.1f}" for sample in samples)
        m = replace(middle, key=key, label=label,
                                notes=[*middle.notes, f"median of {len(samples)} runs "
                                       f"(msg/s, in order: {runs})"])
        return self.record(m)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def journal_counts(self, folder: Path) -> dict[str, int]:
        from invitemail.journal.store import Journal

        journal = Journal.open(folder, create=False)
        if journal is None:
            return {}
        with journal:
            return {state.value: n for state, n in journal.counts("invitation").items() if n}

    # -- (a) invitemail send -----------------------------------------------------------------

    def invitemail_send(self, key: str, label: str, count: int, port: int) -> Measurement:
        assert self.sink is not None
        folder = self.events.fresh(count, port)
        base = self.sink.count()
        child = run_child([*self.invitemail, "send", folder, "--yes"], log=self.log(key),
                          sink=self.sink, env=self.env)
        m = Measurement(key, label, count, child.seconds, count / child.seconds,
                        peak_rss_mb=child.peak_rss_mb)
        if child.send_seconds:
            m.send_rate = child.send_messages / child.send_seconds
        accepted = self.sink.wait_for(base + count) - base
        states = self.journal_counts(folder)
        if child.returncode != 0:
            m.ok, m.error = False, f"exit code {child.returncode}:\n{child.tail()}"
        elif states != {"sent": count} or accepted != count:
            m.ok, m.error = False, (f"journal says {states}, the sink accepted {accepted}, "
                                    f"expected {count} sent")
        else:
            m.notes.append(f"journal: {count} sent; sink accepted {accepted}")
        shutil.rmtree(folder)
        return self.record(m)

    # -- (b) mailmerge -----------------------------------------------------------------------

    def mailmerge(self, key: str, label: str, count: int, port: int) -> Measurement:
        assert self.sink is not None
        folder = mailmerge_folder(self.events, count, port)
        base = self.sink.count()
        child = run_child([mailmerge_bin(), "--no-dry-run", "--no-limit",
                           "--output-format", "raw",
                           "--template", folder / "mailmerge_template.txt",
                           "--database", folder / "mailmerge_database.csv",
                           "--config", folder / "mailmerge_server.conf"],
                          log=self.log(key), sink=self.sink, cwd=folder, env=self.env)
        m = Measurement(key, label, count, child.seconds, count / child.seconds,
                        peak_rss_mb=child.peak_rss_mb)
        if child.send_seconds:
            m.send_rate = child.send_messages / child.send_seconds
        accepted = self.sink.wait_for(base + count) - base
        if child.returncode != 0:
            m.ok, m.error = False, f"exit code {child.returncode}:\n{child.tail()}"
        elif accepted != count:
            m.ok, m.error = False, f"the sink accepted {accepted} of {count}"
        shutil.rmtree(folder)
        return self.record(m)

    # -- (c) raw aiosmtplib ------------------------------------------------------------------

    def build_messages(self, count: int) -> list[tuple[str, str, bytes]]:
        from invitemail.campaign import Campaign
        from invitemail.inputs.registrants import unique_registrants

        folder = self.events.fresh(count, 25)
        note(f"building {count:,} messages with invitemail for (c) (not timed)")
        began = time.perf_counter()
        campaign = Campaign.open(folder, now=dt.datetime.now(dt.UTC))
        sender = campaign.config.sender.address
        messages = [(sender, built.recipient, built.data)
                    for built in campaign.messages(unique_registrants(campaign.source))]
        seconds = time.perf_counter() - began
        note(f"built {len(messages):,} messages in {seconds:.1f} s "
             f"({len(messages) / seconds:,.0f}/s in this process, "
             f"{sum(len(m[2]) for m in messages) / len(messages) / 1024:.1f} KiB each)")
        shutil.rmtree(folder)
        if len(messages) != count:
            raise BenchError(f"built {len(messages)} messages for {count} registrants")
        return messages

    def raw(self, key: str, label: str, messages: list[tuple[str, str, bytes]],
            port: int) -> Measurement:
        assert self.sink is not None
        base = self.sink.count()
        m = Measurement(key, label, len(messages))
        try:
            seconds = asyncio.run(raw_send(messages, port, CONNECTIONS))
        except Exception as err:  # reported as this measurement's failure
            m.ok, m.error = False, f"{type(err).__name__}: {err}"
            return self.record(m)
        m.seconds, m.rate = seconds, len(messages) / seconds
        accepted = self.sink.wait_for(base + len(messages)) - base
        if accepted != len(messages):
            m.ok, m.error = False, f"the sink accepted {accepted} of {len(messages)}"
        return self.record(m)

    # -- (e) memory, (f) check and --help ----------------------------------------------------

    def preview(self, key: str, label: str, count: int) -> Measurement:
        folder = self.events.fresh(count, 25)
        out = self.work / "preview-out"
        child = run_child([*self.invitemail, "preview", folder, "--out", out],
                          log=self.log(key), env=self.env)
        m = Measurement(key, label, count, child.seconds, count / child.seconds,
                        peak_rss_mb=child.peak_rss_mb)
        written = sum(1 for _ in out.glob("*.eml")) if out.exists() else 0
        if child.returncode != 0:
            m.ok, m.error = False, f"exit code {child.returncode}:\n{child.tail()}"
        elif written != count:
            m.ok, m.error = False, f"wrote {written} .eml files for {count} registrants"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(folder)
        return self.record(m)

    def check(self, key: str, label: str, count: int) -> Measurement:
        folder = self.events.fresh(count, 25)
        child = run_child([*self.invitemail, "check", folder], log=self.log(key),
                          env=self.env)
        m = Measurement(key, label, count, child.seconds, count / child.seconds,
                        peak_rss_mb=child.peak_rss_mb)
        if child.returncode != 0:
            m.ok, m.error = False, f"exit code {child.returncode}:\n{child.tail()}"
        shutil.rmtree(folder)
        return self.record(m)

    def help(self, key: str, label: str, runs: int = 5) -> Measurement:
        times = []
        m = Measurement(key, label)
        for i in range(runs):
            child = run_child([*self.invitemail, "--help"], log=self.log(f"{key}-{i}"),
                              env=self.env)
            if child.returncode != 0:
                m.ok, m.error = False, f"exit code {child.returncode}:\n{child.tail()}"
                return self.record(m)
            times.append(child.seconds)
            m.peak_rss_mb = child.peak_rss_mb
        m.seconds = min(times)
        m.notes.append("runs: " + ", ".join(f"{t:.3f}" for t in times))
        return self.record(m)

    def wanted(self, key: Key) -> bool:
        return not self.args.only or key in self.args.only


async def raw_send(messages: Sequence[tuple[str, str, bytes]], port: int,
                   connections: int) -> float:
    """Send every message over ``connections`` reused connections; the seconds it took
    (connecting included, building not: the messages are already bytes)."""
    from aiosmtplib import SMTP

    clients = [SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False,
                    timeout=60) for _ in range(connections)]
    queue: Iterator[tuple[str, str, bytes]] = iter(messages)

    async def worker(client: SMTP) -> None:
        await client.connect()
        for sender, recipient, data in queue:  # one shared iterator: no gaps, no duplicates
            options = [] if data.isascii() else ["BODY=8BITMIME"]
            await client.sendmail(sender, [recipient], data, mail_options=options)
        await client.quit()

    began = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    return time.perf_counter() - began
