"""The pace against a relay that caps its rate, and against random 451s (issue 12): sent
through invitemail's transport to the tests' scripted relay, in this process."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common import CONNECTIONS, SEED, Measurement, note, out
from sink import DelayProxy

from support.relay import RecordingHandler, Script, ScriptedSMTP, SmtpServer

if TYPE_CHECKING:
    from measure import Bench

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


class CapRelay(RecordingHandler):
    """The tests' scripted relay (tests/support/relay.py) with a token bucket of ``cap``
    messages a second, ``cap`` deep (one second's worth), answering ``451 4.7.0 Rate limit
    exceeded`` above it; and, at random, ``noise`` of the messages answered ``451 4.3.0
    Temporary failure``. It offers no PIPELINING, as aiosmtpd alone does not."""

    def __init__(self, cap: float | None, noise: float = 0.0, seed: int = SEED) -> None:
        super().__init__(Script(pipelining=False))
        self.cap = cap
        self.noise = noise
        self.noise_rng = random.Random(seed)
        self.tokens = cap or 0.0
        self.filled = time.monotonic()
        self.accepted_at: list[float] = []
        self.rate_refused: list[float] = []  # 4.7.0, rate
        self.failed: list[float] = []  # 4.3.0, random

    async def handle_DATA(self, server: ScriptedSMTP, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        if self.noise and self.noise_rng.random() < self.noise:
            self.failed.append(now)
            return "451 4.3.0 Temporary failure"
        if self.cap is not None:
            self.tokens = min(self.cap, self.tokens + (now - self.filled) * self.cap)
            self.filled = now
            if self.tokens < 1.0:
                self.rate_refused.append(now)
                return "451 4.7.0 Rate limit exceeded"
            self.tokens -= 1.0
        self.accepted_at.append(now)
        return await super().handle_DATA(server, session, envelope)


def relay_run(count: int, *, cap: float | None = None, noise: float = 0.0,
              rate: float | None = None, latency: float = 0.0
              ) -> tuple[CapRelay, float, float, int]:
    """Send ``count`` small messages through invitemail's transport (8 connections) to a
    :class:`CapRelay` on 127.0.0.1 (behind a :class:`DelayProxy` adding ``latency`` seconds
    to every reply, if not 0); the relay, when the run began (``time.monotonic``), the
    seconds it took and the messages sent."""
    from invitemail.inputs.config import Sending, Smtp
    from invitemail.send.transport import Envelope, NoHooks, deliver

    handler = CapRelay(cap, noise)
    relay = SmtpServer(script=handler.script)
    relay.handler = handler
    relay.start()
    proxy = DelayProxy(relay.port, latency) if latency else None
    try:
        envelopes = (Envelope(key=str(i), sender="bench@example.org",
                              recipient=f"r{i}@example.org", crlf=True,
                              data=f"Subject: {i}\r\n\r\nHello {i}\r\n".encode())
                     for i in range(count))
        port = proxy.port if proxy is not None else relay.port
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
        relay.stop()


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
        steady = sum(1 for t in relay.accepted_at if t >= half) / (seconds / 2)
        late_refused = sum(1 for t in relay.rate_refused if t >= half)
        late_attempts = late_refused + sum(1 for t in relay.accepted_at if t >= half)
        refused = len(relay.rate_refused)
        attempts = len(relay.accepted_at) + refused
        m.notes.append(f"achieved/cap {steady / cap:.0%} (second half), {m.rate / cap:.0%} "
                       f"(whole run); refused {late_refused}/{late_attempts} "
                       f"({late_refused / max(1, late_attempts):.1%}, second half), "
                       f"{refused}/{attempts} ({refused / attempts:.1%}, "
                       "whole run)")
        m.send_rate = steady
        m.pace = [steady / cap, late_refused / max(1, late_attempts),
                  m.rate / cap, refused / attempts]
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
                                  refused, refused + len(relay.accepted_at))))

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
                attempts += len(relay.failed) + len(relay.accepted_at)
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
    """The pace rows of the report, against issue 12's targets."""
    rows = [m for m in bench.results.values() if m.pace]
    if not rows:
        return
    emit("")
    emit(f"{'pace (issue 12)':<52} {'measured':>54}  {'target':<22} result")
    emit("-" * 142)
    for m in rows:
        values = m.pace
        met: bool | None
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

