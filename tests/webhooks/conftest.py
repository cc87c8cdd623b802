"""A real HTTP receiver on loopback for the webhook and postback tests, and endpoints registered
through the service. The receiver keeps every request; its owner verifies them with the
Standard Webhooks library (`verify`), as a real receiver would."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from standardwebhooks import Webhook

from dev.services import free_port
from server.webhooks import outbox, service


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that answers every request with `status` (200 unless told) and
    records it. stop() closes the port (connections are refused), start() opens it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def respond(self, status: int) -> None:
        self.status = status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            self.command,
                            parts.path,
                            parts.query,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                status = receiver.status
                reply = b"ok" if 200 <= status < 300 else b"not now"
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = _answer  # noqa: N815
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler

    def start(self) -> Receiver:
        if self._server is None:
            ThreadingHTTPServer.allow_reuse_address = True
            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
        self.status = 200

    def verify(self, secret: str, request: Received) -> object:
        """The request as a Standard Webhooks receiver checks it: the payload, or the library raises."""
        return Webhook(secret).verify(request.body, request.headers)


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(_receiver_server: Receiver) -> Iterator[Receiver]:
    """The loopback receiver, listening, empty and answering 200 for this test."""
    _receiver_server.start()
    _receiver_server.clear()
    yield _receiver_server
    _receiver_server.start()
    _receiver_server.clear()


Register = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
def webhook_endpoint(clean) -> Register:
    """`await webhook_endpoint(owner, url, events=(...))`: an endpoint of that user (a user id, or
    anything with a `user_id` or an `id`, such as a CurrentUser), registered through the service
    (loopback allowed, as the tests' settings do); (endpoint_id, secret)."""

    async def register(owner: object, url: str, events: tuple[str, ...] | list[str] = outbox.EVENT_TYPES):
        owner_id = owner if isinstance(owner, int) else getattr(owner, "user_id", None) or owner.id  # type: ignore[attr-defined]
        return await service.create_endpoint(owner_id, url, event_types=list(events), allow_loopback=True)

    outbox.forget()
    return register
