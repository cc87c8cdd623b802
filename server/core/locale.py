"""The locale a person writes and reads numbers in, one per request.

Where it comes from, in order: the person's saved language (their account's, else the language
cookie the footer's switcher sets for visitors), else the browser's Accept-Language, keeping the
first language (by quality) that affnet supports; a saved language takes the browser's territory
when the browser asks for the same language (fr saved, fr-CH browser: fr_CH). The territory is
kept with it (de-CH stays de_CH, not de),
because the number symbols belong to the territory: a Swiss writes 1'250.50, a German 1.250,50.
With neither, there is no locale, and amount parsing refuses what only a locale could decide.

`LocaleMiddleware` sets it for every HTTP request in a ContextVar; `current()` reads it. Code
outside a request (the worker, the CLI) sees None. `using()` sets it explicitly (tests, and
callers that must parse in a locale they recorded earlier)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from babel import Locale, UnknownLocaleError
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

SUPPORTED = ("en", "fr", "it", "de", "es")
MAX_HEADER = 512  # a longer Accept-Language is not a browser's: read only its start
MAX_TAGS = 16

LANGUAGE_COOKIE = "affnet_lang"

_current: ContextVar[Locale | None] = ContextVar("affnet_locale", default=None)
_zone: ContextVar[str] = ContextVar("affnet_zone", default="")


def parse_tag(tag: str) -> Locale | None:
    """'fr-FR' / 'fr_FR' / 'de-CH' -> that Locale if its language is supported, else None."""
    tag = (tag or "").strip()
    if not tag or tag == "*" or len(tag) > 35:
        return None
    try:
        locale = Locale.parse(tag.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        # An unknown territory (fr-XX) still says the language.
        try:
            locale = Locale.parse(tag.replace("-", "_").split("_")[0])
        except (ValueError, TypeError, UnknownLocaleError):
            return None
    return locale if locale.language in SUPPORTED else None


def accept_language(header: str | None) -> list[str]:
    """The language tags of an Accept-Language header, best first (q=0 means 'not this one')."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "")[:MAX_HEADER].split(",")[:MAX_TAGS]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and quality > 0:
            ranked.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(saved: str | None, header: str | None) -> Locale | None:
    """The saved choice if it is a supported locale, else the best supported one the browser asks for."""
    if saved and (locale := parse_tag(saved)) is not None:
        for tag in accept_language(header):
            asked = parse_tag(tag)
            if asked is not None and asked.language == locale.language and asked.territory:
                return asked
        return locale
    for tag in accept_language(header):
        if (locale := parse_tag(tag)) is not None:
            return locale
    return None


def current() -> Locale | None:
    """The locale of the request being served (None outside a request, or when nothing decides)."""
    return _current.get()


def current_zone() -> str:
    """The request's reader's saved time zone (an IANA name), "" when none (times in UTC)."""
    return _zone.get()


def tag(locale: Locale | None) -> str:
    """A stable text form ('fr_FR', '' for none), for binding a locale into a signed form."""
    return str(locale) if locale is not None else ""


@contextmanager
def using(locale: Locale | str | None, zone: str | None = None) -> Iterator[Locale | None]:
    """Read and write in `locale` (and show times in `zone`, if given) inside the block: tests, and
    the worker writing to one person."""
    resolved = parse_tag(locale) if isinstance(locale, str) else locale
    token = _current.set(resolved)
    zone_token = _zone.set(zone) if zone is not None else None
    try:
        yield resolved
    finally:
        _current.reset(token)
        if zone_token is not None:
            _zone.reset(zone_token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def cookie_language(scope: Scope) -> str | None:
    """The language the footer's switcher saved in a cookie (for visitors who are not logged in)."""
    prefix = LANGUAGE_COOKIE + "="
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix) :][:8]
    return None


class LocaleMiddleware(ASGIMiddleware):
    """Sets the request's locale for everything the handler calls (after AuthMiddleware, so a
    saved choice can be read from the user once there is one)."""

    # The hot tracking paths and static files never read an amount.
    should_bypass_for_scope = staticmethod(
        lambda scope: (
            scope["path"].startswith(("/static/", "/media/", "/c/", "/px/", "/postback")) or scope["path"] == "/healthz"
        )
    )

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user = scope.get("user")
        saved = getattr(user, "language", "") or cookie_language(scope)
        token = _current.set(negotiate(saved, _header(scope, b"accept-language")))
        zone_token = _zone.set(getattr(user, "time_zone", "") or "")
        try:
            await next_app(scope, receive, send)
        finally:
            _current.reset(token)
            _zone.reset(zone_token)
