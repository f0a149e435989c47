"""The catalogue of hostile and broken input (issue 7): one test per folder of tests/bad_inputs/.

Each case is a folder holding an ``expect.toml`` and the files that differ from a valid event
(a ``registrants.csv``, a ``templates/`` folder, rarely a whole ``event.toml``). The runner
builds a fresh event folder in ``tmp_path`` from tests/support/event.py's valid one, applies the
case, runs the CLI in-process and checks the exact sentence on stderr, the exit code, that no
traceback was printed, that it finished within its bound and that nothing was sent.

expect.toml::

    about = "one line: what the input is, and why it is here"
    command = ["check"]               # invitemail COMMAND[0] EVENT COMMAND[1:]
    exit_code = 1
    message = "Error: {event}/registrants.csv:2: ..."   # whole lines of stderr ("": none);
                                      # a line ending in "..." is matched as a prefix
    hint = "..."                      # optional: the `Hint:` line's text
    stdout = ["...", ...]             # optional: whole lines of stdout (graceful cases)
    never = ["...", ...]              # optional: text that must appear in no output
    event_toml = [                    # optional: changes to the base event.toml, by key
        { set = "smtp.port", value = "70000" },   # value: TOML source, on the key's line
                                                  # (a key not there: at its section's end)
        { repeat = "event.duration", value = "90" },  # the key again, on the next line
        { drop = "event" },                       # a section (or "section.key")
        { rename = "event", to = "evnt" },        # a section's name
        { header = "privacy", text = "[[privacy]]" },  # a section's header line, as written
        { add = "privacy", before = "sending", keys = { policy_url = '"..."' } },  # a new
    ]                                             # section (again), values as TOML source
    smtp = "garbage-greeting"         # optional: a scripted raw-socket relay (RELAYS below)
    xfail = "module: what is wrong"   # optional: a known bug in a module this suite may not fix
    isolate = 5                       # optional: run in a subprocess killed after N seconds
                                      # with memory capped (cases that could hang or eat RAM)

    [[generate]]                      # optional: a big input, made here rather than committed
    path = "registrants.csv"
    encoding = "utf-8"
    parts = [{ text = "x", repeat = 10_000_000 }]   # "{n}" in text counts 1..repeat;
                                                    # { event_toml = true } is the base file

In messages ``{event}`` is the event folder, ``{relay}`` the relay's ``host:port`` and
``{line:SECTION.KEY}`` (or ``{line:SECTION}`` for its header; ``#N`` after it: its Nth
occurrence; ``+N``: N lines below it) the line of that key in the case's event.toml after
its patches, as the event builder (support/event.py) reports it. The base event.toml is
support.event's default event with [smtp] pointed at the test relay (lines unchanged):
``host = "127.0.0.1"``, ``port = {port}``, ``security = "none"``, no username (its line is a
comment), ``timeout = 1``. Without ``smtp``, the relay is a recording aiosmtpd server that
must see no connection at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from invitemail.journal.store import Journal, State
from support.cli import Run, run_cli
from support.event import EventBuilder, EventToml, Raw
from support.ports import free_port
from support.relay import SmtpServer

CASES = Path(__file__).parent / "bad_inputs"
PASSWORD_ENV = "INVITEMAIL_SMTP_PASSWORD"
PASSWORD = "relay-secret-5c1e77"  # set for every case: it must never be printed
TIME_LIMIT = 10.0  # seconds: every case must finish well within this (the SMTP timeout is 1 s)
MEMORY_LIMIT = 2 * 1024**3  # bytes of address space for an isolated case

KEYS = {"about", "command", "exit_code", "message", "hint", "stdout", "never", "event_toml",
        "smtp", "xfail", "isolate", "generate"}


def base_event(port: int) -> EventBuilder:
    """The default event pointed at the test relay, every line where it was."""
    builder = EventBuilder().set("smtp", "host", "127.0.0.1").set("smtp", "port", port)
    builder.set("smtp", "security", "none").set("smtp", "timeout", 1)
    builder.toml.comment_out("smtp", "username", "the test relays take no login")
    return builder


def change_event(toml: EventToml, change: dict[str, Any], case: str) -> None:
    """One entry of a case's ``event_toml`` (see the module's docstring), made by key."""
    kinds = {"set", "repeat", "drop", "rename", "header", "add"} & change.keys()
    assert len(kinds) == 1, f"{case}: event_toml: {change!r} is not one change"
    kind = kinds.pop()
    section, _, key = change[kind].partition(".")
    if kind in ("set", "repeat"):
        assert key, f"{case}: event_toml: {kind} needs SECTION.KEY, not {change[kind]!r}"
        (toml.set if kind == "set" else toml.repeat)(section, key, Raw(change["value"]))
    elif kind == "drop":
        toml.drop(section, key or None)
    elif kind == "rename":
        toml.rename_section(section, change["to"])
    elif kind == "add":
        keys: dict[str, str] = change.get("keys", {})
        toml.add_section(section, {key: Raw(value) for key, value in keys.items()},
                         before=change.get("before"))
    else:
        toml.rewrite_header(section, change["text"])


LINE = re.compile(r"\{line:([A-Za-z_.]+?)(?:#(\d+))?(?:\+(\d+))?\}")


def fill_lines(text: str, toml: EventToml) -> str:
    """``{line:SECTION.KEY}`` as the line the builder reports (``#N``: its Nth occurrence,
    ``+N``: N lines below it)."""
    def line(match: re.Match[str]) -> str:
        section, _, key = match.group(1).partition(".")
        nth, below = int(match.group(2) or 1), int(match.group(3) or 0)
        return str(toml.line(section, key or None, nth) + below)

    return LINE.sub(line, text)


# -- scripted raw-socket relays --------------------------------------------------------------

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
TEN_MB = 10 * 1024 * 1024


async def _commands(reader: Reader, writer: Writer, seen: list[bytes],
                    answer: Callable[[bytes], bytes | None]) -> None:
    """Read command lines, answer each with ``answer(line)`` (None: hang up)."""
    while line := await reader.readline():
        seen.append(line)
        reply = answer(line.upper())
        if reply is None:
            return
        writer.write(reply)
        await writer.drain()


def _ehlo_then(extensions: bytes, other: bytes) -> Callable[[bytes], bytes | None]:
    def answer(line: bytes) -> bytes | None:
        if line.startswith((b"EHLO", b"HELO")):
            return b"250-relay.test\r\n" + extensions
        if line.startswith(b"QUIT"):
            return None
        return other
    return answer


async def garbage_greeting(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"\x00\x01\x02 garbage \xff\xfe\r\n")
    await writer.drain()
    await asyncio.sleep(3600)


async def huge_greeting(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"220 " + b"x" * TEN_MB + b"\r\n")
    await writer.drain()
    await asyncio.sleep(3600)


async def huge_ehlo_reply(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"220 relay.test ESMTP\r\n")
    await writer.drain()
    seen.append(await reader.readline())
    writer.write(b"250-" + b"x" * TEN_MB + b"\r\n250 OK\r\n")
    await writer.drain()
    await asyncio.sleep(3600)


async def never_answers(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    await asyncio.sleep(3600)


async def silent_after_greeting(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"220 relay.test ESMTP\r\n")
    await writer.drain()
    seen.append(await reader.readline())
    await asyncio.sleep(3600)


async def drip_feed(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    """A greeting one byte every 0.2 s: the timeout bounds the whole reply, not each byte."""
    for byte in b"220 relay.test ESMTP very slowly\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)


async def closes_at_once(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.close()


async def refuses_554(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"554 5.7.1 No SMTP service here\r\n")
    await writer.drain()


async def no_starttls(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"220 relay.test ESMTP\r\n")
    await writer.drain()
    await _commands(reader, writer, seen, _ehlo_then(b"250 8BITMIME\r\n", b"502 5.5.1 No\r\n"))


async def refuses_login(reader: Reader, writer: Writer, seen: list[bytes]) -> None:
    writer.write(b"220 relay.test ESMTP\r\n")
    await writer.drain()

    def answer(line: bytes) -> bytes | None:
        if line.startswith(b"AUTH"):
            return b"535 5.7.8 Authentication credentials invalid\r\n"
        return _ehlo_then(b"250 AUTH PLAIN LOGIN\r\n", b"530 5.7.0 Authentication required\r\n"
                          )(line)

    await _commands(reader, writer, seen, answer)


RELAYS: dict[str, Callable[[Reader, Writer, list[bytes]], Awaitable[None]]] = {
    "garbage-greeting": garbage_greeting,
    "huge-greeting": huge_greeting,
    "huge-ehlo-reply": huge_ehlo_reply,
    "never-answers": never_answers,
    "silent-after-greeting": silent_after_greeting,
    "drip-feed": drip_feed,
    "closes-at-once": closes_at_once,
    "refuses-554": refuses_554,
    "no-starttls": no_starttls,
    "refuses-login": refuses_login,
}


class RawRelay:
    """A scripted relay on 127.0.0.1 in a thread of its own; ``seen`` holds every line it read.

    ``behaviour`` None: nothing listens on ``port`` (connection refused).
    """

    def __init__(self, behaviour: str | None) -> None:
        self.behaviour = behaviour
        self.seen: list[bytes] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def __enter__(self) -> RawRelay:
        if self.behaviour is None:
            self.port = free_port()
            return self
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the raw relay did not start"
        return self

    def _serve(self, ready: threading.Event) -> None:
        script = RELAYS[self.behaviour or ""]

        async def session(reader: Reader, writer: Writer) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await script(reader, writer, self.seen)
            except (ConnectionError, OSError):
                pass  # the client gave up: exactly what these relays provoke
            except asyncio.CancelledError:
                pass  # the relay is stopping; ending quietly keeps asyncio from logging it
            finally:
                writer.close()

        async def start() -> asyncio.AbstractServer:
            server = await asyncio.start_server(session, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            return server

        server = self._loop.run_until_complete(start())
        ready.set()
        self._loop.run_forever()
        server.close()
        for task in self._tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# -- the cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    expect: dict[str, Any] = field(repr=False)

    @property
    def command(self) -> list[str]:
        return list(self.expect["command"])


def load_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in CASES.iterdir() if p.is_dir()):
        expect = tomllib.loads((folder / "expect.toml").read_text(encoding="utf-8"))
        unknown = set(expect) - KEYS
        assert not unknown, f"{folder.name}/expect.toml: unknown keys {sorted(unknown)}"
        for key in ("about", "command", "exit_code", "message"):
            assert key in expect, f"{folder.name}/expect.toml: {key} is missing"
        cases.append(Case(folder.name, folder, expect))
    return cases


def params() -> Iterator[Any]:
    for case in load_cases():
        reason = case.expect.get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(case, id=case.name, marks=marks)


def generate(recipe: dict[str, Any], folder: Path, base_toml: str) -> None:
    """Write one generated input file from its recipe (see the module's docstring)."""
    chunks: list[str] = []
    for part in recipe["parts"]:
        if part.get("event_toml"):
            chunks.append(base_toml)
            continue
        text, repeat = part["text"], part.get("repeat", 1)
        if "{n}" in text:
            chunks.extend(text.replace("{n}", str(n)) for n in range(1, repeat + 1))
        else:
            chunks.append(text * repeat)
    path = folder / recipe["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(chunks).encode(recipe.get("encoding", "utf-8")))


def make_event(case: Case, folder: Path, port: int) -> tuple[Path, EventToml]:
    """A valid event folder, then the case's files, patches and generated inputs on top; and
    its event.toml as the builder wrote it (for ``{line:...}``)."""
    builder = base_event(port)
    for change in case.expect.get("event_toml", []):
        change_event(builder.toml, change, case.name)
    written = builder.write(folder)
    toml = written.toml.text()
    for source in case.folder.rglob("*"):
        if source.is_file() and source.name != "expect.toml":
            target = folder / source.relative_to(case.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    for recipe in case.expect.get("generate", []):
        generate(recipe, folder, toml)
    return folder, written.toml


def _limits(cpu_seconds: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    return apply


def run_isolated(args: list[str], seconds: float) -> Run:
    """The CLI in a child process with a CPU budget and a memory cap: a case that hangs or
    eats memory fails here instead of taking the test run down with it. The budget is CPU
    time (the kernel stops the child with SIGXCPU), so a machine busy with other work does
    not make a quick refusal look like a hang; the wall clock only backs it up (a child
    asleep forever)."""
    env = {**os.environ, PASSWORD_ENV: PASSWORD, "INVITEMAIL_WORKERS": "1"}
    budget = max(1, math.ceil(seconds))
    try:
        done = subprocess.run([sys.executable, "-m", "invitemail", *args], env=env,
                              capture_output=True, text=True, timeout=budget * 15,
                              preexec_fn=_limits(budget))
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {budget * 15:g} s of wall clock: a hang")
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        pytest.fail(f"used more than {budget} s of CPU: a hang")
    return Run(done.returncode, done.stdout, done.stderr)


def whole_lines(expected: str, output: str) -> bool:
    """``expected`` (one or more lines) stands in ``output`` as whole lines, one after the
    other. An expected line ending in "..." matches a line that starts with the rest (for the
    few sentences whose end Python words differently from version to version)."""
    wanted, lines = expected.split("\n"), output.split("\n")

    def matches(line: str, pattern: str) -> bool:
        return line.startswith(pattern[:-3]) if pattern.endswith("...") else line == pattern

    return any(all(map(matches, lines[start:start + len(wanted)], wanted))
               for start in range(len(lines) - len(wanted) + 1))


@contextlib.contextmanager
def relay_for(case: Case) -> Iterator[SmtpServer | RawRelay]:
    behaviour = case.expect.get("smtp")
    if behaviour is None:
        with SmtpServer() as server:
            yield server
    else:
        assert behaviour in RELAYS or behaviour == "nothing-listening", behaviour
        with RawRelay(None if behaviour == "nothing-listening" else behaviour) as relay:
            yield relay


@pytest.mark.parametrize("case", list(params()))
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with relay_for(case) as relay:
        event, toml = make_event(case, tmp_path / "event", relay.port)
        where = f"127.0.0.1:{relay.port}"
        command = case.command
        args = [command[0], str(event), *(a.replace("{event}", str(event)) for a in command[1:])]
        started = time.monotonic()
        if "isolate" in case.expect:
            run = run_isolated(args, float(case.expect["isolate"]))
        else:
            run = run_cli(*args)
        elapsed = time.monotonic() - started

    def fill(text: str) -> str:
        return fill_lines(text.replace("{event}", str(event)).replace("{relay}", where), toml)

    assert "Traceback" not in run.output, run.output
    assert run.exit_code == case.expect["exit_code"], run.output
    message = fill(case.expect["message"])
    if message:
        assert whole_lines(message, run.stderr), run.stderr
    else:
        assert run.stderr == ""
    if "hint" in case.expect:
        assert whole_lines("Hint: " + fill(case.expect["hint"]), run.stderr), run.stderr
    for line in case.expect.get("stdout", []):
        assert whole_lines(fill(line), run.stdout), run.stdout
    assert elapsed < TIME_LIMIT, f"took {elapsed:.1f} s"
    for secret in [PASSWORD, *case.expect.get("never", [])]:
        assert secret not in run.output
    # Nothing sent: the recording relay saw no connection; a scripted one no transaction.
    if isinstance(relay, SmtpServer):
        assert relay.connections == 0 and relay.transactions == []
    else:
        assert not any(line.upper().startswith((b"MAIL", b"RCPT", b"DATA"))
                       for line in relay.seen), relay.seen
    journal = Journal.open(event, create=False)
    if journal is not None:
        with journal:
            assert all(row.state is not State.SENT for t in journal.templates()
                       for row in journal.rows(t))


def test_catalogue_has_every_kind_of_input_the_issue_lists() -> None:
    names = {case.name for case in load_cases()}
    assert len(names) >= 40
    for prefix in ("csv-", "toml-", "template-", "smtp-"):
        assert sum(name.startswith(prefix) for name in names) >= 8, prefix
    generated = [case for case in load_cases() if "generate" in case.expect]
    assert {"csv-10mb-cell", "csv-200-columns"} <= {case.name for case in generated}


def test_catalogue_files_stay_small() -> None:
    """Big inputs are generated from a recipe, never committed."""
    for path in CASES.rglob("*"):
        assert not path.is_file() or path.stat().st_size < 16 * 1024, path
