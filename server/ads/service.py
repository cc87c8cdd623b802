"""The rules of ad slots: what a slot may say (validation), creating and editing slots, the
snippet publishers paste, their statistics, and the batched impression writer. The only writer
of server/ads/tables.py."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape

from server.accounts.identity import CurrentUser
from server.ads import inventory
from server.ads.records import SlotListing
from server.ads.tables import AdSlot, Impression, SlotFallback, SlotFormat, SlotStatus
from server.audit import service as audit
from server.core import clock, db, deeplink, validation
from server.core.errors import Conflict, Invalid, NotFound
from server.core.i18n import _, _l
from server.core.validation import form_field


@dataclass(frozen=True, slots=True)
class Size:
    """How much room a format takes: fixed pixels, or (native) the container's width and a fixed height."""

    width: int | None  # None: 100 % of the container
    height: int

    @property
    def style(self) -> str:
        width = f"{self.width}px" if self.width else "100%"
        return f"display:block;width:{width};max-width:100%;height:{self.height}px;overflow:hidden"


SIZES: dict[SlotFormat, Size] = {
    SlotFormat.medium_rectangle: Size(300, 250),
    SlotFormat.leaderboard: Size(728, 90),
    SlotFormat.wide_skyscraper: Size(160, 600),
    SlotFormat.mobile_banner: Size(320, 50),
    SlotFormat.native: Size(None, 120),
}
# Lazy: each is read in the language of the page that shows it.
FORMAT_LABELS: dict[SlotFormat, Any] = {
    SlotFormat.medium_rectangle: _l("Medium rectangle, 300 × 250"),
    SlotFormat.leaderboard: _l("Leaderboard, 728 × 90"),
    SlotFormat.wide_skyscraper: _l("Wide skyscraper, 160 × 600"),
    SlotFormat.mobile_banner: _l("Mobile banner, 320 × 50"),
    SlotFormat.native: _l("Native text ad, full width × 120"),
}
FALLBACK_LABELS: dict[SlotFallback, Any] = {
    SlotFallback.collapse: _l("Collapse: hide the slot"),
    SlotFallback.house: _l("A house ad: your own line of text and link"),
    SlotFallback.html: _l("Your own HTML (shown in a sandboxed frame: scripts never run)"),
}
MAX_DOMAINS = 50
MAX_FALLBACK_HTML = 10_000
HOUSE_TEXT_MAX = 300
STATS_DAYS = 30


def parse_domains(text: str, *, loopback_allowed: bool = False) -> list[str]:
    """The slot's site domains. Loopback names (localhost, blog.localhost, 127.0.0.1, [::1]) are
    accepted where `loopback_allowed` (development: a blog on the developer's machine) and refused
    with a sentence saying so elsewhere (production: no reader's page is served from them)."""

    def loopback(part: str) -> str | None:
        host = deeplink.loopback_host(part)
        if host is not None and not loopback_allowed:
            raise Invalid(
                _(
                    "Site domain “%(value)s”: loopback names such as localhost and 127.0.0.1 are for "
                    "development only; enter your site's public domain, such as blog.example.com.",
                    value=part,
                ),
                field="domains",
            )
        return host

    return validation.domains(
        text,
        field="domains",
        label=_("Site domain"),
        most=MAX_DOMAINS,
        empty=_("List at least one domain of your site, such as blog.example.com."),
        too_many=_("At most %(num)s site domains per slot.", num=MAX_DOMAINS),
        special=loopback,
    )


def _house_url(raw: str) -> str:
    url = validation.web_url(raw, "house_url", _("House ad link"))
    try:
        host = deeplink.normalise_domain(urlsplit(url).hostname or "")
    except ValueError:
        raise Invalid(
            _("House ad link must be a web address such as https://blog.example.com/about."), field="house_url"
        ) from None
    # Rebuilt from its checked parts, as deep links are: what is stored is what was checked.
    safe = deeplink.safe_url(url, frozenset({host}))
    if safe is None:
        raise Invalid(_("House ad link must be an http(s) address without a port or user name."), field="house_url")
    return safe


