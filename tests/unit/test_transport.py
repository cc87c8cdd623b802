"""One socket write per response (server/http/transport.py): the same bytes, in order, joined."""

from __future__ import annotations

import asyncio

import uvicorn

from dev.services import free_port
from server.http import transport
from server.http.transport import CoalescingProtocol, CoalescingTransport, answer_instantly


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


# --- instant answers -------------------------------------------------------------------------------


class Instant:
    """An instant answer for /i/…: a 302 to where the path says, None for /i/no (the app answers),
    raises for /i/boom; it keeps the scopes it was asked with."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def __call__(self, scope: dict) -> list[tuple[bytes, bytes]] | None:
        self.asked.append(scope)
        if scope["path"] == "/i/no":
            return None
        if scope["path"] == "/i/boom":
            raise ValueError("the app answers this one")
        return [(b"location", b"https://shop.example.com" + scope["path"].encode()), (b"content-length", b"0")]


async def _serving(**options):  # noqa: ANN202 - (server, port, its task)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=CoalescingProtocol, log_level="warning", **options)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    return server, port, serving


async def _exchange(port: int, request: bytes, answers: int) -> list[bytes]:
    """Send `request` (one or several requests) and read `answers` responses (to the close, if fewer came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    got: list[bytes] = []
    try:
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length: "))[16:])
            got.append(head + await reader.readexactly(length))
        got.append(await asyncio.wait_for(reader.read(), 1) if b"connection: close" in got[-1] else b"")
    finally:
        writer.close()
    return got


async def test_an_instant_answer_is_written_by_the_protocol_with_uvicorns_headers_and_keep_alive() -> None:
    instant = Instant()
    answer_instantly(b"/i/", instant)
    server, port, serving = await _serving()
    try:
        # One at a time on one kept-alive connection: each is asked when nothing else is in progress.
        answers: list[bytes] = []
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in (b"/i/shoes?sub1=a", b"/i/no", b"/other"):
            writer.write(b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length: "))[16:])
            answers.append(head + await reader.readexactly(length))
        writer.write(b"GET /i/last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        after = await asyncio.wait_for(reader.read(), 10)  # answered, then closed
        writer.close()
    finally:
        answer_instantly(b"/i/", None)
        server.should_exit = True
        await serving
    first, second, third = answers
    lines = first.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 302 Found" and b"location: https://shop.example.com/i/shoes" in lines
    assert any(line.startswith(b"date: ") for line in lines)  # uvicorn's default header
    assert b"connection: close" not in lines
    assert [s["path"] for s in instant.asked] == ["/i/shoes", "/i/no", "/i/last"]
    assert instant.asked[0]["query_string"] == b"sub1=a" and instant.asked[0]["method"] == "GET"
    assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(b"/i/no/i/no/i/no")  # the app's
    assert third.startswith(b"HTTP/1.1 200 OK") and third.endswith(b"/other/other/other")  # never asked
    assert after.startswith(b"HTTP/1.1 302 Found") and b"\r\nconnection: close\r\n" in after


async def test_a_failing_instant_answer_or_a_pipelined_request_goes_to_the_app_in_order() -> None:
    instant = Instant()
    answer_instantly(b"/i/", instant)
    failures = transport._failed.total
    server, port, serving = await _serving()
    try:
        boom = await _exchange(port, b"GET /i/boom HTTP/1.1\r\nhost: x\r\n\r\n", 1)
        # Pipelined behind a request the app is answering: the app answers it too, after the first.
        pipelined = await _exchange(
            port, b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /i/shoes HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 2
        )
        old = await _exchange(port, b"GET /i/shoes HTTP/1.0\r\n\r\n", 1)
    finally:
        answer_instantly(b"/i/", None)
        server.should_exit = True
        await serving
    assert boom[0].startswith(b"HTTP/1.1 200 OK") and boom[0].endswith(b"/i/boom/i/boom/i/boom")
    assert transport._failed.total == failures + 1  # logged (once per interval), not silent
    assert pipelined[0].endswith(b"/a/a/a") and pipelined[1].endswith(b"/i/shoes/i/shoes/i/shoes")
    assert old[0].startswith(b"HTTP/1.1 302 Found") and b"connection: close" in old[0]  # HTTP/1.0: closed after


async def test_an_instant_answer_sees_the_trusted_proxys_client_and_scheme_only() -> None:
    instant = Instant()
    answer_instantly(b"/i/", instant)
    forwarded = (
        b"GET /i/x HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 198.51.100.7\r\nx-forwarded-proto: https\r\n"
        b"connection: close\r\n\r\n"
    )
    try:
        for trusted in ("127.0.0.1", "10.9.9.9"):
            server, port, serving = await _serving(proxy_headers=True, forwarded_allow_ips=trusted)
            try:
                await _exchange(port, forwarded, 1)
            finally:
                server.should_exit = True
                await serving
    finally:
        answer_instantly(b"/i/", None)
    believed, ignored = instant.asked
    assert (believed["client"][0], believed["scheme"]) == ("198.51.100.7", "https")
    assert (ignored["client"][0], ignored["scheme"]) == ("127.0.0.1", "http")


def _by_uvicorn(trusted: str, scope: dict) -> dict:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    out = dict(scope)

    async def nothing(scope, receive, send) -> None:
        return None

    call = ProxyHeadersMiddleware(nothing, trusted)(out, None, None)
    try:
        call.send(None)
    except StopIteration:
        pass
    return out


def test_the_fast_forwarded_reading_answers_as_uvicorns_middleware() -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    peers = ["127.0.0.1", "10.9.9.9", "10.0.0.1", "::1", "203.0.113.5", ""]
    forwarded_fors = [
        None,
        b"198.51.100.7",
        b" 198.51.100.7 ",
        b"198.51.100.7, 10.0.0.1",
        b"198.51.100.7:4321",
        b"[2001:db8::1]:80",
        b"2001:db8::1",
        b"",
        b"127.0.0.1",
        b"010.0.0.1",
        b"not an address",
        b"caf\xe9",
    ]
    protos = [None, b"https", b" http ", b"wss", b"gopher", b""]
    trusted_lists = ["127.0.0.1", "127.0.0.1,10.0.0.1", "10.0.0.0/8", "*", "::1", "127.0.0.1, unix:/run/x.sock"]
    compared = taken = 0
    for trusted in trusted_lists:
        fast = transport.Forwarded(ProxyHeadersMiddleware(None, trusted))  # type: ignore[arg-type]
        for peer in peers:
            for xff in forwarded_fors:
                for proto in protos:
                    headers = [(b"host", b"x")]
                    if xff is not None:
                        headers.append((b"x-forwarded-for", xff))
                    if proto is not None:
                        headers.append((b"x-forwarded-proto", proto))
                    scope = {"type": "http", "scheme": "http", "client": (peer, 5555) if peer else None}
                    scope["headers"] = headers
                    expected = _by_uvicorn(trusted, scope)
                    mine = dict(scope)
                    if fast.apply(mine):
                        taken += 1
                        assert (mine["client"], mine["scheme"]) == (expected["client"], expected["scheme"]), (
                            trusted,
                            peer,
                            xff,
                            proto,
                        )
                    compared += 1
    # It takes the common requests itself (not only ever deferring), and defers the rest.
    assert compared == len(trusted_lists) * len(peers) * len(forwarded_fors) * len(protos)
    assert 0.2 * compared < taken < compared
    # Two X-Forwarded-For headers (joined by the middleware) go to uvicorn's code.
    two = {"type": "http", "scheme": "http", "client": ("127.0.0.1", 1)}
    two["headers"] = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-for", b"198.51.100.8")]
    assert not transport.Forwarded(ProxyHeadersMiddleware(None, "127.0.0.1")).apply(dict(two))  # type: ignore[arg-type]
