"""A small asyncio TCP proxy, run in its own thread, to put a network fault between a
process under test and PostgreSQL (after psycopg's tests/fix_proxy.py).

- :meth:`TcpProxy.stall`: every byte in both directions is held back (a partition:
  peers see silence, not a closed connection; TCP keepalives still succeed against the
  proxy, so only the client's own timeouts notice); :meth:`TcpProxy.heal` lets the held
  bytes flow again, as TCP retransmission would.
- :meth:`TcpProxy.cut`: every open connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control, from any thread ------------------------------------------------------
    def start(self) -> int:
        self._thread.start()
        self.port = self._call(self._start())
        return self.port

    def stall(self) -> None:
        self._call(self._set_flowing(False))

    def heal(self) -> None:
        self._call(self._set_flowing(True))

    def cut(self) -> None:
        self._call(self._close_all())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- inside the proxy's loop -------------------------------------------------------
    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _close_all(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_all()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.connections += 1
        self._writers.add(c_writer)
        await self._flowing.wait()  # a partition also stops new connections
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            return
        self._writers.add(s_writer)
        await asyncio.gather(
            self._pump(c_reader, s_writer), self._pump(s_reader, c_writer), return_exceptions=True
        )
        for w in (c_writer, s_writer):
            w.close()
            self._writers.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
