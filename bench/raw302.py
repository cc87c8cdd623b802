"""The ceiling for a redirect on this server: a raw ASGI app answering 302, nothing else.

Served by the same uvicorn, with the same options as `affnet serve`, so the click bench can say
how far /c/{code} is from what the server itself allows (not only from a Litestar route)."""

from __future__ import annotations

START = {
    "type": "http.response.start",
    "status": 302,
    "headers": [(b"location", b"https://shop.example.com/landing"), (b"content-length", b"0")],
}
BODY = {"type": "http.response.body", "body": b""}


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send(START)
    await send(BODY)
