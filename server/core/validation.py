"""Parsing of untrusted text shared by every domain: emails, URLs, short and long text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from server.core import deeplink
from server.core.errors import Invalid
from server.core.i18n import _

T = TypeVar("T")


class FormCheck:
    """Checks every field of a form before refusing it, so a person sees each field's problem at
    once rather than one per submission. `check(parse, *args)` runs one field's parser and returns
    its value, or None when it raised Invalid (kept, the first per field); `check.done()` then
    raises them all as one Invalid (Invalid.of), or returns when there were none."""

    def __init__(self) -> None:
        self.problems: list[Invalid] = []

    def __call__(self, parse: Callable[..., T], /, *args: Any, **kwargs: Any) -> T | None:
        try:
            return parse(*args, **kwargs)
        except Invalid as exc:
            self.add(exc)
            return None

    def add(self, problem: Invalid) -> None:
        if problem.field is None or all(p.field != problem.field for p in self.problems):
            self.problems.append(problem)

    def done(self) -> None:
        if self.problems:
            raise Invalid.of(self.problems)


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
        raise Invalid(_("Enter your email address."), field=field)
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        # email_validator explains in English only: say it in the reader's words, with an example.
        raise Invalid(_("That email address is not valid: write it like name@example.com."), field=field) from None
    return result.normalized.lower()


def text(value: str | None, field: str, label: str, *, max_length: int, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise Invalid(_("%(label)s is required.", label=label), field=field)
    if len(value) > max_length:
        raise Invalid(_("%(label)s is limited to %(num)s characters.", label=label, num=max_length), field=field)
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise Invalid(_("%(label)s contains control characters.", label=label), field=field)
    return value


def web_url(value: str | None, field: str, label: str) -> str:
    """An http(s) URL with a real host name, as typed by a person (scheme added if left out)."""
    value = (value or "").strip()
    if not value:
        raise Invalid(_("%(label)s is required.", label=label), field=field)
    not_web = _("%(label)s must be a web address such as https://example.com.", label=label)
    if "://" not in value:
        value = "https://" + value
    if len(value) > 500 or any(c.isspace() or ord(c) < 32 for c in value):
        raise Invalid(not_web, field=field)
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    host = parts.hostname or ""
    if parts.scheme not in {"http", "https"} or not host or "." not in host or not port_ok or parts.username:
        raise Invalid(not_web, field=field)
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


def domains(
    text: str,
    *,
    field: str,
    label: str,
    empty: str,
    most: int,
    too_many: str,
    special: Callable[[str], str | None] | None = None,
) -> list[str]:
    """A list of host names typed one per line or comma-separated, each normalised (IDN to ASCII,
    lower case; server/core/deeplink.py) and listed once, in order. `label` names one in an
    error ("Site domain 'x': ..."); `empty` and `too_many` are what to say when there are none or
    more than `most`. A name `special` answers a host for is that host, past the domain rule
    (`special` may raise Invalid instead: ad slots' loopback names)."""
    found: list[str] = []
    for part in text.replace(",", "\n").split():
        try:
            domain = (special(part) if special is not None else None) or deeplink.normalise_domain(part)
        except ValueError as exc:
            raise Invalid(
                _("%(label)s “%(value)s”: %(reason)s", label=label, value=part, reason=exc), field=field
            ) from None
        if domain not in found:
            found.append(domain)
    if not found:
        raise Invalid(empty, field=field)
    if len(found) > most:
        raise Invalid(too_many, field=field)
    return found
