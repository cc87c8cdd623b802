"""Parsing of untrusted text shared by every domain: emails, URLs, short and long text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from server.core import deeplink
from server.core.errors import Invalid


def form_field(form: Mapping[str, Any], name: str, *, strip: bool = True) -> str:
    """One field of a submitted form as text: "" when it is missing or not text (a file, a list), else
    stripped of surrounding white space. A password is taken as typed (`strip=False`): the login compares it
    as sent."""
    value = form.get(name, "")
    if not isinstance(value, str):
        return ""
    return value.strip() if strip else value


def email(value: str, field: str = "email") -> str:
    value = (value or "").strip()
    if not value:
        raise Invalid("Enter your email address.", field=field)
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(f"That email address is not valid: {exc}", field=field) from None
    return result.normalized.lower()


def text(value: str | None, field: str, label: str, *, max_length: int, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise Invalid(f"{label} is required.", field=field)
    if len(value) > max_length:
        raise Invalid(f"{label} is limited to {max_length} characters.", field=field)
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise Invalid(f"{label} contains control characters.", field=field)
    return value


def web_url(value: str | None, field: str, label: str) -> str:
    """An http(s) URL with a real host name, as typed by a person (scheme added if left out)."""
    value = (value or "").strip()
    if not value:
        raise Invalid(f"{label} is required.", field=field)
    if "://" not in value:
        value = "https://" + value
    if len(value) > 500 or any(c.isspace() or ord(c) < 32 for c in value):
        raise Invalid(f"{label} must be a web address such as https://example.com.", field=field)
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    host = parts.hostname or ""
    if parts.scheme not in {"http", "https"} or not host or "." not in host or not port_ok or parts.username:
        raise Invalid(f"{label} must be a web address such as https://example.com.", field=field)
    return value


def safe_next(value: str | None, default: str = "/") -> str:
    """A redirect target after login: a local path only, so it can never send anyone off-site."""
    value = (value or "").strip()
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return default
    return value


def domains(text: str, *, field: str, label: str, empty: str, most: int, too_many: str) -> list[str]:
    """A list of host names typed one per line or comma-separated, each normalised (IDN to ASCII,
    lower case; server/core/deeplink.py) and listed once, in order. `label` names one in an
    error ("Site domain 'x': ..."); `empty` and `too_many` are what to say when there are none or
    more than `most`."""
    found: list[str] = []
    for part in text.replace(",", "\n").split():
        try:
            domain = deeplink.normalise_domain(part)
        except ValueError as exc:
            raise Invalid(f"{label} '{part}': {exc}", field=field) from None
        if domain not in found:
            found.append(domain)
    if not found:
        raise Invalid(empty, field=field)
    if len(found) > most:
        raise Invalid(too_many, field=field)
    return found
