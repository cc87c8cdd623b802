"""What the catalogues must hold, found the way `pybabel extract -F babel.cfg` finds it, and what
they lack: tests/unit/test_catalogues.py fails on any gap, and `affnet-dev translations` adds the
missing sentences to each language's catalogue (untranslated) for a translator to fill in.

Run `affnet-dev translations` after adding or changing text; the new entries land, empty, in
server/locale/<language>/LC_MESSAGES/messages.po."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from server.core import i18n

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdfr]")
TARGETS = tuple(language for language in i18n.LANGUAGES if language != "en")


@dataclass(frozen=True)
class Message:
    id: str | tuple[str, str]
    where: str  # file:line, the first place it is used
    files: tuple[str, ...] = ()  # every file that uses it
    context: str | None = None  # pgettext's: the same English word said of another thing

    @property
    def key(self) -> str:
        return self.id if isinstance(self.id, str) else self.id[0]

    @property
    def shown(self) -> str:
        return f"{self.context}|{self.key}" if self.context else self.key


def extract(root: Path = ROOT, config: Path | None = None) -> dict[str, Message]:
    """Every translatable sentence under `root`, by msgid (context|msgid with a context), with
    where it is first used."""
    with (config or root / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[str, Message] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        root, method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        if isinstance(message, tuple):
            message = message if len(message) == 2 and all(message) else message[0]
        if not message:
            continue
        entry = Message(message, f"{filename}:{lineno}", (filename,), context or None)
        known = found.get(entry.shown)
        if known is None:
            found[entry.shown] = entry
        elif filename not in known.files:
            found[entry.shown] = Message(known.id, known.where, (*known.files, filename), known.context)
    return found


def gaps(language: str, messages: Iterable[Message], catalogue: Catalog | None = None) -> list[str]:
    """What the language's catalogue lacks for `messages`: missing, empty or fuzzy entries, and
    translations whose %(placeholders)s differ from the English."""
    catalogue = catalogue if catalogue is not None else i18n.catalogue(language)
    problems = []
    for message in messages:
        entry = catalogue.get(message.key, context=message.context)
        strings = [] if entry is None else (list(entry.string) if isinstance(entry.string, tuple) else [entry.string])
        if entry is None or not strings or not all(strings):
            problems.append(f"{language}: no translation of {message.shown!r} ({message.where})")
            continue
        english = set(PLACEHOLDER.findall(message.key))
        for text in strings:
            if set(PLACEHOLDER.findall(text)) - english - {"num"} or english - set(PLACEHOLDER.findall(text)) - {"num"}:
                problems.append(f"{language}: {message.key!r} and its translation {text!r} name different placeholders")
    return problems


def update(root: Path = ROOT, *, into: str = "messages", under: tuple[str, ...] = ()) -> dict[str, int]:
    """Add every sentence a language lacks to its catalogue (server/locale/<language>/LC_MESSAGES/
    <into>.po), untranslated; with `under`, only sentences used in files under those paths.
    Returns how many each language got."""
    messages = [
        message
        for message in extract(root).values()
        if not under or any(file.startswith(prefix) for file in message.files for prefix in under)
    ]
    added = {}
    for language in TARGETS:
        known = i18n.catalogue(language)
        path = i18n.CATALOGUES / language / "LC_MESSAGES" / f"{into}.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as handle:
                catalogue = read_po(handle, locale=language)
        else:
            catalogue = Catalog(locale=language, project="affnet", domain=i18n.DOMAIN)
        count = 0
        for message in messages:
            if known.get(message.key, context=message.context) is None and (
                catalogue.get(message.key, context=message.context) is None
            ):
                empty = ("", "") if isinstance(message.id, tuple) else ""
                catalogue.add(message.id, string=empty, context=message.context)
                count += 1
        with path.open("wb") as handle:
            write_po(handle, catalogue, width=100, omit_header=False, sort_output=False)
        added[language] = count
    return added


def conflicts(language: str, base: Path = i18n.CATALOGUES) -> list[str]:
    """Sentences two of a language's catalogue files translate differently (which one a reader
    gets would depend on the files' order): each must be said one way."""
    said: dict[tuple[str | None, str], dict[str, str]] = {}
    for path, message in i18n.translated(language, base):
        key = (message.context, message.id if isinstance(message.id, str) else message.id[0])
        said.setdefault(key, {})[path.name] = str(message.string)
    return [
        f"{language}: {key[1]!r} is translated {len(set(files.values()))} ways: {files}"
        for key, files in said.items()
        if len(set(files.values())) > 1
    ]
