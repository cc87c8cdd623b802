"""Creatives of a campaign: text links and image banners, their checks, storage and archiving.

An uploaded image is trusted for nothing it says about itself: its type is read from its bytes
by Pillow, it is stored under a random name with the extension of the detected type, and only
PNG, JPEG, GIF and WebP are kept (never SVG, which can carry script)."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from server.accounts.identity import CurrentUser
from server.audit import service as audit
from server.campaigns.service import owned_campaign
from server.campaigns.tables import CampaignStatus, Creative, CreativeKind
from server.core import clock, db, validation
from server.core.errors import Conflict, Invalid, NotFound
from server.core.i18n import _, _l, ngettext

# Pillow's format name -> (MIME type, file extension). Anything else is refused.
IMAGE_FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"),
}
# IAB standard ad units, tagged when a banner's pixel size matches one exactly.
IAB_SIZES = frozenset(
    {
        (300, 250),
        (728, 90),
        (160, 600),
        (320, 50),
        (300, 600),
        (970, 250),
        (336, 280),
        (468, 60),
        (250, 250),
        (120, 600),
    }
)
MAX_SIDE = 4000  # no banner needs more; a larger canvas is a decompression bomb served to browsers
TEXT_MAX = 300
# The upload route's request body limit: room for the default 512 KB image plus the rest of the
# form. A deployment raising MAX_UPLOAD_BYTES above ~1.9 MB must raise this too (else a 413).
UPLOAD_BODY_LIMIT = 2 * 1024 * 1024
MEDIA_URL = "/media/"
NOT_AN_IMAGE = _l("Only PNG, JPEG, GIF or WebP images can be uploaded.")


@dataclass(frozen=True, slots=True)
class ImageFacts:
    mime_type: str
    extension: str
    width: int
    height: int
    iab_size: str


def iab_size(width: int, height: int) -> str:
    return f"{width}x{height}" if (width, height) in IAB_SIZES else ""


def _kb(n: int) -> str:
    return _("%(num)s KB", num=n // 1024) if n % 1024 == 0 else ngettext("%(num)s byte", "%(num)s bytes", n)


def inspect_image(data: bytes, max_bytes: int) -> ImageFacts:
    """What the bytes really are. Raises Invalid unless they are one whole allowed image."""
    if not data:
        raise Invalid(_("Choose an image file to upload."), field="file")
    if len(data) > max_bytes:
        raise Invalid(_("The image is larger than %(size)s.", size=_kb(max_bytes)), field="file")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            if kind not in IMAGE_FORMATS:
                raise Invalid(str(NOT_AN_IMAGE), field="file")
            probe.verify()  # checks the structure (and PNG checksums) without decoding pixels
        # verify() leaves the image unusable: reopen to read its size.
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise Invalid(str(NOT_AN_IMAGE), field="file") from None
    except (OSError, SyntaxError, ValueError, EOFError):  # what Pillow raises for a damaged file
        raise Invalid(_("The image file is damaged or incomplete."), field="file") from None
    if width > MAX_SIDE or height > MAX_SIDE or width < 1 or height < 1:
        raise Invalid(_("The image must be at most %(side)s × %(side)s pixels.", side=MAX_SIDE), field="file")
    mime_type, extension = IMAGE_FORMATS[kind]
    return ImageFacts(
        mime_type=mime_type, extension=extension, width=width, height=height, iab_size=iab_size(width, height)
    )


async def _open_campaign(advertiser: CurrentUser, campaign_id: int) -> dict[str, Any]:
    campaign = await owned_campaign(advertiser, campaign_id)
    if campaign["status"] == CampaignStatus.ended.value:
        raise Conflict(_("This campaign has ended: it takes no new creatives."))
    return campaign


def _name(form: Mapping[str, Any]) -> str:
    value = form.get("name", "")
    return validation.text(value if isinstance(value, str) else "", "name", _("Creative name"), max_length=120)


async def list_creatives(advertiser: CurrentUser, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's creatives, live ones first, each with its image URL if it has one."""
    await owned_campaign(advertiser, campaign_id)
    rows = await Creative.select().where(Creative.campaign == campaign_id).order_by(Creative.id)
    for row in rows:
        row["url"] = MEDIA_URL + row["image_path"] if row["image_path"] else ""
    return sorted(rows, key=lambda r: r["archived"])


