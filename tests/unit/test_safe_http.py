"""Outbound calls to users' URLs (server/core/safe_http.py) reach public addresses only, at the
address that was checked, and a slow or large answer cannot hold the worker: against a real HTTP
server on loopback, with no mock of the network stack."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.core.safe_http import UnsafeUrl, check_destination, check_url, send


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A small HTTP/1.1 server on 127.0.0.1 that records each connection and request.
    `mode`: "answer" (status, extra headers, body), "silent" (reads, never answers),
    "drip" (a header, then one byte every 0.1 s forever)."""

    status: int = 200
    extra: dict[str, str] = field(default_factory=dict)
    payload: bytes = b"ok"
    mode: str = "answer"
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    server: asyncio.Server | None = None
    tls: ssl.SSLContext | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Seen(method, target, headers, body))
            if self.mode == "silent":
                await reader.read()  # until the client gives up and closes
            elif self.mode == "drip":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(100):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.1)
            else:
                extra = "".join(f"{k}: {v}\r\n" for k, v in self.extra.items())
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.payload)}\r\n{extra}\r\n".encode()
                    + self.payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver():
    started = await Receiver().start()
    yield started
    started.server.close()


def fixed(*addresses: str):
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolver


# --- refused, with a sentence for a person, and nothing sent ---------------------------------------

REFUSED = [
    ("http://127.0.0.1:{port}/hook", "unsafe_url_address", "affnet's own server (127.0.0.1)"),
    ("http://[::1]:{port}/hook", "unsafe_url_address", "(::1)"),
    ("http://169.254.169.254/latest/meta-data", "unsafe_url_address", "link-local (169.254.169.254)"),
    ("http://10.0.0.1/", "unsafe_url_address", "inside a private network (10.0.0.1)"),
    ("http://[::ffff:10.0.0.1]/", "unsafe_url_address", "inside a private network (::ffff:10.0.0.1)"),
    ("http://0.0.0.0:{port}/", "unsafe_url_address", "not a public internet address (0.0.0.0)"),
    ("http://2130706433:{port}/", "unsafe_url_host", "usual form"),
    ("http://0x7f.1:{port}/", "unsafe_url_host", "usual form"),
    ("http://127.1:{port}/", "unsafe_url_host", "usual form"),
    ("http://0177.0.0.1:{port}/", "unsafe_url_host", "usual form"),
    ("file:///etc/passwd", "unsafe_url_scheme", "must start with https:// or http://"),
    ("gopher://example.com:70/_GET", "unsafe_url_scheme", "https://"),
    ("ftp://example.com/", "unsafe_url_scheme", "https://"),
    ("http://example.com:22/", "unsafe_url_port", "Port 22 is not allowed: use 80, 443 or 8443."),
    ("http://user:pw@example.com/", "unsafe_url_credentials", "user name or password"),
    ("http://example.com\\@127.0.0.1:{port}/", "unsafe_url_syntax", "not allowed"),
    ("http://[fe80::1%25eth0]/", "unsafe_url_host", "not a valid host name"),
    ("http://xn--zz.com/", "unsafe_url_host", "not a valid host name"),
    ("http://" + "a" * 2000 + ".com/", "unsafe_url_length", "at most 2,000 characters"),
]


