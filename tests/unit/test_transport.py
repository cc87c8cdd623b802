"""One socket write per response (server/http/transport.py): the same bytes, in order, joined."""

from __future__ import annotations

import asyncio

import uvicorn

from dev.services import free_port
from server.http.transport import CoalescingProtocol, CoalescingTransport


class Recorder:
    """The socket side of a transport: what was written, call by call, and whether it closed."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


async def test_writes_of_one_loop_turn_reach_the_socket_as_one_write() -> None:
    real = Recorder()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"")
    transport.write(b"{}")
    assert real.calls == []  # kept until the end of the turn
    await asyncio.sleep(0)
    assert real.calls == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.calls[1:] == [b"next"]


async def test_close_writes_what_is_kept_first() -> None:
    real = Recorder()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"head")
    transport.write(b"body")
    transport.close()
    await asyncio.sleep(0)  # the scheduled write finds nothing left
    assert real.calls == [b"headbody", "close"]


async def app(scope, receive, send) -> None:  # noqa: ANN001 - a bare ASGI app
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = scope["path"].encode() * 3
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def test_uvicorn_with_it_answers_each_request_on_a_kept_alive_connection_in_order() -> None:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=CoalescingProtocol, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Pipelined: both requests sent before either answer is read.
        writer.write(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /bb HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to the close
        writer.close()
        first, second = answer.split(b"HTTP/1.1 ")[1:]
        assert first.startswith(b"200 OK") and first.endswith(b"\r\n\r\n/a/a/a")
        assert second.startswith(b"200 OK") and second.endswith(b"\r\n\r\n/bb/bb/bb")
    finally:
        server.should_exit = True
        await serving
