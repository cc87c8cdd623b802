"""The ceiling for a redirect on this server: a raw ASGI app answering 302, nothing else.

Served by the same server (uvicorn or granian), with the same options as `affnet serve`, so the
click bench can say how far /c/{code} is from what the server itself allows (not only from a
Litestar route)."""

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


def proxied():
    """The app behind the proxy wrapper `affnet serve --server granian` puts X-Forwarded-For through
    (granian's own, trusting loopback; uvicorn has it built in): granian --factory raw302:proxied."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    return wrap_asgi_with_proxy_headers(app, ["127.0.0.1"])