async def add_text(advertiser: CurrentUser, campaign_id: int, form: Mapping[str, Any]) -> int:
    await _open_campaign(advertiser, campaign_id)
    name = _name(form)
    raw = form.get("text", "")
    text = validation.text(raw if isinstance(raw, str) else "", "text", _("Link text"), max_length=TEXT_MAX)
    if "\n" in text or "\r" in text:
        raise Invalid(_("Link text must be a single line."), field="text")
    return await _insert(
        advertiser,
        campaign_id,
        Creative(campaign=campaign_id, kind=CreativeKind.text.value, name=name, text=text, created_at=clock.now()),
    )


async def add_image(
    advertiser: CurrentUser, campaign_id: int, form: Mapping[str, Any], data: bytes, *, media_dir: str, max_bytes: int
) -> int:
    """Store an uploaded banner. Nothing is kept (no row, no file) unless every check passes."""
    await _open_campaign(advertiser, campaign_id)
    name = _name(form)
    facts = await asyncio.to_thread(inspect_image, data, max_bytes)
    file_name = f"{secrets.token_hex(16)}.{facts.extension}"
    path = Path(media_dir) / file_name
    await asyncio.to_thread(_write_new, path, data)
    try:
        return await _insert(
            advertiser,
            campaign_id,
            Creative(
                campaign=campaign_id,
                kind=CreativeKind.image.value,
                name=name,
                image_path=file_name,
                mime_type=facts.mime_type,
                width=facts.width,
                height=facts.height,
                iab_size=facts.iab_size,
                byte_size=len(data),
                created_at=clock.now(),
            ),
        )
    except BaseException:
        path.unlink(missing_ok=True)  # no row, so no file either
        raise


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # "x": never overwrite (a random name colliding is astronomically unlikely, but never silent).
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


async def _insert(advertiser: CurrentUser, campaign_id: int, creative: Creative) -> int:
    async with db.transaction():
        rows = await Creative.insert(creative).returning(Creative.id)
        creative_id = rows[0]["id"]
        await audit.record(
            "creative.created",
            actor_id=advertiser.id,
            object_type="creative",
            object_id=creative_id,
            campaign_id=campaign_id,
            kind=creative.kind,
            name=creative.name,
        )
    return creative_id


async def archive(advertiser: CurrentUser, campaign_id: int, creative_id: int) -> None:
    """Take a creative out of use (the row and its file stay). Another advertiser's creative, or
    one of another campaign, answers NotFound, as if it did not exist."""
    row = (
        await Creative.select(Creative.id, Creative.campaign, Creative.archived)
        .where(
            Creative.id == creative_id, Creative.campaign == campaign_id, Creative.campaign.advertiser == advertiser.id
        )
        .first()
    )
    if row is None:
        raise NotFound(_("There is no such creative."))
    if not row["archived"]:
        async with db.transaction():
            await Creative.update({Creative.archived: True}).where(Creative.id == creative_id)
            await audit.record(
                "creative.archived",
                actor_id=advertiser.id,
                object_type="creative",
                object_id=creative_id,
                campaign_id=campaign_id,
            )


async def active_creatives(campaign_id: int) -> list[dict[str, Any]]:
    """The creatives publishers of a campaign may use (not archived), oldest first, with image URLs.
    For the publishers' side: the caller has already checked the publisher belongs to the campaign."""
    return (await active_creatives_of([campaign_id])).get(campaign_id, [])


async def active_creatives_of(campaign_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """`active_creatives` of several campaigns in one read (the marketplace's previews), by campaign."""
    rows = (
        await Creative.select(
            Creative.id,
            Creative.campaign,
            Creative.kind,
            Creative.name,
            Creative.text,
            Creative.image_path,
            Creative.width,
            Creative.height,
            Creative.iab_size,
        )
        .where(Creative.campaign.is_in(list(campaign_ids) or [0]), Creative.archived.eq(False))
        .order_by(Creative.id)
    )
    by_campaign: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        row["url"] = MEDIA_URL + row["image_path"] if row["image_path"] else ""
        by_campaign.setdefault(row.pop("campaign"), []).append(row)
    return by_campaign
