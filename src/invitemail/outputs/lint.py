"""`check --lint`: what a careful mail administrator would check in every message.

Two checks: :func:`lint_message`, the structure every message must have (pure, fast, run on
every message), and :func:`spamassassin_scores`, what SpamAssassin's local rules think of a
sample (a separate program, run when it is installed; no network test is ever made).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from invitemail.errors import InvitemailError

if TYPE_CHECKING:
    from invitemail.campaign import Built

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
ALTERNATIVE = ["text/plain", "text/html", "text/calendar"]

SPAMASSASSIN = "spamassassin"
SPAM_REQUIRED = 5.0  # SpamAssassin's default "required_score": at or above it, it is spam
SPAM_GOOD = 1.0  # what our own messages must stay below
SPAM_SAMPLE = 10  # messages `check --lint` scores (the templates differ little by registrant)
SPAM_TIMEOUT = 300.0  # seconds for one batch (Perl loads its rules in about a second)


def parse_message(data: bytes) -> EmailMessage:
    """Parse with the standard library's modern policy (what the tests read messages with)."""
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parse_fast(data: bytes) -> Message:
    """Parse with the compat32 policy: headers stay strings until asked for, which is ten
    times faster than the modern policy's header objects (the gallery reads every message)."""
    return message_from_bytes(data, policy=policy.compat32)


def decoded_header(value: object) -> str:
    """A header's text with its RFC 2047 words decoded."""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        return str(value)


def lint_built(built: Built) -> list[str]:
    """:func:`lint_message` of a built message (``Campaign.check``'s ``inspect``)."""
    return lint_message(built.data)


def lint_message(data: bytes, parsed: Message | None = None) -> list[str]:
    """Problems with one message's bytes; empty when it is fine.

    ``parsed`` is ``data`` already parsed by :func:`parse_fast` (the gallery has it), to
    save parsing it twice.
    """
    problems: list[str] = []
    problems += _lint_lines(data)
    if parsed is None:
        parsed = parse_fast(data)
    problems += _lint_headers(parsed)
    problems += _lint_structure(parsed)
    return problems


def _lint_lines(data: bytes) -> list[str]:
    problems: list[str] = []
    bare = data.replace(b"\r\n", b"")
    if b"\n" in bare or b"\r" in bare:
        problems.append("a line does not end in CRLF")
    longest = max((len(line) for line in data.split(b"\r\n")), default=0)
    if longest > MAX_LINE:
        problems.append(f"a line is {longest} octets long (the limit is {MAX_LINE})")
    head = data.split(b"\r\n\r\n", 1)[0]
    if not head.isascii():
        # 8-bit headers need SMTPUTF8, which many relays refuse: RFC 2047 words instead.
        problems.append("the header holds 8-bit bytes (not RFC 2047-encoded)")
    return problems


def _lint_headers(parsed: Message) -> list[str]:
    problems: list[str] = []
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        values = parsed.get_all(header) or []
        if len(values) != 1:
            problems.append(f"{len(values)} {header} headers (exactly one expected)")
    to = parsed.get("To")
    if to is not None and len(_addresses(to)) != 1:
        problems.append("To: must hold exactly one address")
    date = parsed.get("Date")
    if date is not None:
        try:
            parsedate_to_datetime(str(date))
        except (TypeError, ValueError, IndexError):
            problems.append(f"Date: {date} is not an RFC 5322 date")
    message_id = str(parsed.get("Message-ID", "")).strip()
    senders = _addresses(parsed.get("From"))
    if senders:
        domain = senders[0].rpartition("@")[2]
        if not message_id.endswith(f"@{domain}>"):
            problems.append(f"Message-ID {message_id} is not on the sender's domain {domain}")
    return problems


def _addresses(header: object) -> list[str]:
    """The addresses of an address header (none for a missing or broken one)."""
    if header is None:
        return []
    # The raw header: encoded words are atoms to the address parser, a decoded name is not.
    return [address for _, address in getaddresses([str(header)]) if "@" in address]


def _parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _lint_structure(parsed: Message) -> list[str]:
    problems: list[str] = []
    if parsed.get_content_type() == "multipart/alternative":  # no calendar: a follow-up
        kinds = [p.get_content_type() for p in _parts(parsed)]
        if kinds != ALTERNATIVE[:2]:
            problems.append(f"the alternative holds {kinds}, not text and HTML in that order")
    elif parsed.get_content_type() != "multipart/mixed":
        problems.append(f"top level is {parsed.get_content_type()}, not multipart/mixed")
    else:
        first = next(iter(_parts(parsed)), None)
        if first is None or first.get_content_type() != "multipart/alternative":
            problems.append("the first part is not multipart/alternative")
        else:
            kinds = [p.get_content_type() for p in _parts(first)]
            if kinds != ALTERNATIVE:
                problems.append(f"the alternative holds {kinds}, not text, HTML and calendar in "
                                "that order")
    for part in parsed.walk():
        if part.get_content_maintype() == "text" and part.get_param("charset") is None:
            problems.append(f"{part.get_content_type()} declares no charset")
    return problems


