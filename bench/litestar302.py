"""The baseline a redirect route is compared with: a bare Litestar app whose one route answers 302.

Served by the same server (uvicorn or granian), with the same options as `affnet serve`
(common.asgi_302), so the benches can say what affnet's own work costs on top of Litestar's
routing. It lives here, not in the product, so the product carries no bench-only route."""

from __future__ import annotations

from litestar import Litestar, Response, get


@get("/__bench/302", include_in_schema=False)
async def bench_baseline() -> Response:
    """The smallest Litestar route that answers a redirect."""
    return Response(content=b"", status_code=302, headers={"location": "https://example.com/landing"})


app = Litestar(route_handlers=[bench_baseline], openapi_config=None)


def proxied():
    """The app behind the proxy wrapper `affnet serve --server granian` puts X-Forwarded-For through
    (granian's own, trusting loopback; uvicorn has it built in): granian --factory litestar302:proxied."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    return wrap_asgi_with_proxy_headers(app, ["127.0.0.1"])
