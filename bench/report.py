"""The report: the measurements side by side, the issue's targets met or not, and what the
machine was."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import (
    CONNECTIONS,
    LATENCY,
    LATENCY_FAR,
    ROOT,
    SEED,
    TARGET_AB_0,
    TARGET_AB_50,
    TARGET_AC_0,
    TARGET_AC_50,
    TARGET_AC_100,
    TARGET_CHECK_S,
    TARGET_HELP_S,
    TARGET_RSS_MB,
    out,
)
from scenarios import Key

if TYPE_CHECKING:
    from measure import Bench


@dataclass
class Target:
    name: str
    value: float | None
    shown: str
    target: str
    met: bool | None
    caveat: str = ""


@dataclass(frozen=True)
class RatioTarget:
    """One ratio of two measurements' rates, and the least it should be."""

    name: str
    top: Key
    bottom: Key
    goal: float


RATIO_TARGETS: tuple[RatioTarget, ...] = (
    RatioTarget("(a)/(c), 0 ms", "a0", "c0", TARGET_AC_0),
    RatioTarget("(a)/(b), 0 ms", "a0", "b0", TARGET_AB_0),
    RatioTarget("(a)/(c), 50 ms", "a50", "c50", TARGET_AC_50),
    RatioTarget("(a)/(b), 50 ms", "a50", "b50", TARGET_AB_50),
    RatioTarget("(a)/(c), 100 ms", "a100", "c100", TARGET_AC_100),
)


def targets(bench: Bench) -> list[Target]:
    r = bench.results

    def rate(key: str) -> float | None:
        m = r.get(key)
        return m.rate if m is not None and m.ok else None

    def ratio(top: str, bottom: str) -> float | None:
        a, b = rate(top), rate(bottom)
        return a / b if a and b else None

    found: list[Target] = []
    for target in RATIO_TARGETS:
        value = ratio(target.top, target.bottom)
        shown = "-" if value is None else f"{value:.2f}x"
        found.append(Target(target.name, value, shown, f">= {target.goal:g}x",
                            None if value is None else value >= target.goal))
    caveat = "" if bench.large >= 100_000 else f"measured at {bench.large:,}, not 100,000"
    for key, name in (("e_send", "peak RSS, send"), ("e_preview", "peak RSS, preview --out")):
        m = r.get(key)
        value = m.peak_rss_mb if m is not None and m.ok else None
        found.append(Target(f"{name}, {bench.large:,}", value,
                            "-" if value is None else f"{value:.0f} MB",
                            f"<= {TARGET_RSS_MB:.0f} MB (100,000)",
                            None if value is None else value <= TARGET_RSS_MB, caveat))
    for key, name, goal in (("check", f"check, {bench.n:,} registrants", TARGET_CHECK_S),
                            ("help", "invitemail --help", TARGET_HELP_S)):
        m = r.get(key)
        value = m.seconds if m is not None and m.ok else None
        found.append(Target(name, value, "-" if value is None else f"{value:.2f} s",
                            f"< {goal:g} s", None if value is None else value < goal,
                            f"measured at {bench.n:,}, not 10,000"
                            if key == "check" and bench.n != 10_000 else ""))
    return found


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpus": os.cpu_count(), "cpu_model": model or platform.processor(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        info["invitemail"] = version("invitemail")
        info["aiosmtplib"] = version("aiosmtplib")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if head:
            info["git"] = head + (" (src/ has uncommitted changes)" if dirty else "")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        postconf = shutil.which("postconf", path="/usr/sbin:/sbin:" + os.environ["PATH"])
        if postconf:
            info["postfix"] = subprocess.run([postconf, "-h", "mail_version"],
                                             capture_output=True, text=True,
                                             timeout=10).stdout.strip()
    return info


