"""Deep links: only http(s) URLs on the advertiser's domains pass, rebuilt from what was checked."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.core.deeplink import MAX_URL_LENGTH, normalise_domain, safe_url, with_params

ALLOWED = frozenset({"allowed.com", "shop.example.com", "xn--bcher-kva.de"})


# --- normalise_domain ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("shop.example.com", "shop.example.com"),
        ("  Shop.Example.COM  ", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a-b.c0.example.co.uk", "a-b.c0.example.co.uk"),
        ("ＳＨＯＰ.example.com", "shop.example.com"),  # full-width letters map as browsers map them
    ],
)
def test_domains_are_stored_lower_case_ascii_without_a_trailing_dot(typed, stored):
    assert normalise_domain(typed) == stored


def test_a_cyrillic_look_alike_domain_is_stored_as_its_own_punycode_name():
    look_alike = normalise_domain("shop.ex\u0430mple.com")  # Cyrillic 'а'
    assert look_alike.startswith("shop.xn--")
    assert look_alike != "shop.example.com"


@pytest.mark.parametrize(
    ("typed", "message_part"),
    [
        ("", "enter a domain name"),
        ("   ", "enter a domain name"),
        ("https://shop.example.com", "without https://"),
        ("shop.example.com/path", "without https://"),
        ("shop.example.com:8443", "a port"),
        ("user@shop.example.com", "host name only"),
        ("shop\\example.com", "host name only"),
        ("*.example.com", "'*.'"),
        ("localhost", "with a dot"),
        ("1.2.3.4", "not a valid host name"),
        ("0x7f.1", "not a valid host name"),
        ("shop_1.example.com", "not a valid host name"),
        ("-shop.example.com", "not a valid host name"),
        ("shop-.example.com", "not a valid host name"),
        ("shop..example.com", "not a valid host name"),
        ("sh op.example.com", "not a valid host name"),
        ("a" * 64 + ".com", "not a valid host name"),
        (("a" * 60 + ".") * 5 + "com", "not a valid host name"),
        ("xn--zz.com", "internationalised"),
        ("exa\u200bmple.com", "invisible or control characters"),
        ("exa\tmple.com", "invisible or control characters"),
    ],
)
def test_what_is_not_a_host_name_is_refused_with_a_message(typed, message_part):
    with pytest.raises(ValueError) as info:
        normalise_domain(typed)
    assert message_part in str(info.value)


# --- safe_url: what passes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://allowed.com/", "https://allowed.com/"),
        ("http://allowed.com/a/b?x=1&y=2#top", "http://allowed.com/a/b?x=1&y=2#top"),
        ("https://allowed.com", "https://allowed.com/"),
        ("https://allowed.com?x=1", "https://allowed.com/?x=1"),
        ("https://deals.shop.example.com/p/1", "https://deals.shop.example.com/p/1"),
        ("https://a.b.allowed.com/", "https://a.b.allowed.com/"),
        ("HTTPS://Shop.EXAMPLE.com/Path/Keeps/Case", "https://shop.example.com/Path/Keeps/Case"),
        ("https://allowed.com:443/x", "https://allowed.com/x"),
        ("http://allowed.com:80/x", "http://allowed.com/x"),
        ("https://allowed.com:/x", "https://allowed.com/x"),
        ("https://allowed.com./x", "https://allowed.com/x"),
        ("https://bücher.de/buch", "https://xn--bcher-kva.de/buch"),
        ("https://ＡＬＬＯＷＥＤ.com/", "https://allowed.com/"),
        ("https://allowed.com/caf\u00e9?q=\u00e9", "https://allowed.com/caf%C3%A9?q=%C3%A9"),
        ('https://allowed.com/a"<b>', "https://allowed.com/a%22%3Cb%3E"),
        ("https://allowed.com/a%20b?q=%2F", "https://allowed.com/a%20b?q=%2F"),
        ("https://allowed.com//evil.com", "https://allowed.com//evil.com"),
    ],
)
def test_urls_on_allowed_domains_pass_rebuilt_from_their_parts(url, safe):
    assert safe_url(url, ALLOWED) == safe


def test_the_longest_allowed_url_passes_and_one_more_character_does_not():
    prefix = "https://allowed.com/"
    longest = prefix + "a" * (MAX_URL_LENGTH - len(prefix))
    assert safe_url(longest, ALLOWED) == longest
    assert safe_url(longest + "a", ALLOWED) is None


def test_a_url_that_grows_past_the_limit_when_encoded_is_refused():
    url = "https://allowed.com/" + "\u00e9" * 400  # 400 characters in, 2400 once percent-encoded
    assert len(url) < MAX_URL_LENGTH
    assert safe_url(url, ALLOWED) is None


# --- safe_url: what is refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        # from the issue
        "//evil.com",
        "//allowed.com/",
        "\\\\evil.com",
        "https://allowed.com@evil.com",
        "https://allowed.com:x@evil.com/",
        "https://user:pass@allowed.com/",
        "https://@allowed.com/",
        "javascript:alert(1)",
        "JavaScript://allowed.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://allowed.com/%0d%0aSet-Cookie:x=1",
        "https://allowed.com/%0D%0ASet-Cookie:x=1",
        "https://allowed.com/?q=%0a",
        "https://allowed.com/#%0D",
        "https://shop.ex\u0430mple.com/",  # Cyrillic 'а'
        "https://\u0430llowed.com/",
        "https://allowed.com:8443/",
        "https://allowed.com:80/",
        "http://allowed.com:443/",
        "https://allowed.com:0443/",
        "https://allowed.com:443:443/",
        # more
        "https://allowed.com.evil.com/",
        "https://evilallowed.com/",
        "https://evilshop.example.com/",
        "https://example.com/",
        "https:/\\evil.com",
        "https:\\\\allowed.com",
        "https://allowed.com\\@evil.com",
        "http://evil.com#@allowed.com",
        "https://evil.com?.allowed.com",
        "https://evil.com/allowed.com",
        "https://evil.com\\.allowed.com",
        "https://allowed.com\t/",
        "https://allowed.com/\n",
        "https://all\nowed.com/",
        "https://allowed.com/\r\nSet-Cookie:x=1",
        " https://allowed.com/",
        "https://allowed.com/ x",
        "https://allowed.com/\x00",
        "https://allowed.com/\x7f",
        "https://allowed.com/\u2028",
        "https://allowed.com/\u00a0",
        "https://allowed.com\u200b.evil.com/",
        "https://allowed.com/\u202egnp.exe",
        "https://allowed.com%2eevil.com/",
        "https://%61llowed.com/",
        "https://allowed.com\uff0fevil.com",  # full-width solidus
        "https://allowed.com\uff20evil.com",  # full-width commercial at
        "https://allowed.com\u3002evil.com/",  # ideographic full stop: allowed.com.evil.com
        "https:allowed.com",
        "https:/allowed.com",
        "https:///allowed.com",
        "ftp://allowed.com/",
        "httpx://allowed.com/",
        "ws://allowed.com/",
        "allowed.com/path",
        "/relative/path",
        "https://[::1]/",
        "https://[allowed.com]/",
        "https://127.0.0.1/",
        "https://allowed.com..",
        "https://allowed..com/",
        "https://-allowed.com/",
        "https://allowed_1.allowed.com/",
        "https://" + "a" * 64 + ".allowed.com/",
        "",
    ],
)
def test_hostile_urls_are_refused(url):
    assert safe_url(url, ALLOWED) is None


@pytest.mark.parametrize("not_text", [None, 1, b"https://allowed.com/"])
def test_values_that_are_not_text_are_refused(not_text):
    assert safe_url(not_text, ALLOWED) is None


def test_a_huge_input_is_refused_without_parsing():
    assert safe_url("https://allowed.com/" + "a" * 10_000_000, ALLOWED) is None


def test_no_allowed_domains_means_no_deep_links():
    assert safe_url("https://allowed.com/", frozenset()) is None


def test_a_domain_allowed_in_its_idn_form_matches_its_unicode_and_punycode_spellings():
    allowed = frozenset({normalise_domain("bücher.de")})
    assert safe_url("https://bücher.de/", allowed) == "https://xn--bcher-kva.de/"
    assert safe_url("https://xn--bcher-kva.de/", allowed) == "https://xn--bcher-kva.de/"
    assert safe_url("https://bucher.de/", allowed) is None


# --- safe_url: fuzzing ------------------------------------------------------------------------------


def _under_allowed(host: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in ALLOWED)


def _assert_safe(result: str) -> None:
    parts = urlsplit(result)
    assert parts.scheme in ("http", "https")
    assert parts.hostname is not None and _under_allowed(parts.hostname)
    assert parts.hostname == parts.netloc  # no userinfo, no port, already lower-case
    assert parts.username is None and parts.password is None and parts.port is None
    assert result.isascii() and result.isprintable()
    assert " " not in result and "\\" not in result
    assert "%0d" not in result.lower() and "%0a" not in result.lower()
    assert len(result) <= MAX_URL_LENGTH
    # What we return passes again unchanged: it is what was checked.
    assert safe_url(result, ALLOWED) == result


_SCHEMES = st.sampled_from(
    [
        "http://",
        "https://",
        "HTTPS://",
        "//",
        "\\\\",
        "/\\",
        "https:/\\",
        "https:",
        "https:///",
        "javascript:",
        "data:",
        "ftp://",
        "",
    ]
)
_HOST_PIECES = st.sampled_from(
    [
        "allowed.com",
        "ALLOWED.COM",
        "shop.example.com",
        "evilshop.example.com",
        "evil.com",
        "bücher.de",
        "ex\u0430mple.com",
        "sub.",
        ".",
        "@",
        ":",
        ":443",
        ":8443",
        ":80",
        "%2e",
        "%40",
        "\u3002",
        "\uff0f",
        "\uff20",
        "\u200b",
        "[",
        "]",
        "::1",
        "user",
        "\\",
        "#",
        "?",
    ]
)
_REST_PIECES = st.sampled_from(
    [
        "/",
        "?",
        "#",
        "&",
        "=",
        "%",
        "%0d",
        "%0A",
        "%25",
        "\t",
        "\n",
        "\r",
        " ",
        "\x00",
        "@",
        "é",
        "\u202e",
        "//evil.com",
        "\\",
        "a",
        ":8443",
    ]
)


@settings(max_examples=2000, deadline=None)
@given(
    st.tuples(
        _SCHEMES,
        st.lists(st.one_of(_HOST_PIECES, st.text(max_size=3)), min_size=1, max_size=5).map("".join),
        st.lists(st.one_of(_REST_PIECES, st.text(max_size=4)), max_size=8).map("".join),
    ).map("".join)
)
@example("https://allowed.com/")
@example("https://allowed.com@evil.com")
@example("http://evil.com#@allowed.com")
def test_whatever_passes_is_an_http_url_on_an_allowed_host_without_userinfo_or_port(url):
    result = safe_url(url, ALLOWED)
    if result is not None:
        _assert_safe(result)


@given(st.text(max_size=100))
def test_arbitrary_text_never_raises_and_whatever_passes_is_safe(url):
    result = safe_url(url, ALLOWED)
    if result is not None:
        _assert_safe(result)


@settings(max_examples=500, deadline=None)
@given(
    scheme=st.sampled_from(["http://", "https://", "HtTpS://"]),
    sub=st.sampled_from(["", "www.", "a.b."]),
    domain=st.sampled_from(sorted(ALLOWED)),
    rest=st.text(max_size=40),
)
def test_urls_built_on_allowed_hosts_either_pass_safely_or_are_refused(scheme, sub, domain, rest):
    result = safe_url(f"{scheme}{sub}{domain}/{rest}", ALLOWED)
    if result is not None:
        _assert_safe(result)
        assert urlsplit(result).hostname == sub + domain


def test_fuzz_assertions_can_fail():
    # The property above would be vacuous if nothing ever passed; a plain URL must pass through it.
    result = safe_url("https://www.allowed.com/a?b#c", ALLOWED)
    assert result == "https://www.allowed.com/a?b#c"
    _assert_safe(result)
    with pytest.raises(AssertionError):
        _assert_safe("https://evil.com/")


# --- with_params ------------------------------------------------------------------------------------


def test_params_are_appended_to_a_url_without_a_query():
    assert with_params("https://allowed.com/p", [("click_id", "abc")]) == "https://allowed.com/p?click_id=abc"


def test_params_are_appended_after_the_existing_query_and_before_the_fragment():
    url = with_params("https://allowed.com/p?a=1&b=2#section", [("click_id", "abc"), ("sub1", "x")])
    assert url == "https://allowed.com/p?a=1&b=2&click_id=abc&sub1=x#section"


def test_existing_params_of_the_same_name_are_replaced_and_others_kept_verbatim():
    url = with_params("https://allowed.com/?click_id=old&sig=a%2Bb%3D&click_id=older&x=", [("click_id", "new")])
    assert url == "https://allowed.com/?sig=a%2Bb%3D&x=&click_id=new"


def test_an_encoded_name_counts_as_the_same_name():
    url = with_params("https://allowed.com/?click%5Fid=old&click+id=keep", [("click_id", "new")])
    assert url == "https://allowed.com/?click+id=keep&click_id=new"


def test_names_and_values_are_percent_encoded():
    url = with_params("https://allowed.com/", [("sub 1", "a b&c=d#e/é+%")])
    assert url == "https://allowed.com/?sub%201=a%20b%26c%3Dd%23e%2F%C3%A9%2B%25"
    assert parse_qsl(urlsplit(url).query) == [("sub 1", "a b&c=d#e/é+%")]


def test_an_empty_query_or_stray_ampersands_leave_no_empty_pieces():
    assert with_params("https://allowed.com/?", [("k", "v")]) == "https://allowed.com/?k=v"
    assert with_params("https://allowed.com/?&a=1&&", [("k", "v")]) == "https://allowed.com/?a=1&k=v"


def test_no_params_leaves_the_url_unchanged():
    assert with_params("https://allowed.com/?a=1#f", []) == "https://allowed.com/?a=1#f"


def test_a_safe_url_with_params_is_still_safe():
    url = with_params(safe_url("https://Shop.Example.com/p?x=1#f", ALLOWED), [("click_id", "AQXW-t5_D"), ("sub1", "é")])
    assert url == "https://shop.example.com/p?x=1&click_id=AQXW-t5_D&sub1=%C3%A9#f"
    _assert_safe(url)
