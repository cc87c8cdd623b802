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

**Instant answers.** For every request uvicorn builds a request-response cycle, starts an asyncio
task for the app, and turns the app's `send` messages back into bytes: about as much CPU as a click's
whole decision. A request family that can often be answered without waiting on anything registers an
instant answer (`answer_instantly`, the click redirect's: server/http/tracking/public.py:
`click_now`): when the request's headers are in, the protocol asks it with the request's ASGI scope
(after the trusted proxy's X-Forwarded-For and -Proto, as uvicorn's ProxyHeadersMiddleware would
apply them), and writes the answer's status line and headers itself, no task started, with the
headers uvicorn adds (Date), its keep-alive rules and its access log line. An answer of None (the
link is not in memory, an ad click's offer to check, another method) or one that raised leaves the
request to uvicorn and the app as if nothing was asked, so an answer must record nothing before
its last step that can fail, and give header values uvicorn would accept (no control characters:
the click's Location is a checked URL, server/core/deeplink.py). Only a request with no other response in
progress on its connection is asked (pipelined ones wait their turn as uvicorn makes them).
"""

from __future__ import annotations

import asyncio
import logging
import types
import urllib.parse
import weakref
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from server.core.logthrottle import LogThrottle

log = logging.getLogger("affnet.web")
_failed = LogThrottle(log, "instant answer")  # once per interval, with a count: a bug here fails every click

InstantAnswer = Callable[[dict], "list[tuple[bytes, bytes]] | None"]
_instant: dict[bytes, InstantAnswer] = {}  # by path prefix ("/c/"): at most a few


def answer_instantly(prefix: bytes, answer: InstantAnswer | None) -> None:
    """Register (None: drop) the instant answer of the requests whose path starts with `prefix`:
    a 302's headers for its ASGI scope, or None to let the app answer (see the module's text)."""
    if answer is None:
        _instant.pop(prefix, None)
    else:
        _instant[prefix] = answer


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    return None


# The request-response cycle of an instantly answered request, as uvicorn's protocol asks it after
# the answer (response_complete; connection_lost sets its message_event).
_ANSWERED = types.SimpleNamespace(response_complete=True, keep_alive=False, message_event=asyncio.Event())
# uvicorn's ProxyHeadersMiddleware around an app that does nothing, per server config (one a process).
_proxies: weakref.WeakKeyDictionary[Any, ProxyHeadersMiddleware] = weakref.WeakKeyDictionary()


class Forwarded:
    """uvicorn's ProxyHeadersMiddleware for the requests a proxy sends most (the peer a trusted
    proxy, one X-Forwarded-For hop, an IPv4 client), without parsing the client's address with
    `ipaddress`: with no trusted networks, an IPv4 address is trusted exactly when its text is one
    of the trusted addresses' (ipaddress accepts only the canonical dotted quad, which is what
    str() of a trusted address gives). Anything else, it says False and uvicorn's code decides.
    tests/unit/test_transport.py compares the two on many requests."""

    __slots__ = ("_trusted", "usable")

    def __init__(self, proxy: ProxyHeadersMiddleware) -> None:
        hosts = proxy.trusted_hosts
        self.usable = not hosts.always_trust and not hosts.trusted_networks
        self._trusted = frozenset({str(h) for h in hosts.trusted_hosts if h.version == 4} | hosts.trusted_literals)
        if any(h.version == 6 for h in hosts.trusted_hosts):
            self.usable = False  # an IPv6 peer's text has many spellings: uvicorn compares addresses

    def apply(self, scope: dict) -> bool:
        """Set the scope's client and scheme as the middleware would; False: not done, ask it."""
        if not self.usable:
            return False
        client = scope.get("client")
        peer = client[0] if client else None
        if not peer or ":" in peer:
            return False
        if peer not in self._trusted:
            return True  # an untrusted peer: the middleware would change nothing
        proto = forwarded_for = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                if forwarded_for is not None:
                    return False  # several headers: joined by the middleware
                forwarded_for = value
            elif name == b"x-forwarded-proto":
                proto = value  # the last one, as the middleware takes it
        if forwarded_for is not None:
            host = forwarded_for.decode("latin1").strip()
            if not host or "," in host or ":" in host or "[" in host or host in self._trusted:
                return False  # several hops, a port, IPv6, a trusted client or nothing: uvicorn's way
        if proto is not None:
            scheme = proto.decode("latin1").strip()
            if scheme in _SCHEMES:
                scope["scheme"] = scheme
        if forwarded_for is not None:
            scope["client"] = (host, 0)
        return True


_SCHEMES = frozenset({"http", "https", "ws", "wss"})  # as the middleware takes them (set as they are on HTTP)
_fast: weakref.WeakKeyDictionary[Any, Forwarded] = weakref.WeakKeyDictionary()


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
    """uvicorn's httptools protocol, writing each response in one call, and giving instant answers
    (see the module's text)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        if _instant and (self.cycle is None or self.cycle.response_complete) and self.limit_concurrency is None:
            url = self.url
            answer = _instant.get(url[: url.find(b"/", 1) + 1])
            if answer is not None and not self.pipeline and not self.parser.should_upgrade():
                try:
                    if self._answer(answer):
                        return
                except Exception:  # noqa: BLE001 - the app answers it, and says what went wrong
                    _failed.failed("an instant answer failed for %s; the app answered", self.url[:80])
        super().on_headers_complete()

    def _answer(self, answer: InstantAnswer) -> bool:
        """Answer the request now if `answer` can: True when it did (what uvicorn's
        on_headers_complete, RequestResponseCycle.send and on_response_complete would do)."""
        parser, scope = self.parser, self.scope
        http_version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        view = {
            **scope,
            "method": method,
            "path": self.root_path + path,
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": parsed.query or b"",
        }
        if http_version != "1.1":
            view["http_version"] = http_version
        if self.config.proxy_headers:
            self._forwarded(view)
        headers = answer(view)
        if headers is None:
            return False
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        content = [STATUS_LINE[302]]
        for name, value in self.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        for name, value in headers:  # lower-case names, values without control characters: the answer's word
            content += (name, b": ", value, b"\r\n")
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(view),  # type: ignore[arg-type]
                method,
                get_path_with_query_string(view),  # type: ignore[arg-type]
                view["http_version"],
                302,
            )
        self.cycle = _ANSWERED  # type: ignore[assignment]
        # Kept for the end of the loop's turn like every write here: written at once instead (from
        # within data_received) the same load cost the loop thread 20 µs more system time a click
        # (bench/click_flush_cost.py, 2026-12-07).
        self.transport.write(b"".join(content))
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()
        return True

    def _forwarded(self, scope: dict) -> None:
        """X-Forwarded-For and -Proto, believed as uvicorn's ProxyHeadersMiddleware believes them:
        by its own code (its __call__ with an app that does nothing runs to its end at once), or
        by `Forwarded.apply`, which gives the same answers for the requests it takes."""
        config = self.config
        proxy = _proxies.get(config)
        if proxy is None:
            proxy = _proxies[config] = ProxyHeadersMiddleware(_nothing, config.forwarded_allow_ips)  # type: ignore[arg-type]
        fast = _fast.get(config)
        if fast is None:
            fast = _fast[config] = Forwarded(proxy)
        if fast.apply(scope):
            return
        call = proxy(scope, None, None)  # type: ignore[arg-type]
        try:
            call.send(None)
        except StopIteration:
            pass
        else:  # it awaited something: not the middleware this was written for
            call.close()
            raise RuntimeError("ProxyHeadersMiddleware did not finish at once")