def parse_slot(
    form: Mapping[str, Any], *, format_locked: str | None = None, loopback_allowed: bool = False
) -> dict[str, Any]:
    """Validate the slot form into column values. Raises Invalid naming the first bad field.
    `loopback_allowed`: site domains may be localhost and the like (not in production)."""
    name = validation.text(form_field(form, "name"), "name", _("Slot name"), max_length=120)
    slot_format = format_locked or form_field(form, "format")
    if slot_format not in {f.value for f in SlotFormat}:
        raise Invalid(_("Choose one of the listed formats."), field="format")
    domains = parse_domains(form_field(form, "domains"), loopback_allowed=loopback_allowed)
    fallback = form_field(form, "fallback") or SlotFallback.collapse.value
    if fallback not in {f.value for f in SlotFallback}:
        raise Invalid(_("Choose what the slot shows when no ad fits."), field="fallback")
    house_text = house_url = fallback_html = ""
    if fallback == SlotFallback.house.value:
        house_text = validation.text(
            form_field(form, "house_text"), "house_text", _("House ad text"), max_length=HOUSE_TEXT_MAX
        )
        if "\n" in house_text or "\r" in house_text:
            raise Invalid(_("House ad text must be a single line."), field="house_text")
        house_url = _house_url(form_field(form, "house_url"))
    elif fallback == SlotFallback.html.value:
        raw = form.get("fallback_html", "")
        fallback_html = validation.text(
            raw if isinstance(raw, str) else "", "fallback_html", _("Your HTML"), max_length=MAX_FALLBACK_HTML
        )
    return {
        "name": name,
        "format": slot_format,
        "domains": "\n".join(domains),
        "fallback": fallback,
        "house_text": house_text,
        "house_url": house_url,
        "fallback_html": fallback_html,
    }


def new_public_key() -> str:
    """The slot's key in the snippet: public by design, 96 random bits so it cannot be guessed."""
    return secrets.token_urlsafe(12)


async def create_slot(publisher: CurrentUser, form: Mapping[str, Any], *, loopback_allowed: bool = False) -> int:
    """A new slot from the form. `loopback_allowed`: not in production (see parse_domains)."""
    values = parse_slot(form, loopback_allowed=loopback_allowed)
    now = clock.now()
    async with db.transaction():
        rows = await AdSlot.insert(
            AdSlot(
                publisher=publisher.id,
                public_key=new_public_key(),
                status=SlotStatus.active.value,
                created_at=now,
                updated_at=now,
                **values,
            )
        ).returning(AdSlot.id)
        slot_id = rows[0]["id"]
        await audit.record(
            "ad_slot.created",
            actor_id=publisher.id,
            object_type="ad_slot",
            object_id=slot_id,
            name=values["name"],
            format=values["format"],
        )
    return slot_id


async def owned_slot(publisher: CurrentUser, slot_id: int) -> dict[str, Any]:
    """The publisher's own slot; anyone else's answers NotFound, as if it did not exist."""
    row = await AdSlot.select().where(AdSlot.id == slot_id, AdSlot.publisher == publisher.id).first()
    if row is None:
        raise NotFound(_("There is no such ad slot."))
    return row


async def update_slot(
    publisher: CurrentUser, slot_id: int, form: Mapping[str, Any], *, loopback_allowed: bool = False
) -> None:
    """Edit a slot. Its format is fixed: pages already reserve its size (a new size is a new slot)."""
    current = await owned_slot(publisher, slot_id)
    values = parse_slot(form, format_locked=current["format"], loopback_allowed=loopback_allowed)
    async with db.transaction():
        await AdSlot.update(
            {**{getattr(AdSlot, k): v for k, v in values.items()}, AdSlot.updated_at: clock.now()}
        ).where(AdSlot.id == slot_id)
        await audit.record("ad_slot.updated", actor_id=publisher.id, object_type="ad_slot", object_id=slot_id)
    await inventory.slot_changed(current["public_key"])


