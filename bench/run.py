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

It prints a table with the issue's targets, each marked met or not met, and writes
``bench/results.json``. Exit code: 0 when every measurement ran and passed its correctness
guard (targets missed are not an error), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results.json"
EXAMPLE = ROOT / "examples" / "djoef-webinar"
MAILMERGE = "mailmerge==2.3.0"
CONNECTIONS = 8
LATENCY = 0.050  # seconds added to every chunk the server sends, in (d)
LATENCY_FAR = 0.100  # and in (d) again, for (a) and (c): a relay further away (issue 17)
SEED = 20261210
CHILD_TIMEOUT = 3600.0  # seconds; a measurement that takes longer is killed and fails

# Targets from issue 4 (ratios from one run, so the machine's noise cancels).
# Issue 17 (pipelining) raised (a)/(c) from issue 4's 0.60 and 0.90: invitemail over the
# ceiling of raw aiosmtplib, which pays four round trips per message where it pays one.
TARGET_AC_0 = 1.2
TARGET_AB_0 = 3.0
TARGET_AC_50 = 2.0
TARGET_AC_100 = 2.0
TARGET_AB_50 = 10.0
TARGET_RSS_MB = 150.0
TARGET_CHECK_S = 3.0
TARGET_HELP_S = 0.3


class BenchError(Exception):
    """The benchmark cannot run (a missing tool, a failed set-up)."""