@pytest.mark.parametrize(("url", "code", "words"), REFUSED)
async def test_unsafe_urls_are_refused_with_a_reason_and_nothing_is_sent(
    receiver: Receiver, url: str, code: str, words: str
) -> None:
    url = url.replace("{port}", str(receiver.port))
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url)
    assert refused.value.code == code
    assert words in refused.value.message
    with pytest.raises(UnsafeUrl) as refused_at_send:
        await send("POST", url, body=b"{}", timeout=1)
    assert refused_at_send.value.code == code
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "address",
    [
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # shared (carrier-grade NAT)
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "[::]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fe80::1]",
        "[fec0::1]",  # site-local
        "[ff02::1]",
        "[2001:db8::1]",  # documentation
        "[::10.0.0.1]",  # IPv4-compatible
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "[2002:a00:1::1]",  # 6to4 of 10.0.0.1
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
    ],
)
def test_every_non_public_address_range_is_refused(address: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        check_url(f"https://{address}/hook")
    assert refused.value.code == "unsafe_url_address"
    assert "affnet only calls public addresses" in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/affnet",
        "http://hooks.example.com:8443/a?b=1&c=%20",
        "https://bücher.example/hook",  # an internationalised name, sent as IDNA
        "https://93.184.216.34/",
        "https://[2606:4700::1111]/",
        "https://[64:ff9b::808:808]/",  # NAT64 of a public address
    ],
)
def test_plain_public_urls_pass_the_save_time_check(url: str) -> None:
    check_url(url)


def test_allow_loopback_admits_loopback_on_any_port_and_nothing_else() -> None:
    check_url("http://127.0.0.1:8000/hook", allow_loopback=True)
    check_url("http://127.3.4.5:1/hook", allow_loopback=True)
    check_url("http://[::1]:9/hook", allow_loopback=True)
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(UnsafeUrl, match="public addresses"):
            check_url(url, allow_loopback=True)
    with pytest.raises(UnsafeUrl) as refused:  # any port is for a loopback receiver only
        check_url("http://93.184.216.34:22/", allow_loopback=True)
    assert refused.value.code == "unsafe_url_port"


async def test_a_name_that_resolves_to_loopback_is_refused(receiver: Receiver) -> None:
    url = f"http://localhost:{receiver.port}/hook"  # the real resolver
    with pytest.raises(UnsafeUrl) as refused:
        await check_destination(url)
    assert refused.value.code == "unsafe_url_port"  # its port, then (any port) its address:
    with pytest.raises(UnsafeUrl) as refused:
        await check_destination("http://localhost/hook")
    assert refused.value.code == "unsafe_url_address"
    assert "localhost → " in refused.value.message
    with pytest.raises(UnsafeUrl):
        await send("GET", "http://localhost/hook", timeout=1)
    assert receiver.connections == 0


async def test_a_name_is_refused_when_any_of_its_addresses_is_private() -> None:
    with pytest.raises(UnsafeUrl) as refused:
        await check_destination("https://hooks.example.com/", resolver=fixed("10.0.0.1"))
    assert refused.value.message == (
        "This address points inside a private network (hooks.example.com → 10.0.0.1);"
        " affnet only calls public addresses."
    )
    with pytest.raises(UnsafeUrl):  # one public address does not excuse a private one
        await check_destination("https://hooks.example.com/", resolver=fixed("93.184.216.34", "10.0.0.1"))
    with pytest.raises(UnsafeUrl):
        await send("POST", "https://hooks.example.com/", body=b"{}", resolver=fixed("93.184.216.34", "::1"))
    assert await check_destination("https://hooks.example.com/", resolver=fixed("93.184.216.34")) == ["93.184.216.34"]


async def test_a_name_that_does_not_resolve_is_refused_for_a_person() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeUrl) as refused:
        await check_destination("https://no-such-host.invalid/", resolver=nothing)
    assert refused.value.code == "unresolvable_host"
    assert "no-such-host.invalid could not be found" in refused.value.message


# --- what is sent, to where -------------------------------------------------------------------------


async def test_the_request_arrives_exactly_at_the_checked_address_with_the_name_as_host(receiver: Receiver) -> None:
    # The name exists in no DNS: the request can only arrive through the address checked once.
    url = f"http://hooks.example.com:{receiver.port}/hook?x=1"
    body = b'{"type":"conversion.approved","amount_minor":1250}'
    reply = await send(
        "POST",
        url,
        headers={"Content-Type": "application/json", "Webhook-Id": "msg_1", "Host": "evil.example"},
        body=body,
        allow_loopback=True,
        resolver=fixed("127.0.0.1"),
    )
    assert (reply.status, reply.body, reply.error, reply.address) == (200, b"ok", None, "127.0.0.1")
    [seen] = receiver.requests
    assert (seen.method, seen.target, seen.body) == ("POST", "/hook?x=1", body)
    assert seen.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["webhook-id"] == "msg_1"
    assert reply.elapsed_ms >= 0


