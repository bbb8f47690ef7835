"""A small asyncio TCP proxy in front of PostgreSQL, to cut connections on purpose
(after psycopg's tests/fix_proxy.py, but in-process and asyncio)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target. :meth:`cut_on_next_reply` arms a cut: the
    next bytes the server sends are thrown away and every connection is closed, so the
    client never learns what happened to the statement it sent (e.g. a COMMIT)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._armed = False
        self.cuts = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def cut_on_next_reply(self) -> None:
        self._armed = True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        if self._server is not None:
            await self._server.wait_closed()

    def _close_all(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            return
        self._writers.update((c_writer, s_writer))
        up = asyncio.create_task(self._pipe(c_reader, s_writer, reply=False))
        down = asyncio.create_task(self._pipe(s_reader, c_writer, reply=True))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for w in (c_writer, s_writer):
            w.close()
            self._writers.discard(w)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, reply: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if reply and self._armed:
                    self._armed = False
                    self.cuts += 1
                    self._close_all()
                    return
                writer.write(data)
                await writer.drain()
