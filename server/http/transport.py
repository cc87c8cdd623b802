"""One socket write per response: uvicorn's HTTP protocol with its writes of one loop turn joined.

uvicorn writes a response's status line and headers as the app sends `http.response.start`, and
its body as the app sends `http.response.body`, and uvloop hands each write to the socket at once:
two system calls and two TCP segments for every response with a body (the ad decision's JSON, a
view's answer, every page), each delivered and acknowledged on its own. `CoalescingProtocol` gives
uvicorn's protocol a transport that keeps what is written during one turn of the event loop and
writes it in one call at the end of the turn (`loop.call_soon`): the same bytes, in the same order,
no later than the loop's next look at its sockets. A close, a pause or anything else asked of the
transport writes what is kept first, so nothing is reordered or left behind.

`affnet serve` runs uvicorn with it (server/cli.py); bench/ad_decision.py measures the difference.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes of one loop turn go to the real one as one write."""

    __slots__ = ("_loop", "_parts", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        parts = self._parts
        if not parts:
            self._loop.call_soon(self.flush)
        parts.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        parts = self._parts
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        # Anything else (abort, set_protocol, buffer sizes): what was kept goes first.
        self.flush()
        return getattr(self.transport, name)


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response in one call (see the module's text)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