# -- SpamAssassin ---------------------------------------------------------------------------


class SpamAssassinError(InvitemailError):
    """SpamAssassin is installed but could not score the messages."""


@dataclass(frozen=True, slots=True)
class SpamScore:
    """SpamAssassin's verdict on one message: the score and the rules that made it."""

    score: float
    rules: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        rules = ", ".join(f"{name} {points:+g}" for name, points in self.rules.items())
        shown = round(self.score, 1) + 0.0  # never "-0.0"
        return f"{shown:.1f}" + (f" ({rules})" if rules else "")


def spamassassin_installed() -> bool:
    return shutil.which(SPAMASSASSIN) is not None


def spamassassin_scores(messages: Sequence[bytes], *, workers: int | None = None,
                        timeout: float = SPAM_TIMEOUT) -> list[SpamScore] | None:
    """Score each message with SpamAssassin's local rules, in order; None when SpamAssassin
    is not installed.

    Perl takes about a second to load the rules, so the messages go to a few processes
    (``workers``, default: one per CPU, at most 4) that each score a share of them. No
    network test runs (``-L``), Bayes and auto-learning are off, and nothing is written
    outside a temporary folder (it is the processes' HOME).
    """
    program = shutil.which(SPAMASSASSIN)
    if program is None:
        return None
    if not messages:
        return []
    workers = max(1, min(workers or min(os.cpu_count() or 1, 4), len(messages)))
    nonce = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="invitemail-spamassassin-") as tmp:
        folder = Path(tmp)
        prefs = folder / "user_prefs"
        prefs.write_text("")
        paths = []
        for number, data in enumerate(messages):
            path = folder / f"{number:06d}.eml"
            path.write_bytes(data)
            paths.append(path)
        command = [
            program, "--local", "--nocreate-prefs", f"--prefs-file={prefs}",
            "--cf=use_bayes 0", "--cf=bayes_auto_learn 0", "--cf=report_safe 0",
            # Our own header, with a nonce so no message body can imitate it.
            f"--cf=add_header all Invitemail-Score {nonce} _SCORE_ _TESTSSCORES(,)_",
        ]
        env = {**os.environ, "HOME": tmp, "LC_ALL": "C", "LANG": "C"}
        shares = [paths[i::workers] for i in range(workers)]
        # Output goes to files, not pipes: a full pipe would stall a process until its turn
        # to be read, and the processes would run one after the other.
        outputs = [folder / f"out{i}.txt" for i in range(workers)]
        processes = []
        results: dict[Path, SpamScore] = {}
        try:
            for share, output in zip(shares, outputs, strict=True):
                with output.open("wb") as sink:
                    processes.append(subprocess.Popen(
                        [*command, *map(str, share)], stdin=subprocess.DEVNULL, stdout=sink,
                        stderr=subprocess.STDOUT, env=env))
            for process, share, output in zip(processes, shares, outputs, strict=True):
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise SpamAssassinError(
                        f"{SPAMASSASSIN} took more than {timeout:.0f} s for "
                        f"{len(share)} messages") from None
                out = output.read_bytes()
                scores = _read_scores(out, nonce)
                if process.returncode != 0 or len(scores) != len(share):
                    tail = [line for line in out.decode("utf-8", "replace").splitlines()
                            if "warn:" in line or "error" in line.lower()][-3:]
                    raise SpamAssassinError(
                        f"{SPAMASSASSIN} exited with status {process.returncode} and scored "
                        f"{len(scores)} of {len(share)} messages"
                        + (": " + " / ".join(tail) if tail else ""),
                        hint=f"run `{SPAMASSASSIN} --lint` to check its rules")
                results.update(zip(share, scores, strict=True))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return [results[path] for path in paths]


def _read_scores(output: bytes, nonce: str) -> list[SpamScore]:
    """Our X-Spam-Invitemail-Score headers in ``output``, in order (folded lines joined)."""
    text = output.decode("latin-1")
    pattern = re.compile(rf"^X-Spam-Invitemail-Score: {nonce} (.*(?:\r?\n[ \t].*)*)",
                         re.MULTILINE)
    found = []
    for match in pattern.finditer(text):
        score, _, tests = " ".join(match.group(1).split()).partition(" ")
        rules: dict[str, float] = {}
        for item in tests.replace(" ", "").split(","):
            name, _, points = item.partition("=")
            if name and name != "none" and points:
                rules[name] = float(points)
        found.append(SpamScore(float(score), rules))
    return found
