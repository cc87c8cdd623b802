"""The visitor's country, as the trusted proxy in front of affnet names it.

CDNs and load balancers look the address up for us and pass the answer in a header
(Cloudflare's `CF-IPCountry`, CloudFront's `CloudFront-Viewer-Country`, a Google load balancer's
custom header): `GEO_COUNTRY_HEADER` names it. Only that proxy can set it, so it is read only when
configured; a value that is not two letters (Cloudflare's "XX" unknown and "T1" Tor among them)
counts as unknown (""). No address is looked up here, and none is kept."""

from __future__ import annotations

from collections.abc import Iterable

UNKNOWN = ""
_NOT_COUNTRIES = frozenset({"XX", "ZZ"})


def header_name(configured: str) -> bytes | None:
    """The header to read, as ASGI spells header names (lower-case bytes), or None when unset."""
    name = configured.strip().lower()
    return name.encode("latin-1") if name else None


def country(value: str | bytes | None) -> str:
    """An ISO 3166-1 alpha-2 code in upper case, or "" for anything else."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not value:
        return UNKNOWN
    code = value.strip().upper()
    if len(code) != 2 or not (code.isascii() and code.isalpha()) or code in _NOT_COUNTRIES:
        return UNKNOWN
    return code


def from_headers(headers: Iterable[tuple[bytes, bytes]], name: bytes | None) -> str:
    if name is None:
        return UNKNOWN
    for key, value in headers:
        if key == name:
            return country(value)
    return UNKNOWN