async def test_when_one_address_cannot_be_reached_the_next_checked_one_is_called(receiver: Receiver) -> None:
    # Nothing listens on ::1 at the receiver's port (or the machine has no IPv6): refused there,
    # delivered at 127.0.0.1, which was checked with it.
    url = f"http://hooks.example.com:{receiver.port}/hook"
    reply = await send("POST", url, body=b"{}", allow_loopback=True, resolver=fixed("::1", "127.0.0.1"), timeout=2)
    assert (reply.status, reply.address) == (200, "127.0.0.1")
    assert len(receiver.requests) == 1


async def test_a_redirect_is_returned_not_followed(receiver: Receiver) -> None:
    target = await Receiver().start()
    try:
        receiver.status = 302
        receiver.extra = {"Location": f"http://127.0.0.1:{target.port}/stolen"}
        reply = await send("GET", f"http://127.0.0.1:{receiver.port}/hook", allow_loopback=True, timeout=2)
        assert reply.status == 302
        assert reply.error is None
        assert len(receiver.requests) == 1
        assert target.connections == 0
    finally:
        target.server.close()


async def test_a_large_answer_is_cut_at_max_body(receiver: Receiver) -> None:
    receiver.payload = b"y" * 200_000
    reply = await send("GET", f"http://127.0.0.1:{receiver.port}/", allow_loopback=True, max_body=1000)
    assert reply.status == 200
    assert reply.body == b"y" * 1000


async def test_a_server_that_never_answers_times_out(receiver: Receiver) -> None:
    receiver.mode = "silent"
    started = time.monotonic()
    reply = await send("POST", f"http://127.0.0.1:{receiver.port}/", body=b"{}", allow_loopback=True, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert reply.status is None
    assert reply.error is not None and reply.error.startswith("timeout")
    assert reply.address == "127.0.0.1"


async def test_a_trickling_answer_is_cut_by_the_total_deadline(receiver: Receiver) -> None:
    receiver.mode = "drip"  # each byte within the read timeout, the whole never
    started = time.monotonic()
    reply = await send("GET", f"http://127.0.0.1:{receiver.port}/", allow_loopback=True, timeout=0.4)
    assert time.monotonic() - started < 1.2
    assert reply.status is None
    assert reply.error is not None and reply.error.startswith("timeout")


async def test_a_refused_connection_is_an_error_reply(receiver: Receiver) -> None:
    port = receiver.port
    receiver.server.close()
    await receiver.server.wait_closed()
    reply = await send("POST", f"http://127.0.0.1:{port}/", body=b"{}", allow_loopback=True, timeout=2)
    assert reply.status is None
    assert reply.error is not None and reply.error.startswith("connection_refused")
    assert reply.body == b""


# --- https: the name in SNI and in the certificate check -------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=hooks.example.com",
         "-addext", "subjectAltName=DNS:hooks.example.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_sends_the_name_in_sni_and_checks_the_certificate(self_signed: tuple[Path, Path]) -> None:
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server = await Receiver(tls=context).start()
    try:
        reply = await send(
            "POST", f"https://hooks.example.com:{server.port}/hook", body=b"{}",
            allow_loopback=True, resolver=fixed("127.0.0.1"), timeout=2,
        )  # fmt: skip
        assert names == ["hooks.example.com"]  # SNI is the name, though the socket went to 127.0.0.1
        # A self-signed certificate is not trusted: verification is on, and nothing was delivered.
        assert reply.status is None
        assert reply.error is not None and reply.error.startswith("tls")
        assert server.requests == []
    finally:
        server.server.close()
