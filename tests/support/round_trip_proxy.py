"""A TCP proxy between invitemail and a relay that counts round trips and cuts connections.

It forwards both ways at once and records, per connection, the chunks each side sent in
order: :meth:`Conversation.round_trips` is the number of times the relay answered after the
client had sent something (client bursts followed by relay replies), whatever the chunking.

A :class:`Cut` ends the ``connection``-th connection at the client's ``burst``-th burst
(everything the client sent before it waited: a burst is closed by 20 ms of quiet while a cut
is pending): ``"drop"`` forwards none of it, ``"half"`` forwards its first half (mid-data),
``"forward"`` forwards all of it and swallows the relay's reply to it. Then both sides are
closed. The proxy runs in a thread of its own, so the CLI (which runs its own event loop) can
use it too.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Literal

HOST = "127.0.0.1"
QUIET = 0.02  # seconds without a byte from the client that close a burst
How = Literal["drop", "half", "forward"]


@dataclass(frozen=True)
class Cut:
    burst: int
    how: How
    connection: int = 1


@dataclass
class Conversation:
    chunks: list[tuple[str, bytes]] = field(default_factory=list)  # ("client" | "relay", bytes)
    cut: bool = False  # the proxy ended it

    def round_trips(self) -> int:
        trips, last = 0, "relay"  # the greeting is not a round trip
        for side, _ in self.chunks:
            if side == "relay" and last == "client":
                trips += 1
            last = side
        return trips

    def sent(self) -> bytes:
        return b"".join(self.client_chunks())

    def client_chunks(self) -> list[bytes]:
        return [data for side, data in self.chunks if side == "client"]


class RoundTripProxy:
    def __init__(self, target: int, cut: Cut | None = None) -> None:
        self.target = target
        self.cut = cut
        self.conversations: list[Conversation] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RoundTripProxy:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._session, HOST, 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="round-trip-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the proxy did not start within 10 s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def connections(self) -> int:
        return len(self.conversations)

    def round_trips(self) -> int:
        return sum(conversation.round_trips() for conversation in self.conversations)

    # -- one connection ----------------------------------------------------------------------

    async def _session(self, client_reader: asyncio.StreamReader,
                       client_writer: asyncio.StreamWriter) -> None:
        conversation = Conversation()
        self.conversations.append(conversation)
        number = len(self.conversations)
        cut = self.cut if self.cut is not None and self.cut.connection == number else None
        relay_reader, relay_writer = await asyncio.open_connection(HOST, self.target)
        cutting = asyncio.Event()  # set: swallow the relay's next reply, then close

        async def upstream() -> None:
            bursts = 0
            while chunk := await client_reader.read(65536):
                if cut is not None and bursts < cut.burst:
                    while True:  # the rest of the burst
                        try:
                            more = await asyncio.wait_for(client_reader.read(65536), QUIET)
                        except TimeoutError:
                            break
                        if not more:
                            break
                        chunk += more
                    bursts += 1
                    if bursts == cut.burst:
                        conversation.cut = True
                        if cut.how == "forward":
                            cutting.set()
                            conversation.chunks.append(("client", chunk))
                            relay_writer.write(chunk)
                            await relay_writer.drain()
                            return  # downstream() closes both once the reply came
                        if cut.how == "half":
                            half = chunk[:len(chunk) // 2]
                            conversation.chunks.append(("client", half))
                            relay_writer.write(half)
                            await relay_writer.drain()
                        raise ConnectionAbortedError
                conversation.chunks.append(("client", chunk))
                relay_writer.write(chunk)
                await relay_writer.drain()
            relay_writer.write_eof()

        async def downstream() -> None:
            while chunk := await relay_reader.read(65536):
                if cutting.is_set():
                    conversation.chunks.append(("swallowed", chunk))
                    raise ConnectionAbortedError
                conversation.chunks.append(("relay", chunk))
                client_writer.write(chunk)
                await client_writer.drain()
            raise ConnectionAbortedError

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_writer, relay_writer):
                writer.close()
