"""Outbound HTTP to addresses our users give us (webhooks, publisher postbacks), without letting
them point affnet at its own network (SSRF).

A URL is accepted only when it is plain: http or https, port 80, 443 or 8443, no user name or
password, a host that is a valid DNS name or an IP written the usual way (no `2130706433`, `0x7f.1`,
`127.1`: other parsers read those as addresses), at most 2,000 characters. The host is resolved
ONCE and refused when ANY of its addresses is not a public internet address: loopback, private
(10/8, 172.16/12, 192.168/16, shared 100.64/10, IPv6 unique-local and site-local), link-local
(169.254/16: the cloud metadata service; fe80::/10), multicast, reserved, unspecified,
documentation and benchmarking ranges, and IPv6 forms that embed a refused IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, NAT64).

`send` then connects to THAT address, not to the name: the request goes to the IP with the name in
the Host header and, for https, in TLS SNI, where the certificate is checked against the name
(httpx's `sni_hostname` request extension: httpcore's connection passes it to start_tls as
`server_hostname`, and anyio wraps the socket with it, so Python's ssl verifies the certificate for
the name). A DNS answer that changes between the check and the connection (rebinding) changes
nothing. Redirects are never followed (a 3xx is just a Reply), the response body is read up to
`max_body`, and `timeout` bounds connect, each read and the whole exchange. Proxies from the
environment are ignored (trust_env=False), and each send has its own connection: a pooled one,
keyed by IP, could carry one name's TLS session to another name at the same address.

Development and tests: `allow_loopback=True` (the WEBHOOKS_ALLOW_LOOPBACK setting) admits 127/8
and ::1 on any port, and nothing else (10.x stays refused).

Resolution is `resolve(host, port)`; `check_destination` and `send` take `resolver=` so a test can
answer with the addresses it needs (a name that resolves to 10.0.0.1) without touching DNS."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
import idna

from server.core.i18n import _, number_text

MAX_URL_LENGTH = 2000
ALLOWED_PORTS = frozenset({80, 443, 8443})
DEFAULT_PORTS = {"http": 80, "https": 443}
CONNECT_TIMEOUT = 5.0  # at most, and never more than the caller's timeout
DNS_TIMEOUT = 5.0  # check_destination's lookup (send's is within its own timeout)
MAX_ADDRESSES_TRIED = 3

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class UnsafeUrl(Exception):
    """A URL affnet will not call: `.message` is a sentence for the person who gave it (already
    translated), `.code` a stable word for programs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Reply:
    """What came back. `status` None means no HTTP answer: `error` then says why, as
    "<kind>: <detail>" with kind one of timeout, connection_refused, tls, connect, protocol, network,
    dns. `address` is the IP that was called (None when resolution failed)."""

    status: int | None
    body: bytes
    elapsed_ms: int
    error: str | None
    address: str | None


class _Target(NamedTuple):
    scheme: str
    host: str  # lower-case ASCII name (IDNA), or the IP's text for a literal
    ip: Address | None  # set when the URL names an IP
    port: int
    explicit_port: bool
    target: str  # path and query, as sent on the request line


# --- the URL itself (no DNS) -------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# What the WHATWG URL parser (browsers, many HTTP libraries) would read as an IPv4 number.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Spaces and control characters (urlsplit quietly drops some), and the backslash browsers read as /.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


def check_url(url: str, *, allow_loopback: bool = False) -> None:
    """Refuse (UnsafeUrl) a URL affnet will not call, from its text alone: cheap, no DNS, for the
    moment a person saves it. `check_destination` adds the resolved addresses."""
    target = _parse(url, allow_loopback=allow_loopback)
    if target.ip is not None:
        _check_addresses(target, [target.ip], allow_loopback=allow_loopback)


def _parse(url: str, *, allow_loopback: bool) -> _Target:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(
            "unsafe_url_length",
            _("This URL is too long: at most %(limit)s characters.", limit=number_text(MAX_URL_LENGTH)),
        )
    if _FORBIDDEN.search(url):
        raise UnsafeUrl("unsafe_url_syntax", _("The URL contains spaces or characters that are not allowed."))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url[len(parts.scheme) :].startswith("://"):
        raise UnsafeUrl("unsafe_url_scheme", _("The URL must start with https:// or http://."))
    netloc = parts.netloc
    if "@" in netloc:
        raise UnsafeUrl(
            "unsafe_url_credentials", _("The URL must not contain a user name or password (user:password@).")
        )
    raw_host, port_text = _split_authority(netloc)
    ip, host = _host(raw_host)
    explicit = bool(port_text)
    port = int(port_text) if explicit else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise UnsafeUrl("unsafe_url_port", _("%(port)s is not a port number.", port=port_text))
    # An IP's port is checked after the IP itself (_check_addresses): the address is the news.
    if port not in ALLOWED_PORTS and not allow_loopback and ip is None:
        raise UnsafeUrl("unsafe_url_port", _("Port %(port)s is not allowed: use 80, 443 or 8443.", port=port))
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return _Target(scheme, host, ip, port, explicit, target)


