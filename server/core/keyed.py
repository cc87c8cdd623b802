"""Keyed HMAC-SHA256 prepared once and copied per message: the click redirect signs a click id and
hashes a visitor for every click, and the key's own setup is most of a short message's cost."""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol


class Mac(Protocol):
    def copy(self) -> Mac: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


def prepared(key: bytes, prefix: bytes = b"") -> Mac:
    """An HMAC-SHA256 under `key` already fed `prefix`: `.copy()`, `.update(message)`, `.digest()`.

    With OpenSSL (every CPython build affnet supports) this is the C object hmac.HMAC wraps, whose
    copy and digest skip hmac.HMAC's Python methods; the values are the same. A short message never
    hands the GIL away here, as the one-shot hmac.digest does (the SQLite writer's thread would then
    keep the event loop waiting)."""
    mac = hmac.new(key, prefix, hashlib.sha256)
    return getattr(mac, "_hmac", None) or mac
