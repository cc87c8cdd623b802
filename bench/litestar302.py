"""The baseline a redirect route is compared with: a bare Litestar app whose one route answers 302.

Served by the same uvicorn, with the same options as `affnet serve` (common.asgi_302), so the benches can
say what affnet's own work costs on top of Litestar's routing. It lives here, not in the product, so the
product carries no bench-only route."""

from __future__ import annotations

from litestar import Litestar, Response, get


@get("/__bench/302", include_in_schema=False)
async def bench_baseline() -> Response:
    """The smallest Litestar route that answers a redirect."""
    return Response(content=b"", status_code=302, headers={"location": "https://example.com/landing"})


app = Litestar(route_handlers=[bench_baseline], openapi_config=None)