def out(text: str = "") -> None:
    """A line of the results, on stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """Progress on stderr; the results go to stdout."""
    print(f"... {text}", file=sys.stderr, flush=True)


# -- the registrant list ---------------------------------------------------------------------

DA_FIRST = ("Søren", "Åse", "Mette", "Jens", "Karen", "Niels", "Birgitte", "Rasmus", "Ingrid",
            "Ørjan", "Signe", "Thomas", "Lise", "Jonas", "Anne-Marie", "Mads", "Freja", "Ida",
            "Bjørn", "Kirsten", "Jørgen", "Helle", "Poul", "Maja", "Frederik", "Lærke",
            "Asger", "Aksel", "Sofie", "Villads", "Clara", "Æsa", "Søs", "Malthe", "Gry",
            "Bent", "Dorthe", "Tove", "Ulla", "Carsten")
DA_LAST = ("Jørgensen", "Sørensen", "Møller", "Østergaard", "Blæsbjerg", "Bøgh", "Ågård",
           "Frølund", "Kjær", "Læssøe", "Bækgaard", "Nørgaard", "Holm", "Dahl", "Hansen",
           "Nielsen", "Pedersen", "Thygesen", "Skræddergaard", "Brønnum", "Krøyer",
           "Ærenlund", "Søndergaard", "Vestergaard", "Lund", "Christensen", "Kierkegaard Ærø",
           "Bøgh Andersen", "Højgaard", "Dræby")
EN_FIRST = ("Sarah", "Lukas", "Priya", "Emma", "James", "Olivia", "Mohammed", "Chloe",
            "Daniel", "Aisha", "Liam", "Hannah", "Mateo", "Grace", "Noah", "Zoë")
EN_LAST = ("Thompson", "Becker", "Raman", "Walsh", "O'Brien", "Fischer", "Khan", "Murphy",
           "Schmidt", "Okafor", "Novak", "Jensen", "Larsen", "García")
ORGS = ("Ærø Kommune", "Møller & Søn ApS", "Region Sjælland", "Østergaard Advokater",
        "Københavns Universitet", "Aarhus Universitet", "Nordic Data Ltd", "Gentofte Kommune",
        "Dansk Erhverv", "Sørensen Rådgivning", "Ågård Revision", "Læssøe IT",
        "Walsh & Partners", "Roskilde Kommune", "Frederiksberg Kommune", "Aalborg Universitet")
DOMAINS = ("example.org", "example.com", "example.net")
_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa",
                        "'": "", " ": "."})


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str
    language: str
    organisation: str


def registrants(count: int, seed: int = SEED) -> list[Person]:
    """``count`` registrants, the same for a given seed; unique ASCII addresses."""
    rng = random.Random(seed)
    people = []
    for i in range(count):
        english = rng.random() < 0.25
        first = rng.choice(EN_FIRST if english and rng.random() < 0.8 else DA_FIRST)
        last = rng.choice(EN_LAST if english and rng.random() < 0.8 else DA_LAST)
        local = unicodedata.normalize("NFKD", f"{first}.{last}".translate(_ASCII).lower())
        local = "".join(c for c in local if c.isascii() and (c.isalnum() or c in ".-"))
        people.append(Person(f"{first} {last}", f"{local}.{i}@{DOMAINS[i % len(DOMAINS)]}",
                             "en" if english else "da", rng.choice(ORGS)))
    return people


def write_registrants(path: Path, people: Sequence[Person]) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("Navn", "E-mail", "Sprog", "Organisation"))
        writer.writerows((p.name, p.email, p.language, p.organisation) for p in people)


def event_toml(port: int, start: dt.datetime) -> str:
    """The example event, pointed at 127.0.0.1:``port`` without TLS or login, 8 connections,
    no rate cap, starting at ``start`` (local time, in the future)."""
    text = (EXAMPLE / "event.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^start = .*$", f"start = {start:%Y-%m-%dT%H:%M:%S}", text, count=1)
    head = text.split("\n[smtp]")[0]
    return (f"{head}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n"
            f"timeout = 60\n\n[sending]\nconcurrency = {CONNECTIONS}\nmax_attempts = 5\n"
            f"max_consecutive_failures = 20\n")


class Events:
    """Fresh event folders (a rerun of ``send`` on one folder sends nothing)."""

    def __init__(self, work: Path, people: Sequence[Person], start: dt.datetime) -> None:
        self.work = work
        self.people = people
        self.start = start
        self.lists: dict[int, Path] = {}
        self.made = 0

    def registrant_file(self, count: int) -> Path:
        if count not in self.lists:
            path = self.work / f"registrants-{count}.csv"
            write_registrants(path, self.people[:count])
            self.lists[count] = path
        return self.lists[count]

    def fresh(self, count: int, port: int) -> Path:
        self.made += 1
        folder = self.work / f"event-{self.made:02d}-{count}"
        folder.mkdir()
        # Each folder is an event of its own: send refuses a folder of an event it has sent
        # from elsewhere (ledger.py).
        toml = re.sub(r'(?m)^uid = ".*"$', f'uid = "bench-{self.made}-{count}@example.org"',
                      event_toml(port, self.start), count=1)
        (folder / "event.toml").write_text(toml, encoding="utf-8")
        shutil.copyfile(self.registrant_file(count), folder / "registrants.csv")
        return folder


# -- processes: the sink, the delaying proxy, measured children ------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_smtp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(512).startswith(b"220"):
                    conn.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"nothing answers SMTP on 127.0.0.1:{port}")
        time.sleep(0.05)


def find_smtp_sink() -> str:
    for candidate in ("/usr/sbin/smtp-sink", shutil.which("smtp-sink"),
                      shutil.which("smtp-sink", path="/usr/sbin:/usr/local/sbin:/sbin")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BenchError("Postfix's smtp-sink is not installed: run `apt-get install postfix` "
                     "(Debian/Ubuntu; the default \"No configuration\" set-up is enough)")


class Sink:
    """``smtp-sink`` on a free loopback port. Its ``-c`` counters count accepted messages
    (``mesg=N`` on its stdout), which is how the bench checks each run's message count and
    times the sending phase from outside the sender."""

    def __init__(self, work: Path) -> None:
        self.binary = find_smtp_sink()
        self.port = free_port()
        self.counter_file = work / "smtp-sink.out"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
        self._out = self.counter_file.open("wb")
        self.process = subprocess.Popen(
            [self.binary, "-c", *user, f"127.0.0.1:{self.port}", "1000"],
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._offset = 0
        self._count = 0
        self._tail = b""
        try:
            wait_for_smtp(self.port)
        except BenchError:
            self.stop()
            raise BenchError(f"smtp-sink did not start: "
                             f"{self.counter_file.read_text(errors='replace')[-500:]}") from None

    def count(self) -> int:
        """Messages accepted so far (reads only what the sink wrote since the last call)."""
        with self.counter_file.open("rb") as file:
            file.seek(self._offset)
            new = file.read()
        self._offset += len(new)
        found = re.findall(rb"mesg=(\d+)", self._tail + new)
        if found:
            self._count = int(found[-1])
        self._tail = (self._tail + new)[-64:]
        return self._count

    def wait_for(self, total: int, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while (seen := self.count()) < total and time.monotonic() < deadline:
            time.sleep(0.02)
        return seen

    def stop(self) -> None:
        stop_process(self.process)
        self._out.close()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a helper process, and kill it if it does not stop within 5 s."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.poll() is None:
            process.kill()
            process.wait()


class DelayProxy:
    """This script run as ``--proxy-child``: a loopback TCP proxy in front of the sink that
    delays what the server sends by ``delay`` seconds per chunk, in order (its own process,
    so that it takes no CPU from the sender it slows down)."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--proxy-child",
             f"{upstream}:{delay}"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise BenchError(f"the delaying proxy did not start ({line!r})")
        self.port = int(line)
        wait_for_smtp(self.port)

    def stop(self) -> None:
        stop_process(self.process)


