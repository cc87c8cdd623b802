"""The words and formats a person reads affnet in: English, French or Italian.

Text: every sentence a person reads (pages, form errors, notices, CSV headers, e-mails) is written
in English in the code and passed through `_` (Python) or `_()` / `{% trans %}` (templates);
`pybabel extract` (babel.cfg) finds them, and the catalogues in server/locale/<language>/ hold the
French and Italian (tests/unit/test_catalogues.py fails when one is missing). The catalogues are
read from their .po files at the first use, so there is no compiled file to keep in step.

Which language: the request's locale (server/core/locale.py: the person's saved choice, else the
language cookie the footer's switcher sets, else Accept-Language) when its language is one of
LANGUAGES, else English. Outside a request (the worker writing an e-mail) `locales.using(...)`
sets it for the recipient.

Formats: money, numbers, percentages, dates and times are written by Babel in the request's locale
(`12,50 €`, `1 250,00 €`, `12/05/2026`), and times in the person's saved time zone (UTC when none)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_time
from babel.messages import mofile, pofile
from babel.messages.catalog import Catalog, Message
from babel.numbers import format_decimal, format_percent
from babel.support import LazyProxy, NullTranslations, Translations

from server.core import locale as locales

LANGUAGES = ("en", "fr", "it")
NAMES = {"en": "English", "fr": "Français", "it": "Italiano"}  # each in its own language
CATALOGUES = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"


def translated(language: str, base: Path = CATALOGUES) -> Iterator[tuple[Path, Message]]:
    """Every translated entry of the language's .po files (server/locale/<lang>/LC_MESSAGES/*.po,
    one per area), with the file it is in."""
    for path in sorted((base / language / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            for message in pofile.read_po(handle, locale=language):
                if message.id and message.string and not message.fuzzy:
                    yield path, message


def catalogue(language: str) -> Catalog:
    """The language's .po files merged into one catalogue."""
    merged = Catalog(locale=language, domain=DOMAIN)
    for _path, message in translated(language):
        merged[message.id] = message
    return merged


@cache
def translations(language: str) -> NullTranslations:
    if language == "en" or language not in LANGUAGES:
        return NullTranslations()
    compiled = io.BytesIO()
    mofile.write_mo(compiled, catalogue(language))
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def language(locale: Locale | None = None) -> str:
    """The language text is written in: the locale's when affnet speaks it, else English."""
    locale = locale if locale is not None else locales.current()
    if locale is not None and locale.language in LANGUAGES:
        return locale.language
    return "en"


def _translate(message: str) -> str:
    return translations(language()).ugettext(message)


def _translate_plural(singular: str, plural: str, n: int) -> str:
    return translations(language()).ungettext(singular, plural, n)


def _translate_in(context: str, message: str) -> str:
    return translations(language()).upgettext(context, message)


def gettext(message: str, /, **variables: Any) -> str:
    """`message` in the request's language, with `%(name)s` placeholders filled from `variables`
    (write a literal % as %% when there are variables)."""
    text = _translate(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, /, **variables: Any) -> str:
    """The singular or plural form for `n` (available as `%(num)s`) in the request's language."""
    return _translate_plural(singular, plural, n) % {"num": n, **variables}


def pgettext(context: str, message: str, /, **variables: Any) -> str:
    text = _translate_in(context, message)
    return text % variables if variables else text


def lazy_gettext(message: str, /, **variables: Any) -> LazyProxy:
    """For text defined at import time (module constants): translated each time it is read."""
    return LazyProxy(gettext, message, enable_cache=False, **variables)


_ = gettext
_l = lazy_gettext


# --- formats ---------------------------------------------------------------------------------


def _locale() -> Locale | str:
    return locales.current() or "en_US"


def zone_name() -> str:
    return locales.current_zone() or "UTC"


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local(moment: datetime) -> datetime:
    """A stored (UTC) moment in the reader's time zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(_zone(zone_name()))


@cache
def _date_pattern(locale: Locale) -> str:
    """The locale's short date with the year in full: 12/05/2026 (fr, it), 5/12/2026 (en_US)."""
    pattern = locale.date_formats["short"].pattern
    if "yyyy" not in pattern:
        pattern = pattern.replace("yy", "y").replace("y", "yyyy")
    return pattern


def date_text(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = local(value).date()
    locale = Locale.parse(_locale())
    return format_date(value, _date_pattern(locale), locale=locale)


def datetime_text(value: datetime | None, *, seconds: bool = False) -> str:
    """12/05/2026 14:30 in the reader's zone (the zone is named once on the page, not per cell)."""
    if value is None:
        return ""
    moment = local(value)
    locale = Locale.parse(_locale())
    time = format_time(moment, "medium" if seconds else "short", locale=locale)
    return f"{format_date(moment.date(), _date_pattern(locale), locale=locale)} {time}"


def long_datetime_text(value: datetime | None) -> str:
    """12 mai 2026 15:05 (fr), May 12, 2026 3:05 PM (en): for sentences."""
    if value is None:
        return ""
    moment = local(value)
    return f"{format_date(moment.date(), 'long', locale=_locale())} {format_time(moment, 'short', locale=_locale())}"


def number_text(value: int | float | Decimal | None, *, places: int | None = None) -> str:
    if value is None:
        return ""
    if places is not None:
        pattern = "#,##0" + ("." + "0" * places if places else "")
        return format_decimal(value, format=pattern, locale=_locale(), decimal_quantization=True)
    return format_decimal(value, locale=_locale())


def percent_text(ratio: float | Decimal | None, *, places: int = 1) -> str:
    """0.125 -> 12,5 % (fr), 12.5% (en)."""
    if ratio is None:
        return ""
    rounded = Decimal(str(ratio)).quantize(Decimal(1).scaleb(-(places + 2)))
    return format_percent(rounded, locale=_locale(), decimal_quantization=False)  # the locale's spacing


def money_text(amount_minor: int | None, currency: str) -> str:
    """1250 EUR -> 12,50 € (fr, it), €12.50 (en)."""
    if amount_minor is None:
        return ""
    from server.core import money  # money imports this module's messages: imported when first used

    return money.display(amount_minor, currency)


def install(environment: Any) -> None:
    """Jinja's i18n extension with these callables (newstyle: placeholders are escaped, then
    filled), and the formats as filters: {{ amount|money(currency) }}, {{ when|datetime }}."""
    environment.add_extension("jinja2.ext.i18n")
    # Jinja fills the placeholders itself (after escaping the values): it gets the bare look-ups.
    environment.install_gettext_callables(_translate, _translate_plural, newstyle=True, pgettext=_translate_in)
    environment.filters.update(
        money=money_text,
        date=date_text,
        datetime=datetime_text,
        long_datetime=long_datetime_text,
        number=number_text,
        percent=percent_text,
    )
    environment.globals.update(
        language=language,
        languages=LANGUAGES,
        language_names=NAMES,
        zone_name=zone_name,
    )