def _split_authority(netloc: str) -> tuple[str, str]:
    """(host, port text) of `host`, `host:port`, `[v6]` or `[v6]:port`."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise _bad_host(netloc)
        return "[" + host + "]", rest[1:]
    host, colon, port = netloc.partition(":")
    if ":" in port:
        raise _bad_host(netloc)
    if colon and port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        raise UnsafeUrl("unsafe_url_port", _("%(port)s is not a port number.", port=port))
    return host, port


def _bad_host(host: str) -> UnsafeUrl:
    return UnsafeUrl("unsafe_url_host", _("%(host)s is not a valid host name.", host=host))


def _host(raw: str) -> tuple[Address | None, str]:
    """(the IP, its text) for an IP literal, (None, the ASCII name) for a DNS name."""
    if not raw:
        raise UnsafeUrl("unsafe_url_host", _("The URL has no host name."))
    if raw.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise _bad_host(raw) from None
        if v6.scope_id:  # fe80::1%eth0: an interface of this machine
            raise _bad_host(raw)
        return v6, str(v6)
    try:
        v4 = ipaddress.IPv4Address(raw)  # only the usual dotted form, no leading zeros
    except ValueError:
        pass
    else:
        return v4, str(v4)
    name = raw.lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise _bad_host(raw) from None
    name = name.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _bad_host(raw)
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise UnsafeUrl(
            "unsafe_url_host",
            _("Write an IP address in its usual form (such as 203.0.113.7), or use a host name."),
        )
    for label in labels:
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                raise _bad_host(raw) from None
    return None, name


# --- addresses ---------------------------------------------------------------------------------

_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def _refusal(ip: Address) -> str | None:
    """Why affnet will not call this address ("loopback", "private", "link_local", "not_public"),
    or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _refusal(embedded)
        if ip in _IPV4_COMPATIBLE and ip != _LOOPBACK_V6:
            return "not_public"  # ::a.b.c.d, deprecated (and :: itself)
    if ip.is_loopback:
        return "loopback"
    if any(ip in network for network in _PRIVATE if network.version == ip.version):
        return "private"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_private or not ip.is_global:
        return "not_public"
    return None


def _is_loopback_allowed(ip: Address) -> bool:
    """What allow_loopback admits: 127.0.0.0/8 and ::1, as written (not their IPv6 embeddings)."""
    return ip in _LOOPBACK_V4 if isinstance(ip, ipaddress.IPv4Address) else ip == _LOOPBACK_V6


def _check_addresses(target: _Target, addresses: list[Address], *, allow_loopback: bool) -> None:
    for ip in addresses:
        if allow_loopback and _is_loopback_allowed(ip):
            continue
        reason = _refusal(ip)
        if reason is not None:
            shown = _text(ip) if target.ip is not None else f"{target.host} → {_text(ip)}"
            raise UnsafeUrl("unsafe_url_address", _address_message(reason, shown))
    # Any port is for a local receiver only: a public address keeps to 80, 443 and 8443.
    if target.port not in ALLOWED_PORTS and not all(_is_loopback_allowed(ip) for ip in addresses):
        raise UnsafeUrl("unsafe_url_port", _("Port %(port)s is not allowed: use 80, 443 or 8443.", port=target.port))


def _text(ip: Address) -> str:
    """An address as people write it: ::ffff:10.0.0.1 rather than Python 3.11's ::ffff:a00:1."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def _address_message(reason: str, address: str) -> str:
    if reason == "loopback":
        return _(
            "This address points to affnet's own server (%(address)s); affnet only calls public addresses.",
            address=address,
        )
    if reason == "private":
        return _(
            "This address points inside a private network (%(address)s); affnet only calls public addresses.",
            address=address,
        )
    if reason == "link_local":
        return _(
            "This address is link-local (%(address)s), where servers reach their own network's services;"
            " affnet only calls public addresses.",
            address=address,
        )
    return _(
        "This address is not a public internet address (%(address)s); affnet only calls public addresses.",
        address=address,
    )


# --- resolution --------------------------------------------------------------------------------


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver, once), in the order to try them.
    Raises OSError (socket.gaierror) when it does not resolve."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _DnsTrouble(Exception):
    """Resolution failed for a reason that may pass (a timeout, a server failure)."""


async def _addresses(target: _Target, resolver: Resolver) -> list[Address]:
    if target.ip is not None:
        return [target.ip]
    try:
        answers = await resolver(target.host, target.port)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise _DnsTrouble(str(exc)) from exc
        raise _unresolvable(target.host) from exc
    except OSError as exc:
        raise _DnsTrouble(str(exc)) from exc
    addresses: list[Address] = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer))
        except ValueError:  # a scope id (fe80::1%eth0) or junk: never a public address
            raise UnsafeUrl("unsafe_url_address", _address_message("not_public", f"{target.host} → {answer}")) from None
    if not addresses:
        raise _unresolvable(target.host)
    return addresses


def _unresolvable(host: str) -> UnsafeUrl:
    return UnsafeUrl("unresolvable_host", _("%(host)s could not be found in DNS: check the host name.", host=host))


async def check_destination(url: str, *, allow_loopback: bool = False, resolver: Resolver | None = None) -> list[str]:
    """check_url, then the host resolved once: the addresses (as text), or UnsafeUrl when any of
    them is not public (or the name does not resolve: code "unresolvable_host")."""
    target = _parse(url, allow_loopback=allow_loopback)
    try:
        async with asyncio.timeout(DNS_TIMEOUT):
            addresses = await _addresses(target, resolver or resolve)
    except (_DnsTrouble, TimeoutError):
        raise _unresolvable(target.host) from None
    _check_addresses(target, addresses, allow_loopback=allow_loopback)
    return [str(ip) for ip in addresses]


# --- sending -----------------------------------------------------------------------------------


@cache
def _tls() -> ssl.SSLContext:
    """The system's trusted certificates, with host name checking, loaded once per process."""
    return httpx.create_ssl_context()


