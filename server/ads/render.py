"""The HTML of ads: creatives' frames and house ads, from templates/ads/ in Jinja2's sandboxed
environment with autoescaping, so whatever an advertiser or publisher typed is text, never markup,
and a template can reach nothing but the values it is given (and the i18n callables and filters)."""

from __future__ import annotations

from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.core import i18n
from server.core.settings import ROOT

ENV = ImmutableSandboxedEnvironment(
    loader=FileSystemLoader(ROOT / "templates" / "ads"), autoescape=True, undefined=StrictUndefined, auto_reload=False
)
# Refuse to import (and so to start) if this ever stops being true.
assert ENV.autoescape is True, "ad templates must autoescape"
# Their few words ("Sponsored") in the language the caller set (server/http/ads/public.py: the reader's).
i18n.install(ENV)
_FRAME_IMAGE = ENV.get_template("frame_image.html")
_FRAME_NATIVE = ENV.get_template("frame_native.html")
_HOUSE = ENV.get_template("house.html")
_NOSCRIPT_EXPIRED = ENV.get_template("noscript_expired.html")


def frame(creative: Any, click_url: str, advertiser: str) -> str:
    """The document inside the ad's iframe: the creative, linking to the signed click URL."""
    template = _FRAME_NATIVE if creative.format == "native" else _FRAME_IMAGE
    return template.render(creative=creative, click_url=click_url, advertiser=advertiser)


def house(text: str, url: str) -> str:
    """A publisher's house ad: their line of text linking to their own page."""
    return _HOUSE.render(text=text, url=url)


def noscript_expired() -> str:
    """The page a no-script ad's link shows when there is no ad to click through any more."""
    return _NOSCRIPT_EXPIRED.render()


def frame_csp(base_url: str) -> str:
    """The policy of an ad frame: no script, no form, no plugin, images from affnet only, framed by
    any site; and sandboxed even when opened on its own, so it never runs with affnet's origin."""
    return (
        "default-src 'none'; img-src " + base_url + " data:; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors *; sandbox allow-popups allow-popups-to-escape-sandbox"
    )
