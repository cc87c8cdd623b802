"""Per-call cost of the click hot path's building blocks, and the crawler matcher on hostile input.

    .venv/bin/python bench/tracking_primitives.py

Prints microseconds per call (best of 5 repeats) and the machine. No server, no network."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

print(f"machine: {machine()}")
import random
import string
import time
import timeit
from datetime import date

from crawlerdetect import CrawlerDetect

from server.core.deeplink import safe_url, with_params
from server.tracking import classify
from server.tracking.classify import is_bot, ua_family
from server.tracking.tokens import issue_click_id, read_click_id
from server.tracking.visitor import truncate_ip, visitor_hash

KEY = b"k" * 32


def per_call(fn, n=100_000):
    best = min(timeit.repeat(fn, number=n, repeat=5))
    return best / n * 1e6


now = int(time.time())
tok = issue_click_id(KEY, 12345, now)
print(f"issue_click_id                 {per_call(lambda: issue_click_id(KEY, 12345, now)):7.2f} us")
print(f"read_click_id                  {per_call(lambda: read_click_id(KEY, tok)):7.2f} us")
print(f"read_click_id (forged)         {per_call(lambda: read_click_id(KEY, tok[:-1] + 'A')):7.2f} us")
allowed = frozenset({"shop.example.com", "example.org"})
u1 = "https://shop.example.com/products/blue-widget?utm_source=affnet&ref=42#reviews"
u2 = "https://www.Shop.Example.com/p/caf\u00e9?q=\u00e9"
u3 = "https://evil.com/?x=shop.example.com"
print(f"safe_url (typical)             {per_call(lambda: safe_url(u1, allowed)):7.2f} us")
print(f"safe_url (mixed case + IDN-free unicode path) {per_call(lambda: safe_url(u2, allowed)):7.2f} us")
print(f"safe_url (refused host)        {per_call(lambda: safe_url(u3, allowed)):7.2f} us")
u4 = "https://bücher.de/x"
print(
    f"safe_url (IDN host)            {per_call(lambda: safe_url(u4, frozenset({'xn--bcher-kva.de'})), 20_000):7.2f} us"
)
print(
    f"with_params (click_id + 2 subs) {per_call(lambda: with_params(u1, [('click_id', tok), ('sub1', 'a'), ('sub2', 'b')])):7.2f} us"
)
chrome = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
iphone = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
gbot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
is_bot(chrome)
is_bot(iphone)
is_bot(gbot)
print(f"is_bot cached (Chrome)         {per_call(lambda: is_bot(chrome)):7.2f} us")
print(f"ua_family cached (Chrome)      {per_call(lambda: ua_family(chrome)):7.2f} us")


def uncached(ua):
    def f():
        classify._is_bot.cache_clear()
        return is_bot(ua)

    return per_call(f, 5_000)


for name, ua in [("Chrome", chrome), ("iPhone Safari", iphone), ("Googlebot", gbot)]:
    print(f"is_bot uncached ({name:14}) {uncached(ua):7.2f} us")
random.seed(1)
worst = "".join(random.choice(string.ascii_letters + " /;().") for _ in range(512))
print(f"is_bot uncached (512 random chars, the cap) {uncached(worst):7.2f} us")
print(f"is_bot uncached ('a'*512)      {uncached('a' * 512):7.2f} us")
print(f"is_bot over the cap (8 KB)     {per_call(lambda: is_bot('a' * 8192)):7.2f} us")
cd = CrawlerDetect()
for name, ua in [("Chrome", chrome), ("iPhone Safari", iphone), ("Googlebot", gbot)]:
    t = min(timeit.repeat(lambda: cd._check_crawler(ua), number=200, repeat=3)) / 200 * 1e6
    print(f"  crawlerdetect's own matcher, uncached ({name}) {t:7.1f} us")
t = min(timeit.repeat(lambda: cd._check_crawler("a" * 512), number=5, repeat=3)) / 5 * 1e6
print(f"  crawlerdetect's own matcher, 'a'*512 {t:9.1f} us")
t = timeit.timeit(lambda: cd._check_crawler("a" * 8192), number=1) * 1e6
print(f"  crawlerdetect's own matcher, 'a'*8192 {t:9.1f} us")
day = date.today()
print(f"visitor_hash (IPv4)            {per_call(lambda: visitor_hash(KEY, '203.0.113.77', chrome, day)):7.2f} us")
print(
    f"visitor_hash (IPv6)            {per_call(lambda: visitor_hash(KEY, '2001:db8:1234:5678::1', chrome, day)):7.2f} us"
)
print(f"truncate_ip (IPv4)             {per_call(lambda: truncate_ip('203.0.113.77')):7.2f} us")