async def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,  # noqa: ASYNC109 - the agreed interface; it bounds DNS, connect and reads
    max_body: int = 65536,
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
) -> Reply:
    """One request to `url`, checked and pinned to the address it was checked at (module doc).
    An unsafe URL raises UnsafeUrl and nothing is sent; network trouble is a Reply with `error`."""
    started = time.monotonic()
    target = _parse(url, allow_loopback=allow_loopback)
    address: Address | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                addresses = await _addresses(target, resolver or resolve)
            except _DnsTrouble as exc:
                return _failed(started, None, f"dns: {exc}")
            _check_addresses(target, addresses, allow_loopback=allow_loopback)
            # Every address was checked, so any may be called: the next one when a connection cannot
            # be made (an AAAA record on a host without IPv6 routing), nothing having been sent.
            candidates = addresses[:MAX_ADDRESSES_TRIED]
            for number, candidate in enumerate(candidates, start=1):
                address = candidate
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                    address = address.ipv4_mapped  # the same host, reached without a dual-stack socket
                try:
                    return await _exchange(
                        method, target, address, headers, body, timeout, max_body, started,
                        last=number == len(candidates),
                    )  # fmt: skip
                except _NotConnected:
                    continue
            raise AssertionError("the last address answers or fails with a Reply")  # pragma: no cover
    except TimeoutError:
        return _failed(started, address, f"timeout: no complete answer within {timeout:g} s")


async def _exchange(
    method: str,
    target: _Target,
    address: Address,
    headers: Mapping[str, str] | None,
    body: bytes,
    timeout: float,  # noqa: ASYNC109 - the caller's deadline, for httpx's own timeouts
    max_body: int,
    started: float,
    *,
    last: bool,
) -> Reply:
    """The request to `address`. Raises _NotConnected, unless `last`, when no connection could be
    made (the caller tries the next address)."""
    ip_text = f"[{address}]" if address.version == 6 else str(address)
    default_port = target.port == DEFAULT_PORTS[target.scheme]
    host_text = f"[{target.host}]" if ":" in target.host else target.host
    sent = {key: value for key, value in (headers or {}).items() if key.lower() != "host"}
    sent["Host"] = host_text if default_port else f"{host_text}:{target.port}"
    if not any(key.lower() == "user-agent" for key in sent):
        sent["User-Agent"] = "affnet"
    sent["Accept-Encoding"] = "identity"  # the cap counts bytes as sent: no decompression bomb
    extensions = {"sni_hostname": target.host} if target.scheme == "https" and target.ip is None else {}
    request_url = f"{target.scheme}://{ip_text}:{target.port}{target.target}"
    limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
    client = httpx.AsyncClient(verify=_tls(), trust_env=False, follow_redirects=False, timeout=limits, http2=False)
    try:
        request = client.build_request(method, request_url, headers=sent, content=body or None, extensions=extensions)
        response = await client.send(request, stream=True)
        try:
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) >= max_body:
                    break
            return Reply(response.status_code, bytes(received[:max_body]), _ms(started), None, str(address))
        finally:
            await response.aclose()
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        error = _describe(exc)
        if not last and not error.startswith("tls"):
            raise _NotConnected from exc
        return _failed(started, address, error)
    except httpx.TimeoutException as exc:
        return _failed(started, address, f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return _failed(started, address, _describe(exc))
    finally:
        await client.aclose()


class _NotConnected(Exception):
    """No connection to this address (refused, unreachable, timed out): nothing was sent."""


def _describe(exc: BaseException) -> str:
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    detail = str(chain[-1]) or str(exc) or type(exc).__name__
    if any(isinstance(c, ConnectionRefusedError) or getattr(c, "errno", None) == errno.ECONNREFUSED for c in chain):
        return f"connection_refused: {detail}"
    if any(isinstance(c, ssl.SSLError) for c in chain):
        return f"tls: {detail}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timeout: {type(exc).__name__}"
    if isinstance(exc, httpx.ConnectError):
        return f"connect: {detail}"
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        return f"protocol: {detail}"
    return f"network: {detail}"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failed(started: float, address: Address | None, error: str) -> Reply:
    return Reply(None, b"", _ms(started), error, str(address) if address is not None else None)