async def _proxy_main(upstream: int, delay: float) -> None:
    loop = asyncio.get_running_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   lag: float) -> None:
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                due, data = await chunks.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        forwarding = asyncio.create_task(forward())
        try:
            while data := await reader.read(65536):
                chunks.put_nowait((loop.time() + lag, data))
        except OSError:
            pass
        chunks.put_nowait((loop.time() + lag, b""))
        with contextlib.suppress(OSError):
            await forwarding

    async def handle(client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer, 0.0),
                             pipe(server_reader, client_writer, delay),
                             return_exceptions=True)
        for writer in (client_writer, server_writer):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1000)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


@dataclass
class Child:
    """One measured child process."""

    returncode: int
    seconds: float
    peak_rss_mb: float
    log: Path
    send_seconds: float | None = None  # first to last message accepted by the sink
    send_messages: int = 0  # messages accepted in that span

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


# The measured command runs under this launcher, a fresh small process: a child's peak RSS
# (ru_maxrss) on Linux starts from its parent's RSS at the fork, and the bench's own process
# holds thousands of built messages. The launcher's child inherits only the launcher's few MB.
LAUNCHER = """\
import os, sys, time
result, command = sys.argv[1], sys.argv[2:]
began = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    except OSError as err:
        print(f"cannot run {command[0]}: {err}", file=sys.stderr)
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - began
with open(result, "w") as file:
    file.write(f"{os.waitstatus_to_exitcode(status)} {seconds!r} {usage.ru_maxrss}\\n")
"""


def run_child(command: Sequence[str | Path], *, log: Path, sink: Sink | None = None,
              cwd: Path | None = None, env: dict[str, str] | None = None) -> Child:
    """Run ``command`` to completion: its wall clock and its own peak RSS (measured by
    :data:`LAUNCHER`), and, watching the sink's counter, when the first and the last message
    arrived."""
    base = sink.count() if sink is not None else 0
    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    result = log.with_suffix(".rusage")
    result.unlink(missing_ok=True)
    with log.open("wb") as out:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(result), *map(str, command)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            start_new_session=True)
        try:
            while True:
                done = process.poll() is not None
                now = time.perf_counter()
                if sink is not None:
                    seen = sink.count()
                    if seen > base:
                        if first is None:
                            first = (now, seen)
                        if last is None or seen > last[1]:
                            last = (now, seen)
                if done:
                    break
                if now - began > CHILD_TIMEOUT:
                    note(f"{command[0]} ran longer than {CHILD_TIMEOUT:.0f} s: killed")
                    os.killpg(process.pid, signal.SIGKILL)
                time.sleep(0.02)
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        wall = time.perf_counter() - began
    try:
        code, seconds, maxrss = result.read_text().split()
        child = Child(int(code), float(seconds), int(maxrss) / 1024, log)
    except (OSError, ValueError):
        child = Child(process.returncode or -1, wall, 0.0, log)
    if first is not None and last is not None and last[0] > first[0]:
        child.send_seconds = last[0] - first[0]
        child.send_messages = last[1] - first[1]
    return child


