"""Landing URL safety: which deep links a click may be sent to, and adding parameters to them.

A tracked link accepts `?url=<deep link>` from whoever clicks it, so without these checks
affnet would be an open redirect (phishing on our domain) and a header-injection vector. The
rule: an absolute http(s) URL whose host is one of the advertiser's allowed domains or a
subdomain of one, with no user name, no port other than the default, and nothing a browser or
proxy might read differently from us. What we return is rebuilt from the parts we checked, so
the Location header says exactly what was checked.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, unquote_plus, urlsplit

import idna

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# One label of an ASCII host name (RFC 1123): letters, digits and inner hyphens, 1 to 63 long.
# Fixed-width pieces only, so matching a label cannot backtrack more than a few steps.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# What stays as it is when a part is re-serialised: RFC 3986 unreserved and sub-delims, ':' and
# '@', and '%' so existing escapes survive. Anything else (non-ASCII, quotes, angle brackets)
# is percent-encoded as a browser would, so the result is plain ASCII safe for a header.
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"


def _ascii_host(host: str) -> str | None:
    """The host in lower-case ASCII (IDN converted to punycode), or None if it is not a host name.

    Non-ASCII goes through UTS #46 mapping like a browser's, so full-width letters or an ideographic
    full stop become what the browser would visit, and a Cyrillic look-alike becomes its own xn-- name.
    """
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > MAX_HOST_LENGTH:
        return None
    labels = host.split(".")
    for label in labels:
        if _LABEL.fullmatch(label) is None:
            return None
    # A name ending in a number is read by browsers as an IPv4 address (1.2.3.4, 0x7f.1), not a name.
    last = labels[-1]
    if last.isdigit() or (last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:])):
        return None
    return host


def normalise_domain(text: str) -> str:
    """An allowed domain as typed by an advertiser, in the form safe_url compares against.

    Lower-case ASCII, punycode for an IDN, no trailing dot. Raises ValueError with a message for
    a person when the text is not a host name such as shop.example.com.
    """
    value = (text or "").strip()
    if not value:
        raise ValueError("enter a domain name such as shop.example.com")
    if "/" in value or "\\" in value or ":" in value or "@" in value:
        raise ValueError("enter the host name only, such as shop.example.com, without https://, a port or a path")
    if not value.isprintable():
        # UTS #46 would silently drop a zero-width character: say so rather than store another name.
        raise ValueError("the domain contains invisible or control characters")
    if value.startswith("*."):
        raise ValueError("enter the domain without '*.': its subdomains are always allowed")
    host = _ascii_host(value)
    if host is None:
        raise ValueError("not a valid host name: use letters, digits, hyphens and dots, such as shop.example.com")
    if "." not in host:
        raise ValueError("enter a full domain name with a dot, such as example.com")
    if any(label.startswith("xn--") for label in host.split(".")):
        # Typed punycode must itself be valid IDN, or it can never match what a browser visits.
        try:
            idna.decode(host)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise ValueError("not a valid internationalised domain name") from None
    return host


def loopback_host(text: str) -> str | None:
    """The loopback host `text` names, as a page's Origin spells it (localhost, blog.localhost,
    127.0.0.1, ::1 for [::1]), or None if it names none. Such names reach only the machine itself:
    a development site, never a reader's. (Ad slots' site domains accept them in development.)"""
    value = (text or "").strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if value.endswith("."):
        value = value[:-1]
    if value == "localhost" or (value.endswith(".localhost") and _ascii_host(value) == value):
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return str(address) if address.is_loopback else None


def host_allowed(host: str, allowed_domains: frozenset[str]) -> bool:
    """host equals an allowed domain or ends in '.' + one: label boundaries only, so
    evilshop.example.com is not under shop.example.com. One set look-up per label. (Deep links
    here; the site domains of ad slots in server/ads/decision.py.)"""
    if host in allowed_domains:
        return True
    dot = host.find(".")
    while dot != -1:
        if host[dot + 1 :] in allowed_domains:
            return True
        dot = host.find(".", dot + 1)
    return False


def _bad_characters(url: str) -> bool:
    # isprintable() is False for control, format (bidi overrides, zero-width) and separator
    # characters except the ASCII space, which we refuse too, as we do tabs and newlines.
    if not url.isprintable() or " " in url or "\\" in url:
        return True
    if "%" in url:
        lowered = url.lower()
        # An encoded CR or LF is harmless to us but not to a landing page that decodes it into a header.
        if "%0d" in lowered or "%0a" in lowered:
            return True
    return False


def safe_url(url: str, allowed_domains: frozenset[str]) -> str | None:
    """The URL re-serialised from its checked parts if a click may be sent there, else None.

    allowed_domains holds normalise_domain() output. Never raises on hostile input.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or _bad_characters(url):
        return None
    # The scheme must open the string and be followed by '//' at once: this turns away
    # protocol-relative '//host', 'https:host', 'javascript:' and 'data:' before any parsing.
    head = url[:8].lower()
    if head.startswith("https://"):
        scheme = "https"
    elif head.startswith("http://"):
        scheme = "http"
    else:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # a netloc that NFKC-normalises into '/?#@:', or a broken '[...]'
        return None
    netloc = parts.netloc
    # No userinfo (allowed.com@evil.com) and no IP literals; the host check below would refuse
    # these too, but the rule should not hang on a side effect.
    if not netloc or "@" in netloc or "[" in netloc or "]" in netloc:
        return None
    host, colon, port = netloc.partition(":")
    if colon and port and port != _DEFAULT_PORTS[scheme]:
        # Only the scheme's own port, spelled plainly; ':' with nothing after it means the default too.
        return None
    ascii_host = _ascii_host(host)
    if ascii_host is None or not host_allowed(ascii_host, allowed_domains):
        return None
    path = quote(parts.path, safe=_SAFE_PATH) or "/"
    result = f"{scheme}://{ascii_host}{path}"
    if parts.query:
        result += "?" + quote(parts.query, safe=_SAFE_QUERY)
    if parts.fragment:
        result += "#" + quote(parts.fragment, safe=_SAFE_QUERY)
    return result if len(result) <= MAX_URL_LENGTH else None


def with_params(url: str, params: list[tuple[str, str]]) -> str:
    """url with params appended to its query, after dropping existing parameters of the same names.

    Other parameters are kept exactly as written (an advertiser's signed landing URL stays valid),
    and the fragment stays last. Names and values are percent-encoded, spaces as %20.
    """
    if not params:
        return url
    base, hash_mark, fragment = url.partition("#")
    base, _, query = base.partition("?")
    names = {name for name, _ in params}
    kept = [piece for piece in query.split("&") if piece and unquote_plus(piece.partition("=")[0]) not in names]
    kept += [f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params]
    return f"{base}?{'&'.join(kept)}{hash_mark}{fragment}"