def source_digest() -> str:
    """What is measured: a digest of src/ and templates/ (others may edit them meanwhile)."""
    digest = hashlib.sha256()
    for base in (ROOT / "src", ROOT / "templates"):
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                with contextlib.suppress(OSError):
                    digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def report(bench: Bench, info: dict[str, Any], elapsed: float,
           emit: Callable[[str], None] = out) -> list[Target]:
    args = bench.args
    emit("")
    emit(f"invitemail benchmark: {bench.n:,} registrants (Danish names, da/en, seed {SEED}), "
         f"{CONNECTIONS} connections, Postfix smtp-sink on 127.0.0.1")
    emit(f"machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['system']}, "
         f"Python {info['python']}; invitemail {info.get('invitemail', '?')}"
         f" ({info.get('git', 'no git')}), aiosmtplib {info.get('aiosmtplib', '?')}, "
         f"Postfix {info.get('postfix', '?')}")
    if info["source_at_start"] != info["source_at_end"]:
        emit(f"WARNING: src/ or templates/ changed while the bench ran (digest "
             f"{info['source_at_start']} at the start, {info['source_at_end']} at the end): "
             "the rows may measure different versions.")
    emit(f"command: {' '.join(['python', 'bench/run.py', *args.argv])}   "
         f"(took {elapsed / 60:.1f} min)")
    emit("")
    emit(f"{'measurement':<52} {'messages':>9} {'seconds':>9} {'msg/s':>9} "
         f"{'sending msg/s':>14} {'peak RSS':>9}")
    emit("-" * 107)
    for m in bench.results.values():
        seconds = f"{m.seconds:.2f}" if m.seconds is not None else "-"
        rate = f"{m.rate:,.1f}" if m.rate else "-"
        sending = f"{m.send_rate:,.1f}" if m.send_rate else "-"
        rss = f"{m.peak_rss_mb:.0f} MB" if m.peak_rss_mb else "-"
        messages = f"{m.messages:,}" if m.messages else "-"
        emit(f"{m.label:<52} {messages:>9} {seconds:>9} {rate:>9} {sending:>14} {rss:>9}"
             + ("" if m.ok else "  FAILED"))
    emit("")
    emit("msg/s: messages / wall clock of the whole command (start-up, reading, checking and")
    emit("  building included); for (c) only the sending is timed. sending msg/s: the rate")
    emit("  at which the sink accepted them, from its first to its last message.")
    emit(f"50 and 100 ms rows: a delaying proxy adds {LATENCY * 1000:.0f} or "
         f"{LATENCY_FAR * 1000:.0f} ms to every server reply; (a) and (c) send the first "
         f"{bench.n50:,}")
    emit(f"  registrants, (b) the first {bench.mm50:,} (mailmerge opens one connection per "
         "message: a few per second).")
    for key in ("a0", "c0"):
        medians = [n for n in getattr(bench.results.get(key), "notes", []) if "median" in n]
        if medians:
            emit(f"{key[0]} at 0 ms: the {medians[0]}.")
    if bench.large < 100_000:
        emit(f"(e) ran with {bench.large:,} registrants, not the target's 100,000.")
    emit("")
    found = targets(bench)
    if all(t.value is None for t in found):  # only the pace ran
        return found
    emit(f"{'target (issues 4, 17)':<40} {'measured':>10}  {'target':<22} result")
    emit("-" * 86)
    for t in found:
        result = "-" if t.met is None else ("met" if t.met else "NOT MET")
        emit(f"{t.name:<40} {t.shown:>10}  {t.target:<22} {result}"
             + (f" ({t.caveat})" if t.caveat else ""))
    phases: list[str] = []
    for key, delay in (("a0", "0 ms"), ("a50", "50 ms"), ("a100", "100 ms")):
        a, c = bench.results.get(key), bench.results.get("c" + key[1:])
        if a is not None and c is not None and a.ok and c.ok and a.send_rate and c.rate:
            phases.append(f"{a.send_rate / c.rate:.0%} at {delay}")
    if phases:
        emit("(a)'s sending phase alone (no start-up, no check) over (c): "
             + ", ".join(phases) + " (for information; the targets use the wall clock)")
    failed = [m for m in bench.results.values() if not m.ok]
    if failed:
        emit("")
        for m in failed:
            emit(f"FAILED: {m.label}: {m.error}")
    return found

