"""The processes around a measurement: Postfix's ``smtp-sink`` on a free loopback port, and a
delaying proxy in front of it (its own process: ``run.py --proxy-child``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH, BenchError

from support.ports import answers_smtp, free_port


def wait_for_smtp(port: int, timeout: float = 10.0) -> None:
    if not answers_smtp(port, timeout):
        raise BenchError(f"nothing answers SMTP on 127.0.0.1:{port}")


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
            [sys.executable, str(BENCH / "run.py"), "--proxy-child",
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


async def proxy_main(upstream: int, delay: float) -> None:
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

