"""Crawler detection from the User-Agent: CrawlerDetect's patterns, matched in linear time.

The pattern lists come from the `crawlerdetect` package (a port of JayBizzle/Crawler-Detect, kept
in sync upstream). Its own matcher joins the 1,462 patterns into one case-insensitive regex,
which costs 100-400 µs per browser User-Agent, and one pattern (`[a-z0-9\\-_]*(bot|crawl|…)`)
backtracks quadratically: 512 letters take 17 ms, 8 KB take 4 s. Anyone can send such a header
to /c/{code}, so we match the same lists differently, with the same answers:

- the text is lower-cased once, so no regex needs IGNORECASE (which defeats re's fast paths);
- literal patterns (nearly all of them) become one trie-shaped regex: at each position only the
  branches for that character are tried;
- a leading `[class]*` is dropped (it cannot change whether a search matches), `A.*B` becomes two
  ordered substring look-ups, anchored patterns are tried once at the start, and the two dozen
  others run one by one, and only if one of their literal prefixes occurs at all.

tests/tracking/test_crawlers.py checks the answers against CrawlerDetect itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from crawlerdetect.providers.crawlers import data as _CRAWLER_PATTERNS
from crawlerdetect.providers.exclusions import data as _EXCLUSION_PATTERNS

_META = frozenset(".^$*+?{}[]|()")
_QUANTIFIERS = frozenset("?*{")
_LEADING_CLASS_STAR = re.compile(r"\[[^\]]*\]\*")


def _literal(pattern: str) -> str | None:
    """The text a pattern matches if it is a plain literal (escaped punctuation allowed), else None."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                out.append(pattern[i + 1])
                i += 2
                continue
            return None
        if char in _META:
            return None
        out.append(char)
        i += 1
    return "".join(out).lower()


def _literal_prefix(pattern: str) -> str:
    """Literal text every match of pattern starts with ('' if none is certain)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                char, step = pattern[i + 1], 2
            else:
                break
        elif char in _META:
            break
        else:
            step = 1
        if i + step < len(pattern) and pattern[i + step] in _QUANTIFIERS:
            break  # this character is optional or repeated: the certain prefix ends before it
        out.append(char)
        i += step
    return "".join(out).lower()


def _alternatives(pattern: str) -> list[str]:
    """pattern split at its top-level '|' (outside groups and classes)."""
    parts: list[str] = []
    depth = 0
    in_class = False
    start = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def trie_regex(words: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of the words, shaped as a trie so each position tries few branches.

    A word that extends a shorter one is dropped: for "is any present" the shorter one decides.
    """
    root: dict[str, dict] = {}
    for word in sorted(set(words), key=len):
        node = root
        for char in word:
            if "" in node:
                break  # a shorter word already covers this one
            node = node.setdefault(char, {})
        else:
            node.clear()
            node[""] = {}

    def build(node: dict[str, dict]) -> str:
        if "" in node:
            return ""
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    if not root:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile(build(root))


class CrawlerMatcher:
    """Answers "does this User-Agent match a crawler pattern, once exclusions are removed?"."""

    def __init__(self, crawler_patterns: Iterable[str], exclusion_patterns: Iterable[str]) -> None:
        words: list[str] = []
        anchored: list[str] = []
        sequences: list[tuple[str, ...]] = []
        others: list[str] = []
        for pattern in (alt for p in crawler_patterns for alt in _alternatives(p)):
            pattern = _LEADING_CLASS_STAR.sub("", pattern, count=1) if pattern.startswith("[") else pattern
            if (literal := _literal(pattern)) is not None:
                words.append(literal)
            elif (
                pattern.startswith("(")
                and pattern.endswith(")")
                and all(_literal(part) is not None for part in pattern[1:-1].split("|"))
            ):
                words.extend(_literal(part) or "" for part in pattern[1:-1].split("|"))
            elif ".*" in pattern and all(_literal(part) for part in pattern.split(".*")):
                sequences.append(tuple(_literal(part) or "" for part in pattern.split(".*")))
            elif pattern.startswith("^"):
                anchored.append(pattern[1:])
            else:
                others.append(pattern)
        self._words = trie_regex(words)
        self._anchored = re.compile("|".join(anchored), re.IGNORECASE) if anchored else None
        self._sequences = tuple(sequences)
        self._others = tuple(re.compile(p, re.IGNORECASE) for p in others)
        prefixes = [_literal_prefix(p) for p in others]
        # A pattern without a certain prefix must always run; otherwise only when some prefix occurs.
        self._others_always = "" in prefixes
        self._others_gate = trie_regex(p for p in prefixes if p)
        exclusions = list(exclusion_patterns)
        for pattern in exclusions:
            # We lower-case the text and the patterns instead of matching case-insensitively;
            # an upper-case escape (\D, \S, \W, \B) would change meaning when lowered.
            if re.search(r"\\[A-Z]", pattern):
                raise ValueError(f"exclusion pattern cannot be lower-cased safely: {pattern!r}")
        self._exclusions = re.compile("|".join(p.lower() for p in exclusions)) if exclusions else None

    def matches(self, user_agent: str) -> bool:
        agent = user_agent.strip().lower()
        if self._exclusions is not None:
            agent = self._exclusions.sub("", agent)
        if not agent:
            return False
        if self._words.search(agent) is not None:
            return True
        if self._anchored is not None and self._anchored.match(agent) is not None:
            return True
        for sequence in self._sequences:
            position = 0
            for part in sequence:
                position = agent.find(part, position)
                if position < 0:
                    break
                position += len(part)
            else:
                return True
        if self._others and (self._others_always or self._others_gate.search(agent) is not None):
            return any(p.search(agent) is not None for p in self._others)
        return False


CRAWLERS = CrawlerMatcher(_CRAWLER_PATTERNS, _EXCLUSION_PATTERNS)
