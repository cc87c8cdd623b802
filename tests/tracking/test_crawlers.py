"""Our matcher of CrawlerDetect's patterns gives CrawlerDetect's answers, in linear time."""

from __future__ import annotations

import pytest
from crawlerdetect import CrawlerDetect
from crawlerdetect.providers.crawlers import data as CRAWLER_PATTERNS
from hypothesis import given, settings
from hypothesis import strategies as st

from server.tracking.crawlers import CRAWLERS, CrawlerMatcher, _alternatives, _literal, _literal_prefix, trie_regex

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
]


def _detector() -> CrawlerDetect:
    return CrawlerDetect()


def test_every_literal_pattern_is_found_where_crawlerdetect_finds_it():
    reference = _detector()
    literals = [literal for literal in map(_literal, CRAWLER_PATTERNS) if literal is not None]
    assert len(literals) > 1300  # nearly all patterns are literals; fewer means the parsing broke
    disagreements = []
    for literal in literals:
        for text in (
            literal,
            literal.upper(),
            f"Mozilla/5.0 (compatible; {literal}/1.0; +https://example.com/bot)",
            f"{BROWSERS[0]} {literal}",
        ):
            if CRAWLERS.matches(text) != reference.is_crawler(text):
                disagreements.append(text)
    assert disagreements == []


@pytest.mark.parametrize(
    "user_agent",
    [
        *BROWSERS,
        "Ruby/3.2",
        "ruby",
        "Go 1.1 package http",
        "Java/1.8 something outbrain",
        "outbrain Java",
        "NewsBlur Feed Finder",
        "Daumoa 4.0",
        "Project 25499",
        "Project25499",
        "YandexSearch/1.0",
        "Yandex/1.0",
        "Y!J-ABC/1.0",
        "xpymep1.exe",
        "PTST/123",
        "Sitemaps Generator",
        "HAAARTLAND http client",
        "b0t",
        "b0t and more",
        "DebugBear",
        "DebugBear x",
        "Amazon Simple Notification Service Agent",
        "Mozilla/5.0 Java/1.8",
        "Mozilla/5.0",
        "compatible",
        "   ",
        "",
    ],
)
def test_regex_patterns_agree_with_crawlerdetect(user_agent):
    assert CRAWLERS.matches(user_agent) == _detector().is_crawler(user_agent)


_FRAGMENTS = st.sampled_from(
    [
        "Mozilla/5.0 ",
        "(compatible; ",
        "Chrome/120.0 ",
        "Safari/537.36",
        "Linux",
        "cubot",
        "bot",
        "Bot",
        "crawl",
        "Java",
        "outbrain",
        "Go ",
        "1.2 ",
        "package http",
        "Ruby/",
        "3",
        "Yandex",
        "Search",
        "Daum",
        "oa",
        "/",
        " ",
        ";",
        ")",
        "Project",
        "25499",
        "PTST/",
        "Sitemap",
        "s",
        " Generator",
        "^",
        "Build",
        "spider",
        "x",
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=10).map("".join))
def test_assembled_user_agents_agree_with_crawlerdetect(user_agent):
    assert CRAWLERS.matches(user_agent) == _detector().is_crawler(user_agent)


def test_long_runs_of_letters_are_not_crawlers():
    # CrawlerDetect's own regex needs seconds for these (quadratic backtracking); ours is linear.
    # The time is measured in bench/tracking_primitives.py, never asserted here.
    for text in ("a" * 8192, "java" * 2048, "go " * 2730, "1" * 8192):
        assert CRAWLERS.matches(text) is False


def test_trie_regex_finds_any_word_and_only_the_words():
    trie = trie_regex(["bot", "botany", "crawl", "c++", "a.b"])
    assert trie.search("xx bot yy")
    assert trie.search("crawler")
    assert trie.search("c++ client")
    assert trie.search("a.b")
    assert not trie.search("axb")  # '.' is literal
    assert not trie.search("bo t crawx c+")


def test_an_empty_trie_matches_nothing():
    assert trie_regex([]).search("anything") is None


def test_literal_and_prefix_parsing():
    assert _literal(r"Slack-ImgProxy \(\+https:\/\/api") == "slack-imgproxy (+https://api"
    assert _literal(r"Dart\/[0-9]") is None
    assert _literal(r"\d") is None
    assert _literal_prefix(r"Project ?25499") == "project"
    assert _literal_prefix(r"Sitemap(s)? Generator") == "sitemap"
    assert _literal_prefix(r"PTST\/[0-9]+") == "ptst/"
    assert _literal_prefix(r"^Ruby") == ""
    assert _alternatives(r"^Ruby|Ruby\/[0-9]") == ["^Ruby", r"Ruby\/[0-9]"]
    assert _alternatives(r"(a|b)|[|]c|\|d") == ["(a|b)", "[|]c", r"\|d"]


def test_exclusions_are_removed_before_matching():
    matcher = CrawlerMatcher(["bot"], ["cubot"])
    assert matcher.matches("Android; CUBOT X19") is False
    assert matcher.matches("Android; CUBOT X19; SomeBot") is True


def test_an_exclusion_that_cannot_be_lower_cased_is_refused():
    with pytest.raises(ValueError):
        CrawlerMatcher(["bot"], [r"\Sfoo"])