async def set_status(publisher: CurrentUser, slot_id: int, action: str) -> str:
    """Pause a slot (it shows its fallback only) or resume it."""
    moves = {"pause": (SlotStatus.active, SlotStatus.paused), "resume": (SlotStatus.paused, SlotStatus.active)}
    if action not in moves:
        raise Invalid(_("Unknown action."))
    before, after = moves[action]
    current = await owned_slot(publisher, slot_id)
    if current["status"] != before.value:
        refusal = _("This slot is already paused.") if action == "pause" else _("This slot is already active.")
        raise Conflict(refusal)
    async with db.transaction():
        await AdSlot.update({AdSlot.status: after.value, AdSlot.updated_at: clock.now()}).where(AdSlot.id == slot_id)
        await audit.record(f"ad_slot.{action}", actor_id=publisher.id, object_type="ad_slot", object_id=slot_id)
    await inventory.slot_changed(current["public_key"])
    return after.value


async def slots_of(publisher: CurrentUser) -> list[SlotListing]:
    rows = (
        await AdSlot.select(
            AdSlot.id, AdSlot.name, AdSlot.format, AdSlot.status, AdSlot.public_key, AdSlot.domains, AdSlot.fallback
        )
        .where(AdSlot.publisher == publisher.id)
        .order_by(AdSlot.id)
    )
    return [SlotListing.from_row(row) for row in rows]


def form_of(slot: Mapping[str, Any]) -> dict[str, str]:
    return {
        k: str(slot[k]) for k in ("name", "format", "domains", "fallback", "house_text", "house_url", "fallback_html")
    }


def snippet(base_url: str, slot: Mapping[str, Any]) -> str:
    """What the publisher pastes where the ad goes: a placeholder that reserves the slot's size at
    once (before any script runs, so the page never shifts) and one async script. Every value is
    escaped here; pages escape the whole snippet again to show it as text."""
    size = SIZES[SlotFormat(slot["format"])]
    base = base_url.rstrip("/")
    return (
        f'<div class="affnet-slot" data-affnet-slot="{escape(slot["public_key"])}" '
        f'data-affnet-format="{escape(slot["format"])}" style="{size.style}"></div>\n'
        f'<script async src="{escape(base)}/static/embed.js"></script>'
    )


def shortcode(slot: Mapping[str, Any]) -> str:
    """What a publisher pastes into WordPress with the affnet plugin (wordpress/affnet/) installed:
    the plugin prints the snippet from the site's server, where WordPress's filter of authors'
    HTML never sees it. Keys and formats are URL-safe: nothing here needs quoting (pages escape it
    as any text)."""
    return f'[affnet_slot key="{slot["public_key"]}" format="{slot["format"]}"]'


async def demo_slot(publisher_email: str) -> dict[str, Any] | None:
    """The first active slot of the demo publisher (the demo blog page shows it)."""
    return (
        await AdSlot.select(AdSlot.public_key, AdSlot.format)
        .where(AdSlot.publisher.email == publisher_email, AdSlot.status == SlotStatus.active.value)
        .order_by(AdSlot.id)
        .first()
    )


# --- the batched impression writer ---------------------------------------------------------------

IMPRESSION_COLUMNS = (
    "offer",
    "viewed_at",
    "slot",
    "creative",
    "campaign",
    "publisher",
    "visitor_hash",
    "reason",
    "country",
)


async def write_impressions(rows: list[tuple]) -> None:
    """Store a batch of impressions: one per offer, whatever else is in the table or the batch.

    The offer's unique constraint is what makes a view count once, on both engines and across
    server processes: SQLite skips a second row with INSERT OR IGNORE; PostgreSQL takes the batch
    by COPY and, if any offer is already there, inserts it row by row with ON CONFLICT DO NOTHING,
    so concurrent writers of the same offer leave exactly one row. A retried batch stores nothing twice.
    Rows may carry more values after the columns (a buffered view's network and process tag,
    server/ads/counting.py): they are not stored."""
    width = len(IMPRESSION_COLUMNS)
    if any(len(row) != width for row in rows):
        rows = [row[:width] for row in rows]
    await db.insert_once("impression", IMPRESSION_COLUMNS, "offer", rows)


async def valid_impressions_on(campaign_id: int, day: date) -> int:
    """The campaign's valid impressions stored for a UTC day (what the shared counter starts from)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return await Impression.count().where(
        Impression.campaign == campaign_id,
        Impression.reason == "valid",
        Impression.viewed_at >= start,
        Impression.viewed_at < start + timedelta(days=1),
    )
