"""invitemail's benchmark (issue 4): throughput, latency and memory side by side, in one run.

    python bench/run.py [--registrants 10000] [--quick]

Run it with the Python of the virtual environment that has invitemail installed (it imports
invitemail to build the ceiling's messages and runs that environment's ``invitemail``). It
needs Postfix's ``smtp-sink`` (Debian: ``apt-get install postfix``) and, once, PyPI to
install mailmerge 2.3.0 into its own virtual environment under ``bench/.cache/``.

On one generated registrant list (Danish names, da and en), against an ``smtp-sink`` it
starts on a free loopback port, it measures:

(a) ``invitemail send EVENT --yes``: full messages (text, HTML, calendar, attachment),
    8 connections; wall clock of the whole command, start-up and check included;
(b) mailmerge 2.3.0 with an equivalent template: invitemail's own text and HTML as a
    multipart/alternative template, the name filled in, the calendar as an attachment (its
    only way of sending: one connection per message, one message at a time);
(c) the ceiling: raw aiosmtplib sending invitemail's own pre-built messages over 8 reused
    connections (only the sending is timed);
(d) (a), (b) and (c) with 50 ms added to every server reply by a delaying proxy, and (a)
    and (c) with 100 ms;
(e) peak RSS of ``send`` (to the sink) and ``preview --out`` for 100,000 registrants;
(f) ``check`` of the registrant list, and ``invitemail --help`` (best of 5).

(a) and (c) without latency are each run ``--repeat`` times (3), taking turns, and the
median of each is the figure.

The bench is split by part: ``scenarios`` (the table of measurements ``--only`` chooses
from), ``measure`` (each kind of measurement), ``people`` (the list and the event folders,
written with the tests' event builder), ``sink`` and ``child`` (the processes), ``mailmerge``,
``pace`` (issue 12) and ``report``.

It prints a table with the issue's targets, each marked met or not met, and writes
``bench/results.json``. Exit code: 0 when every measurement ran and passed its correctness
guard (targets missed are not an error), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from common import (
    CONNECTIONS,
    LATENCY,
    LATENCY_FAR,
    RESULTS,
    ROOT,
    BenchError,
    Measurement,
    compile_ahead,
    note,
)
from mailmerge import mailmerge_bin
from measure import Bench
from pace import pace_report, random_451, relay_cap
from report import machine, report, source_digest
from scenarios import BY_KEY, KEYS, LATENCIES, SCENARIOS, Key, at_latency, parse_only
from sink import DelayProxy, Sink, proxy_main


def run_scenarios(bench: Bench) -> None:
    """Every measurement chosen (all without ``--only``), in the table's order per kind."""
    n, n50, mm50, large = bench.n, bench.n50, bench.mm50, bench.large
    want = bench.wanted
    if want("relay_cap"):
        relay_cap(bench)
    if want("random_451"):
        random_451(bench)
    if bench.args.only and not any(BY_KEY[key].sink for key in bench.args.only):
        return  # nothing that needs the sink
    if want("b0") or want("b50"):
        note(f"mailmerge: {mailmerge_bin()}")  # installed before anything is timed
    bench.sink = sink = Sink(bench.work)
    note(f"smtp-sink on 127.0.0.1:{sink.port}; registrants: {n:,}; work: {bench.work}")
    try:
        if want("help"):
            bench.help("help", "invitemail --help (best of 5)")
        if want("check"):
            bench.check("check", f"invitemail check, {n:,} registrants", n)
        raw = any(want(s.key) for s in SCENARIOS if s.kind == "c")
        messages = bench.build_messages(n) if raw else []
        # (a) and (c) at 0 ms take a few seconds each, so a burst of load from elsewhere on
        # the machine moves one of them a lot: each is measured --repeat times, taking turns,
        # and the median of each is the figure.
        ceiling = f"(c) raw aiosmtplib, {CONNECTIONS} connections"
        samples: dict[Key, list[Measurement]] = {"a0": [], "c0": []}
        for i in range(1, bench.args.repeat + 1):
            if want("a0"):
                samples["a0"].append(bench.invitemail_send(
                    f"a0-{i}", f"(a) invitemail send, 0 ms, run {i}", n, sink.port))
            if want("c0"):
                samples["c0"].append(bench.raw(f"c0-{i}", f"{ceiling}, 0 ms, run {i}",
                                               messages, sink.port))
        medians: tuple[tuple[Key, str], ...] = (("a0", "(a) invitemail send, 0 ms"),
                                                ("c0", f"{ceiling}, 0 ms"))
        for key, label in medians:
            if samples[key]:
                bench.median(key, label, samples[key])
        if want("b0"):
            bench.mailmerge("b0", "(b) mailmerge 2.3.0, 0 ms", n, sink.port)
        for latency in LATENCIES:
            chosen = [s for s in at_latency(latency) if want(s.key)]
            if not chosen:
                continue
            proxy = DelayProxy(sink.port, latency)
            delay = f"{latency * 1000:.0f} ms"
            note(f"delaying proxy ({delay}) on 127.0.0.1:{proxy.port}")
            try:
                for scenario in chosen:
                    if scenario.kind == "c":
                        bench.raw(scenario.key, f"{ceiling}, {delay}", messages[:n50],
                                  proxy.port)
                    elif scenario.kind == "a":
                        bench.invitemail_send(scenario.key, f"(a) invitemail send, {delay}",
                                              n50, proxy.port)
                    elif scenario.kind == "b":
                        bench.mailmerge(scenario.key, f"(b) mailmerge 2.3.0, {delay}", mm50,
                                        proxy.port)
            finally:
                proxy.stop()
        del messages
        if want("e_send"):
            bench.invitemail_send("e_send", f"(e) invitemail send, {large:,} registrants",
                                  large, sink.port)
        if want("e_preview"):
            bench.preview("e_preview", f"(e) invitemail preview --out, {large:,} registrants",
                          large)
    finally:
        sink.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registrants", type=int, default=10_000,
                        help="registrants for (a), (b), (c) and check (default 10,000)")
    parser.add_argument("--quick", action="store_true",
                        help="(e) with 20,000 registrants instead of 100,000, and smaller "
                        "samples at 50 ms")
    parser.add_argument("--large", type=int, help="registrants for (e) (default 100,000; "
                        "20,000 with --quick)")
    parser.add_argument("--sample-50ms", type=int, help="registrants for (a) and (c) at "
                        "50 and 100 ms (default 1,000; 400 with --quick)")
    parser.add_argument("--mailmerge-50ms", type=int, help="registrants for mailmerge at "
                        "50 ms (default 100; 40 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of (a) and (c) at 0 ms, taking turns; the median of each "
                        "is the figure (default 3)")
    parser.add_argument("--only", type=parse_only, default=frozenset(), metavar="KEYS",
                        help="run only these measurements (comma-separated: "
                        f"{', '.join(KEYS)}); the results are not written to "
                        "bench/results.json")
    parser.add_argument("--proxy-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.proxy_child:
        upstream, delay = args.proxy_child.split(":")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(proxy_main(int(upstream), float(delay)))
        return 0
    args.large = args.large or (20_000 if args.quick else 100_000)
    args.sample_50ms = args.sample_50ms or (400 if args.quick else 1_000)
    args.mailmerge_50ms = args.mailmerge_50ms or (40 if args.quick else 100)
    if args.registrants < 1:
        parser.error("--registrants must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        import invitemail  # noqa: F401
    except ImportError:
        print(f"error: invitemail is not importable by {sys.executable}; run the bench with "
              "the Python of the virtual environment it is installed in", file=sys.stderr)
        return 1

    fresh = compile_ahead()  # invitemail as installed: its bytecode on disk
    if fresh:
        note(f"compiled {fresh} of invitemail's modules to bytecode first, as an install does")
    began = time.perf_counter()
    info = machine()
    info["source_at_start"] = source_digest()
    work = Path(tempfile.mkdtemp(prefix="invitemail-bench-"))
    bench = Bench(args, work)
    try:
        run_scenarios(bench)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            note(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - began
    info["source_at_end"] = source_digest()
    found = report(bench, info, elapsed)
    pace_report(bench)
    if not args.only:  # a partial run does not replace the full one on record
        RESULTS.write_text(json.dumps({
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": ["python", "bench/run.py", *args.argv],
            "machine": info,
            "registrants": bench.n, "large": bench.large, "sample_50ms": bench.n50,
            "mailmerge_50ms": bench.mm50, "connections": CONNECTIONS,
            "latency_s": [LATENCY, LATENCY_FAR],
            "elapsed_s": round(elapsed, 1),
            "measurements": {k: asdict(m) for k, m in bench.results.items()},
            "targets": [asdict(t) for t in found],
        }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nresults: {RESULTS.relative_to(ROOT)}")
    return 0 if all(m.ok for m in bench.results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