# -- the measurements ------------------------------------------------------------------------


@dataclass
class Measurement:
    key: str
    label: str
    messages: int = 0
    seconds: float | None = None
    rate: float | None = None  # messages per second over ``seconds``
    send_rate: float | None = None  # messages per second while messages were arriving
    peak_rss_mb: float | None = None
    ok: bool = True
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    # issue 12: achieved/cap and refused, second half and whole run; or the time ratio
    pace: list[float] = field(default_factory=list)


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

    def mailmerge_bin(self) -> Path:
        venv = CACHE / "mailmerge-2.3.0"
        binary = venv / "bin" / "mailmerge"
        if binary.exists():
            version = subprocess.run([binary, "--version"], capture_output=True, text=True)
            if "2.3.0" in version.stdout + version.stderr:
                return binary
        note(f"installing {MAILMERGE} into {venv} (once)")
        shutil.rmtree(venv, ignore_errors=True)
        CACHE.mkdir(exist_ok=True)
        for command in ([sys.executable, "-m", "venv", venv],
                        [venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                         "--disable-pip-version-check", MAILMERGE]):
            done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
            if done.returncode != 0:
                raise BenchError(f"could not install {MAILMERGE}: {' '.join(map(str, command))}"
                                 f"\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
        return binary

    def mailmerge_folder(self, count: int, port: int) -> Path:
        """An equivalent mailmerge job: the same people, and a template that makes the same
        kind of message: To/From/Reply-To/Subject, a text and an HTML part with invitemail's
        own content (the name filled in by mailmerge), and the calendar as an attachment."""
        from email import message_from_bytes, policy

        from invitemail.campaign import Campaign
        from invitemail.inputs.registrants import Registrant

        self.events.made += 1
        folder = self.work / f"mailmerge-{self.events.made:02d}-{count}"
        folder.mkdir()
        probe = self.events.fresh(1, port)
        campaign = Campaign.open(probe, now=dt.datetime.now(dt.UTC))
        shutil.rmtree(probe)
        sender = campaign.config.sender
        sentinel = "Zzname Placeholder"
        parts: dict[str, dict[str, str]] = {}
        subjects: dict[str, str] = {}
        calendar = b""
        for language in ("da", "en"):
            built = campaign.build(Registrant(
                line=2, email="probe@example.org", name=sentinel, first_name="", last_name="",
                language=language, join_url="", timezone="", fields={}))
            message = message_from_bytes(built.data, policy=policy.default)
            subjects[language] = built.subject
            parts[language] = {}
            for subtype in ("plain", "html"):
                body = message.get_body(preferencelist=(subtype,))
                assert body is not None
                text = body.get_content().replace("\r\n", "\n")
                # Static text is raw for mailmerge's Jinja; only the name is a variable.
                parts[language][subtype] = "{% raw %}" + text.replace(
                    sentinel, "{% endraw %}{{name}}{% raw %}") + "{% endraw %}"
            calendar = next(p for p in message.walk()
                            if p.get_content_type() == "text/calendar").get_payload(decode=True)
        (folder / "invite.ics").write_bytes(calendar)
        reply_to = sender.reply_to.address if sender.reply_to else sender.address

        def by_language(key: str) -> str:
            return (f'{{% if language == "da" %}}{parts["da"][key]}{{% else %}}'
                    f"{parts['en'][key]}{{% endif %}}")

        template = f"""\
TO: "{{{{name}}}}" <{{{{email}}}}>
FROM: {sender.name} <{sender.address}>
REPLY-TO: {reply_to}
SUBJECT: {{% if language == "da" %}}{subjects["da"]}{{% else %}}{subjects["en"]}{{% endif %}}
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alternative"
ATTACHMENT: invite.ics

--alternative
Content-Type: text/plain; charset=utf-8

{by_language("plain")}
--alternative
Content-Type: text/html; charset=utf-8

{by_language("html")}
--alternative--
"""
        (folder / "mailmerge_template.txt").write_text(template, encoding="utf-8")
        with (folder / "mailmerge_database.csv").open("w", encoding="utf-8",
                                                      newline="") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(("email", "name", "language", "organisation"))
            writer.writerows((p.email, p.name, p.language, p.organisation)
                             for p in self.people[:count])
        # mailmerge 2.3.0's server configuration: no `security` key means a plain SMTP
        # connection without login; ratelimit 0 is unlimited.
        (folder / "mailmerge_server.conf").write_text(
            f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n",
            encoding="utf-8")
        return folder

    def mailmerge(self, key: str, label: str, count: int, port: int) -> Measurement:
        assert self.sink is not None
        folder = self.mailmerge_folder(count, port)
        base = self.sink.count()
        child = run_child([self.mailmerge_bin(), "--no-dry-run", "--no-limit",
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

    # -- the run -----------------------------------------------------------------------------

    def wanted(self, key: str) -> bool:
        return not self.args.only or key in self.args.only

    def run(self) -> None:
        n, n50, mm50, large = self.n, self.n50, self.mm50, self.large
        want = self.wanted
        if want("relay_cap"):
            relay_cap(self)
        if want("random_451"):
            random_451(self)
        if self.args.only and not self.args.only - {"relay_cap", "random_451"}:
            return  # nothing that needs the sink
        if want("b0") or want("b50"):
            mailmerge = self.mailmerge_bin()  # installed before anything is timed
            note(f"mailmerge: {mailmerge}")
        self.sink = sink = Sink(self.work)
        note(f"smtp-sink on 127.0.0.1:{sink.port}; registrants: {n:,}; work: {self.work}")
        try:
            if want("help"):
                self.help("help", "invitemail --help (best of 5)")
            if want("check"):
                self.check("check", f"invitemail check, {n:,} registrants", n)
            messages = self.build_messages(n) if any(map(want, ("c0", "c50", "c100"))) else []
            # (a) and (c) at 0 ms take a few seconds each, so a burst of load from elsewhere
            # on the machine moves one of them a lot: each is measured --repeat times,
            # taking turns, and the median of each is the figure.
            samples: dict[str, list[Measurement]] = {"a0": [], "c0": []}
            for i in range(1, self.args.repeat + 1):
                if want("a0"):
                    samples["a0"].append(self.invitemail_send(
                        f"a0-{i}", f"(a) invitemail send, 0 ms, run {i}", n, sink.port))
                if want("c0"):
                    samples["c0"].append(self.raw(
                        f"c0-{i}", f"(c) raw aiosmtplib, {CONNECTIONS} connections, 0 ms, "
                        f"run {i}", messages, sink.port))
            for key, label in (("a0", "(a) invitemail send, 0 ms"),
                               ("c0", f"(c) raw aiosmtplib, {CONNECTIONS} connections, 0 ms")):
                if samples[key]:
                    self.median(key, label, samples[key])
            if want("b0"):
                self.mailmerge("b0", "(b) mailmerge 2.3.0, 0 ms", n, sink.port)
            for latency, suffix in ((LATENCY, "50"), (LATENCY_FAR, "100")):
                keys = [f"{kind}{suffix}" for kind in ("c", "a", "b") if suffix == "50"
                        or kind != "b"]
                if not any(map(want, keys)):
                    continue
                proxy = DelayProxy(sink.port, latency)
                delay = f"{latency * 1000:.0f} ms"
                note(f"delaying proxy ({delay}) on 127.0.0.1:{proxy.port}")
                try:
                    if want(f"c{suffix}"):
                        self.raw(f"c{suffix}", f"(c) raw aiosmtplib, {CONNECTIONS} connections, "
                                 f"{delay}", messages[:n50], proxy.port)
                    if want(f"a{suffix}"):
                        self.invitemail_send(f"a{suffix}", f"(a) invitemail send, {delay}", n50,
                                             proxy.port)
                    if want(f"b{suffix}"):
                        self.mailmerge(f"b{suffix}", f"(b) mailmerge 2.3.0, {delay}", mm50,
                                       proxy.port)
                finally:
                    proxy.stop()
            del messages
            if want("e_send"):
                self.invitemail_send("e_send", f"(e) invitemail send, {large:,} registrants",
                                     large, sink.port)
            if want("e_preview"):
                self.preview("e_preview",
                             f"(e) invitemail preview --out, {large:,} registrants", large)
        finally:
            sink.stop()


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


# -- the pace against a relay that caps its rate (issue 12) ----------------------------------

PACE_CAPS = (5, 25, 100)  # messages per second the capping relay allows
PACE_SECONDS = 30.0  # each cap's run sends this many seconds' worth of messages at the cap
NOISE_RATE = 10.0  # sending.rate of the random-451 run
NOISE_MESSAGES = 200  # 20 s at NOISE_RATE
NOISE_UNPACED = 120  # the report's run: no rate, as fast as the relay takes them
# The unpaced run's relay answers every command this late (a relay nearby: a hosted one over
# the internet takes 20-50 ms, a relay on the same LAN 1-2 ms): without any, 120 messages
# take a tenth of a second fault-free and the ratio says more about the retry delays than
# about the run.
NOISE_LATENCY = 0.010
NOISE_REPEAT = 5  # unpaced runs of each kind, taking turns; the medians are compared
TARGET_CAP = 0.85
TARGET_REFUSED = 0.05
TARGET_NOISE = 2.0


class CapRelay:
    """An aiosmtpd handler: a token bucket of ``cap`` messages a second, ``cap`` deep (one
    second's worth), answering ``451 4.7.0 Rate limit exceeded`` above it; and, at random,
    ``noise`` of the messages answered ``451 4.3.0 Temporary failure``."""

    def __init__(self, cap: float | None, noise: float = 0.0, seed: int = SEED) -> None:
        self.cap = cap
        self.noise = noise
        self.rng = random.Random(seed)
        self.tokens = cap or 0.0
        self.filled = time.monotonic()
        self.accepted: list[float] = []
        self.refused: list[float] = []  # 4.7.0, rate
        self.failed: list[float] = []  # 4.3.0, random

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        if self.noise and self.rng.random() < self.noise:
            self.failed.append(now)
            return "451 4.3.0 Temporary failure"
        if self.cap is not None:
            self.tokens = min(self.cap, self.tokens + (now - self.filled) * self.cap)
            self.filled = now
            if self.tokens < 1.0:
                self.refused.append(now)
                return "451 4.7.0 Rate limit exceeded"
            self.tokens -= 1.0
        self.accepted.append(now)
        return "250 2.0.0 OK"


def relay_run(count: int, *, cap: float | None = None, noise: float = 0.0,
              rate: float | None = None, latency: float = 0.0
              ) -> tuple[CapRelay, float, float, int]:
    """Send ``count`` small messages through invitemail's transport (8 connections) to a
    :class:`CapRelay` on 127.0.0.1 (behind a :class:`DelayProxy` adding ``latency`` seconds
    to every reply, if not 0); the relay, when the run began (``time.monotonic``), the
    seconds it took and the messages sent."""
    from aiosmtpd.controller import Controller

    from invitemail.inputs.config import Sending, Smtp
    from invitemail.send.transport import Envelope, NoHooks, deliver

    handler = CapRelay(cap, noise)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    proxy = DelayProxy(controller.port, latency) if latency else None
    try:
        envelopes = (Envelope(key=str(i), sender="bench@example.org",
                              recipient=f"r{i}@example.org", crlf=True,
                              data=f"Subject: {i}\r\n\r\nHello {i}\r\n".encode())
                     for i in range(count))
        port = proxy.port if proxy is not None else controller.port
        smtp = Smtp(host="127.0.0.1", port=port, security="none", timeout=30.0)
        sending = Sending(concurrency=CONNECTIONS, rate=rate, max_attempts=30,
                          max_consecutive_failures=10_000)
        handler.filled = began = time.monotonic()
        report = asyncio.run(deliver(envelopes, smtp=smtp, sending=sending, password=None,
                                     hooks=NoHooks(), local_hostname="bench.test"))
        return handler, began, time.monotonic() - began, report.sent
    finally:
        if proxy is not None:
            proxy.stop()
        controller.stop()


def relay_cap(bench: Bench) -> None:
    for cap, rate in itertools.product(PACE_CAPS, (None, 2.0)):
        count = int(cap * PACE_SECONDS)
        configured = f"rate {rate * cap:g}/s" if rate else "no rate"
        key = f"relay_cap_{cap}" + (f"_rate_{rate * cap:g}" if rate else "")
        label = f"relay cap {cap} msg/s, {configured}, {count:,} messages"
        m = Measurement(key, label, count)
        relay, began, seconds, sent = relay_run(count, cap=cap,
                                                rate=rate * cap if rate else None)
        m.seconds, m.rate = seconds, count / seconds
        half = began + seconds / 2  # the steady state: the second half of the run
        steady = sum(1 for t in relay.accepted if t >= half) / (seconds / 2)
        late_refused = sum(1 for t in relay.refused if t >= half)
        late_attempts = late_refused + sum(1 for t in relay.accepted if t >= half)
        attempts = len(relay.accepted) + len(relay.refused)
        m.notes.append(f"achieved/cap {steady / cap:.0%} (second half), {m.rate / cap:.0%} "
                       f"(whole run); refused {late_refused}/{late_attempts} "
                       f"({late_refused / max(1, late_attempts):.1%}, second half), "
                       f"{len(relay.refused)}/{attempts} ({len(relay.refused) / attempts:.1%}, "
                       "whole run)")
        m.send_rate = steady
        m.pace = [steady / cap, late_refused / max(1, late_attempts),
                  m.rate / cap, len(relay.refused) / attempts]
        if sent != count:
            m.ok, m.error = False, f"{sent} of {count} sent"
        bench.record(m)


def random_451(bench: Bench) -> None:
    """20% of DATA answered ``451 4.3.0``, against the same run fault-free: paced (one run
    each) and unpaced behind :data:`NOISE_LATENCY` per reply (:data:`NOISE_REPEAT` runs
    each, medians: a run that short moves with where the few unlucky messages fall)."""
    label = f"random 451 (20%), rate {NOISE_RATE:g}/s, {NOISE_MESSAGES} messages"
    clean = Measurement("random_451_clean", f"{label}: fault-free", NOISE_MESSAGES)
    _, _, clean.seconds, sent_clean = relay_run(NOISE_MESSAGES, rate=NOISE_RATE)
    _show(bench.record(_noise_row(clean, [clean.seconds], None, sent_clean, 0, 0)))
    m = Measurement("random_451", f"{label}: 20% 451 4.3.0", NOISE_MESSAGES)
    relay, _, m.seconds, sent = relay_run(NOISE_MESSAGES, rate=NOISE_RATE, noise=0.2)
    refused = len(relay.failed)
    _show(bench.record(_noise_row(m, [m.seconds], clean.seconds, min(sent, sent_clean),
                                  refused, refused + len(relay.accepted))))

    latency = f"{NOISE_LATENCY * 1000:g} ms per reply"
    label = f"random 451 (20%), no rate, {latency}, {NOISE_UNPACED} messages"
    note(f"unpaced: {NOISE_REPEAT} runs of each, fault-free and 20% 451, taking turns; the "
         f"relay answers every command after {latency}")
    times: dict[bool, list[float]] = {False: [], True: []}
    sent, refused, attempts = NOISE_UNPACED, 0, 0
    for _ in range(NOISE_REPEAT):
        for noisy in (False, True):
            relay, _, seconds, done = relay_run(NOISE_UNPACED, noise=0.2 if noisy else 0.0,
                                                latency=NOISE_LATENCY)
            times[noisy].append(seconds)
            sent = min(sent, done)
            if noisy:
                refused += len(relay.failed)
                attempts += len(relay.failed) + len(relay.accepted)
    clean = Measurement("random_451_unpaced_clean", f"{label}: fault-free", NOISE_UNPACED)
    _show(bench.record(_noise_row(clean, times[False], None, sent, 0, 0)))
    m = Measurement("random_451_unpaced", f"{label}: 20% 451 4.3.0", NOISE_UNPACED)
    clean_median = statistics.median(times[False])
    _show(bench.record(_noise_row(m, times[True], clean_median, sent, refused, attempts)))


def _show(m: Measurement) -> None:
    for text in m.notes:
        note(f"    {text}")


def _noise_row(m: Measurement, runs: list[float], clean: float | None, sent: int,
               refused: int, attempts: int) -> Measurement:
    """``m`` with the median of ``runs`` and, against the fault-free median ``clean``, the
    time ratio the pace report judges."""
    m.seconds = statistics.median(runs)
    m.rate = m.messages / m.seconds
    if len(runs) > 1:
        m.notes.append("runs: " + ", ".join(f"{s:.2f}" for s in runs) + " s (median "
                       f"{m.seconds:.2f} s)")
    if clean is not None:
        ratio = m.seconds / clean
        every = " in all runs" if len(runs) > 1 else ""
        m.notes.append(f"time / fault-free time: {ratio:.2f} ({refused} refusals of "
                       f"{attempts} attempts{every})")
        m.pace = [ratio]
    if sent != m.messages:
        m.ok, m.error = False, f"{sent} of {m.messages} sent"
    return m


def pace_report(bench: Bench, emit: Callable[[str], None] = out) -> None:
    rows = [m for m in bench.results.values() if m.pace]
    if not rows:
        return
    emit("")
    emit(f"{'pace (issue 12)':<52} {'measured':>54}  {'target':<22} result")
    emit("-" * 142)
    for m in rows:
        values = m.pace
        if len(values) == 4:
            achieved, refused, whole, whole_refused = values
            met = achieved >= TARGET_CAP and refused <= TARGET_REFUSED
            shown = (f"{achieved:.0%} of cap, {refused:.1%} refused (whole run {whole:.0%}, "
                     f"{whole_refused:.1%})")
            goal = f">= {TARGET_CAP:.0%}, <= {TARGET_REFUSED:.0%} refused"
        else:
            ratio = values[0]
            met = ratio <= TARGET_NOISE if len(values) == 1 else None
            shown = f"{ratio:.2f}x fault-free"
            goal = f"<= {TARGET_NOISE:g}x" if met is not None else "(information)"
        result = "-" if met is None else "met" if met else "NOT MET"
        emit(f"{m.label:<52} {shown:>54}  {goal:<22} {result}")
    emit("achieved: messages the relay accepted per second over the second half of the run; "
         "refused:")
    emit("  451 4.7.0 over attempts in that half. Random 451: the run's time over the same "
         "run's")
    emit(f"  fault-free time; unpaced: medians of {NOISE_REPEAT} runs each, the relay "
         f"answering every command after {NOISE_LATENCY * 1000:g} ms.")


# -- the report ------------------------------------------------------------------------------


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
    top: str  # measurement key
    bottom: str
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
    sending = []
    for key, delay in (("a0", "0 ms"), ("a50", "50 ms"), ("a100", "100 ms")):
        a, c = bench.results.get(key), bench.results.get("c" + key[1:])
        if a is not None and c is not None and a.ok and c.ok and a.send_rate and c.rate:
            sending.append(f"{a.send_rate / c.rate:.0%} at {delay}")
    if sending:
        emit("(a)'s sending phase alone (no start-up, no check) over (c): "
             + ", ".join(sending) + " (for information; the targets use the wall clock)")
    failed = [m for m in bench.results.values() if not m.ok]
    if failed:
        emit("")
        for m in failed:
            emit(f"FAILED: {m.label}: {m.error}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
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
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=set(),
                        metavar="KEYS", help="run only these measurements (comma-separated: "
                        "help, check, a0, b0, c0, c50, a50, b50, c100, a100, e_send, e_preview, "
                        "relay_cap, "
                        "random_451); "
                        "the results are not written to bench/results.json")
    parser.add_argument("--proxy-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.proxy_child:
        upstream, delay = args.proxy_child.split(":")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_proxy_main(int(upstream), float(delay)))
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

    began = time.perf_counter()
    info = machine()
    info["source_at_start"] = source_digest()
    work = Path(tempfile.mkdtemp(prefix="invitemail-bench-"))
    bench = Bench(args, work)
    try:
        bench.run()
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
