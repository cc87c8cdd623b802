"""What publishers see of campaigns: the marketplace (only campaigns whose advertiser can pay, with
the advertiser's public profile and the creatives), joining from it, and the link builder's terms.

A campaign whose advertiser has no money in its currency is hidden from publishers who are not in
it yet, and joining it is refused until the advertiser adds funds. Publishers already in it keep
it in their list, marked as waiting for funds, and their links keep working: billing pauses the
campaign when its conversions cannot be paid (server/billing/service.py), and CPC/CPM hours wait
for the funds (server/earnings), so nothing is taken from them here."""

from __future__ import annotations

from typing import Any

from server.accounts.identity import CurrentUser
from server.accounts.tables import Advertiser
from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.records import AdvertiserProfile
from server.campaigns.tables import SUB_NAMES, Campaign, CampaignStatus, Goal, Membership, Visibility
from server.core.errors import Conflict, NotFound
from server.core.i18n import _

PREVIEWS = 3  # creatives shown per campaign in the marketplace


async def listing(
    publisher: CurrentUser, *, search: str = "", model: str = "", category: str = "", campaign_id: int | None = None
) -> list[dict]:
    """Active campaigns this publisher may see: public and approval ones whose advertiser can pay,
    private ones they were invited to, and any they belong to. Each with its goals, the publisher's
    membership (if any), `funded`, the advertiser's profile and up to PREVIEWS creatives: six reads
    however many campaigns. `campaign_id`: that one only (if they may see it), for the API's detail."""
    memberships = {m["campaign"]: m for m in await Membership.select().where(Membership.publisher == publisher.id)}
    query = Campaign.select(
        Campaign.id,
        Campaign.name,
        Campaign.description,
        Campaign.category,
        Campaign.currency,
        Campaign.visibility,
        Campaign.attribution_window_days,
        Campaign.hold_days,
        Campaign.forward_subs,
        Campaign.allowed_domains,
        Campaign.advertiser.id.as_alias("advertiser_id"),
    ).where(Campaign.status == CampaignStatus.active.value)
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
    if search:
        query = query.where(Campaign.name.ilike(f"%{search[:80]}%") | Campaign.description.ilike(f"%{search[:80]}%"))
    if category in campaigns.CATEGORIES:
        query = query.where(Campaign.category == category)
    visible = [
        c
        for c in await query.order_by(Campaign.id, ascending=False)
        if c["visibility"] != Visibility.private.value or c["id"] in memberships
    ]
    funded = await campaigns.funded_ids(visible)
    shown = [c for c in visible if c["id"] in funded or c["id"] in memberships]
    if not shown:
        return []
    ids = [c["id"] for c in shown]
    goals: dict[int, list[dict]] = {}
    for g in await Goal.select().where(Goal.campaign.is_in(ids)).order_by(Goal.position):
        goals.setdefault(g["campaign"], []).append(g)
    profiles = await advertiser_profiles({c["advertiser_id"] for c in shown})
    previews = await creatives.active_creatives_of(ids)
    result = []
    for c in shown:
        c["goals"] = goals.get(c["id"], [])
        if model and not any(g["payout_model"] == model for g in c["goals"]):
            continue
        c["membership"] = memberships.get(c["id"])
        c["funded"] = c["id"] in funded
        c["advertiser"] = profiles.get(c["advertiser_id"])
        c["creatives"] = previews.get(c["id"], [])[:PREVIEWS]
        result.append(c)
    return result


async def advertiser_profiles(advertiser_ids: set[int]) -> dict[int, AdvertiserProfile]:
    rows = await Advertiser.select(
        Advertiser.user, Advertiser.company_name, Advertiser.website, Advertiser.created_at
    ).where(Advertiser.user.is_in(sorted(advertiser_ids) or [0]))
    return {r["user"]: AdvertiserProfile(r["company_name"], r["website"], r["created_at"]) for r in rows}


async def join(publisher: CurrentUser, campaign_id: int) -> str:
    """Join (or apply to, or accept an invitation to) a campaign from the marketplace: refused
    while its advertiser cannot pay. Otherwise as campaigns.join."""
    await campaigns.require_approved_publisher(publisher)
    row = (
        await Campaign.select(
            Campaign.id, Campaign.currency, Campaign.visibility, Campaign.advertiser.id.as_alias("advertiser_id")
        )
        .where(Campaign.id == campaign_id)
        .first()
    )
    if row is not None and not await campaigns.funded_ids([row]):
        member = await Membership.exists().where(
            Membership.campaign == campaign_id, Membership.publisher == publisher.id
        )
        if row["visibility"] == Visibility.private.value and not member:
            raise NotFound(_("There is no such campaign."))
        raise Conflict(
            _("This campaign is waiting for its advertiser to add funds: it takes no new publishers until then."),
            code="campaign_unfunded",
        )
    return await campaigns.join(publisher, campaign_id)


async def link_terms(campaign_id: int) -> dict[str, Any]:
    """What the link builder tells the publisher about a campaign: its name, and which sub-IDs
    reach the advertiser's landing page (under their own names, sub1…sub5) with the click id's
    parameter."""
    row = (
        await Campaign.select(Campaign.name, Campaign.forward_subs, Campaign.click_id_param)
        .where(Campaign.id == campaign_id)
        .first()
    )
    if row is None:
        return {"name": "", "forwarded": [], "click_id_param": ""}
    forwarded = [s for s in SUB_NAMES if s in row["forward_subs"].split(",")]
    return {"name": row["name"], "forwarded": forwarded, "click_id_param": row["click_id_param"]}
