"""The rules of campaigns: terms and their validation, status changes, goals, memberships."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from server.accounts.identity import CurrentUser
from server.accounts.tables import NetworkSetting, Publisher, PublisherStatus, User
from server.audit import service as audit
from server.campaigns.records import Applicant, ApplicantProfile, CampaignListing
from server.campaigns.tables import (
    SUB_NAMES,
    Campaign,
    CampaignStatus,
    Goal,
    Link,
    Membership,
    MembershipStatus,
    PayoutModel,
    Visibility,
)
from server.core import changes, clock, db, deeplink, money, validation
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.validation import form_field

CATEGORIES = {
    "fashion": "Fashion & beauty",
    "finance": "Finance & insurance",
    "food": "Food & drink",
    "home": "Home & garden",
    "software": "Software & apps",
    "travel": "Travel",
    "health": "Health & fitness",
    "education": "Education",
    "games": "Games & entertainment",
    "other": "Other",
}
MODEL_LABELS = {
    PayoutModel.cpc: "per click",
    PayoutModel.cpm: "per 1,000 impressions",
    PayoutModel.cpl: "per lead",
    PayoutModel.cpa: "per sale",
    PayoutModel.revshare: "of each sale",
}
MAX_GOALS = 5
DEFAULT_MARGIN_KEY = "default_margin_bp"
DEFAULT_MARGIN_BP = 2000  # the network keeps 20 % unless a goal says otherwise
CONVERSION_MODELS = (PayoutModel.cpl, PayoutModel.cpa, PayoutModel.revshare)
MAX_CONVERSIONS_PER_CLICK = 100
DEFAULT_MAX_SALE_MAJOR = 10_000
DEFAULT_MAX_SALE_MINOR_AT_LEAST = 1_000_000
MAX_SALE_MINOR = 10**12  # what a report's amount may be at most (server/conversions/service.py)


def _optional_int(
    form: Mapping[str, Any], name: str, label: str, *, minimum: int = 0, maximum: int = 10**9
) -> int | None:
    raw = form_field(form, name)
    if not raw:
        return None
    return _int(raw, name, label, minimum=minimum, maximum=maximum)


def _int(raw: str, field: str, label: str, *, minimum: int = 0, maximum: int = 10**9) -> int:
    if not raw.lstrip("-").isdigit():
        raise Invalid(f"{label} must be a whole number.", field=field)
    value = int(raw)
    if value < minimum:
        raise Invalid(f"{label} cannot be less than {minimum}.", field=field)
    if value > maximum:
        raise Invalid(f"{label} cannot be more than {maximum}.", field=field)
    return value


async def default_margin_bp() -> int:
    row = await NetworkSetting.select(NetworkSetting.value).where(NetworkSetting.key == DEFAULT_MARGIN_KEY).first()
    return int(row["value"]) if row else DEFAULT_MARGIN_BP


def publisher_share(advertiser_amount: int, margin_bp: int) -> int:
    """What the publisher earns when only the advertiser's amount is given: the amount less the
    network margin, rounded down, so any fraction of a cent stays with the network."""
    return advertiser_amount * (money.BASIS_POINTS - margin_bp) // money.BASIS_POINTS


def _parse_domains(text: str) -> list[str]:
    return validation.domains(
        text,
        field="allowed_domains",
        label="Allowed domain",
        most=50,
        empty="List at least one domain your landing pages live on.",
        too_many="At most 50 allowed domains.",
    )


def _checked_url(raw: str, domains: list[str], field: str, label: str, *, required: bool) -> str:
    if not raw:
        if required:
            raise Invalid(f"{label} is required.", field=field)
        return ""
    safe = deeplink.safe_url(raw, frozenset(domains))
    if safe is None:
        raise Invalid(
            f"{label} must be an http(s) address on one of the allowed domains "
            f"({', '.join(domains)}), without a port or user name.",
            field=field,
        )
    return safe


async def parse_terms(form: Mapping[str, Any], *, currency_locked: str | None = None) -> dict[str, Any]:
    """Validate the campaign form into column values. Raises Invalid naming the first bad field."""
    name = validation.text(form_field(form, "name"), "name", "Campaign name", max_length=120)
    description = validation.text(
        form_field(form, "description"), "description", "Description", max_length=5000, required=False
    )
    category = form_field(form, "category") or "other"
    if category not in CATEGORIES:
        raise Invalid("Choose one of the listed categories.", field="category")
    currency = currency_locked or money.currency(form_field(form, "currency"))
    domains = _parse_domains(form_field(form, "allowed_domains"))
    landing_url = _checked_url(form_field(form, "landing_url"), domains, "landing_url", "Landing URL", required=True)
    # The fallback takes traffic the campaign cannot: it may live anywhere, but must be a plain web URL.
    fallback_raw = form_field(form, "fallback_url")
    fallback_url = ""
    if fallback_raw:
        fallback = validation.web_url(fallback_raw, "fallback_url", "Fallback URL")
        try:
            fallback_domain = deeplink.normalise_domain(urlsplit(fallback).hostname or "")
        except ValueError:
            raise Invalid(
                "Fallback URL must be a web address such as https://example.com.", field="fallback_url"
            ) from None
        fallback_url = _checked_url(fallback, [fallback_domain], "fallback_url", "Fallback URL", required=False)
    budgets = {}
    for field, label in (("total_budget", "Total budget"), ("daily_budget", "Daily budget")):
        raw = form_field(form, field)
        budgets[f"{field}_minor"] = (
            money.parse_amount(raw, currency, field=field, label=label, allow_zero=False) if raw else None
        )
    if (
        budgets["daily_budget_minor"]
        and budgets["total_budget_minor"]
        and budgets["daily_budget_minor"] > budgets["total_budget_minor"]
    ):
        raise Invalid("The daily budget cannot be larger than the total budget.", field="daily_budget")
    caps = {
        column: _optional_int(form, column, label, minimum=1)
        for column, label in (
            ("cap_clicks_daily", "Clicks per day"),
            ("cap_conversions_daily", "Conversions per day"),
            ("cap_conversions_monthly", "Conversions per month"),
            ("cap_publisher_clicks_daily", "Clicks per day per publisher"),
            ("cap_publisher_conversions_daily", "Conversions per day per publisher"),
            ("cap_publisher_conversions_monthly", "Conversions per month per publisher"),
        )
    }
    visibility = form_field(form, "visibility") or Visibility.public.value
    if visibility not in Visibility.__members__:
        raise Invalid("Choose public, approval or private.", field="visibility")
    click_id_param = form_field(form, "click_id_param") or "click_id"
    if not (click_id_param.replace("_", "").replace("-", "").isalnum() and len(click_id_param) <= 32):
        raise Invalid("The click id parameter may use letters, digits, - and _ only.", field="click_id_param")
    forward = [s for s in SUB_NAMES if form.get(f"forward_{s}") in ("on", "true", "1", True)]
    # A choice rather than a checkbox, so a form that does not send it (older pages, scripts) keeps it on.
    pixel = form_field(form, "pixel") or "on"
    if pixel not in ("on", "off"):
        raise Invalid("Choose whether the conversion pixel is on or off.", field="pixel")
    return {
        "name": name,
        "description": description,
        "category": category,
        "currency": currency,
        "allowed_domains": "\n".join(domains),
        "landing_url": landing_url,
        "fallback_url": fallback_url,
        **budgets,
        **caps,
        "attribution_window_days": _int(
            form_field(form, "attribution_window_days") or "30",
            "attribution_window_days",
            "Attribution window",
            minimum=1,
            maximum=365,
        ),
        "hold_days": _int(form_field(form, "hold_days") or "30", "hold_days", "Hold period", minimum=0, maximum=365),
        "min_conversion_seconds": _int(
            form_field(form, "min_conversion_seconds") or "0",
            "min_conversion_seconds",
            "Minimum click-to-conversion time",
            minimum=0,
            maximum=86400 * 30,
        ),
        "visibility": visibility,
        "click_id_param": click_id_param,
        "forward_subs": ",".join(forward),
        "pixel_enabled": pixel == "on",
    }


async def parse_goals(form: Mapping[str, Any], currency: str) -> list[dict[str, Any]]:
    """Goal rows goal_N_name/model/advertiser/publisher (N = 0..4); empty rows are skipped."""
    margin = await default_margin_bp()
    goals: list[dict[str, Any]] = []
    names: set[str] = set()
    for n in range(MAX_GOALS):
        name = form_field(form, f"goal_{n}_name").lower()
        if not name:
            continue
        field = f"goal_{n}"
        if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 40:
            raise Invalid(f"Goal name '{name}' may use letters, digits, - and _ only.", field=f"{field}_name")
        if name in names:
            raise Invalid(f"Two goals are called '{name}'.", field=f"{field}_name")
        names.add(name)
        model = form_field(form, f"{field}_model")
        if model not in PayoutModel.__members__:
            raise Invalid(f"Choose a payout model for goal '{name}'.", field=f"{field}_model")
        pub_raw = form_field(form, f"{field}_publisher")
        if model == PayoutModel.revshare:
            adv = money.parse_percent_bp(
                form_field(form, f"{field}_advertiser"),
                field=f"{field}_advertiser",
                label=f"What the advertiser pays for '{name}'",
            )
            pub = (
                money.parse_percent_bp(pub_raw, field=f"{field}_publisher", label=f"Publisher share for '{name}'")
                if pub_raw
                else publisher_share(adv, margin)
            )
        else:
            adv = money.parse_amount(
                form_field(form, f"{field}_advertiser"),
                currency,
                field=f"{field}_advertiser",
                label=f"What the advertiser pays for '{name}'",
                allow_zero=False,
            )
            pub = (
                money.parse_amount(
                    pub_raw, currency, field=f"{field}_publisher", label=f"Publisher payout for '{name}'"
                )
                if pub_raw
                else publisher_share(adv, margin)
            )
        if pub > adv:
            raise Invalid(
                f"The publisher payout for '{name}' cannot be more than what the advertiser pays.",
                field=f"{field}_publisher",
            )
        goals.append(
            {
                "name": name,
                "payout_model": model,
                "advertiser_amount": adv,
                "publisher_amount": pub,
                "position": n,
                **_intake_limits(form, field, name, model, currency),
            }
        )
    if not goals:
        raise Invalid("Add at least one goal: what you pay for, and how much.", field="goal_0_name")
    return goals


def default_max_sale_minor(currency: str) -> int:
    """The largest sale a new RevShare goal accepts unless the advertiser says otherwise: 10,000
    in the campaign's currency (€10,000.00), and at least a million minor units, so currencies
    without decimals are not left at a few dozen euros' worth (¥1,000,000). The migration gave
    existing goals the same, or their largest approved sale if that was more."""
    return max(DEFAULT_MAX_SALE_MAJOR * 10 ** money.exponent(currency), DEFAULT_MAX_SALE_MINOR_AT_LEAST)


def _intake_limits(form: Mapping[str, Any], field: str, name: str, model: str, currency: str) -> dict[str, Any]:
    """A conversion goal's limits on what reports may claim (server/conversions/service.py):
    conversions per click (default 1) and, for RevShare, the largest sale (default above)."""
    if model not in CONVERSION_MODELS:
        return {"conversions_per_click": 1, "max_sale_minor": None}
    per_click = _int(
        form_field(form, f"{field}_per_click") or "1",
        f"{field}_per_click",
        f"Conversions per click for '{name}'",
        minimum=1,
        maximum=MAX_CONVERSIONS_PER_CLICK,
    )
    max_sale = None
    if model == PayoutModel.revshare:
        raw = form_field(form, f"{field}_max_sale")
        max_sale = (
            money.parse_amount(
                raw, currency, field=f"{field}_max_sale", label=f"Largest sale for '{name}'", allow_zero=False
            )
            if raw
            else default_max_sale_minor(currency)
        )
        if max_sale > MAX_SALE_MINOR:
            raise Invalid(f"Largest sale for '{name}' is too large.", field=f"{field}_max_sale")
    return {"conversions_per_click": per_click, "max_sale_minor": max_sale}


def new_postback_secret() -> str:
    """The `token` of a campaign's postbacks: 192 random bits, 32 URL-safe characters."""
    return secrets.token_urlsafe(24)


def new_public_key() -> str:
    """The key in a campaign's pixel URL: public by design, 72 random bits so it cannot be guessed."""
    return secrets.token_urlsafe(9)


async def create_campaign(advertiser: CurrentUser, form: Mapping[str, Any]) -> int:
    terms = await parse_terms(form)
    goals = await parse_goals(form, terms["currency"])
    now = clock.now()
    async with db.transaction():
        rows = await Campaign.insert(
            Campaign(
                advertiser=advertiser.id,
                created_at=now,
                updated_at=now,
                status=CampaignStatus.active.value,
                postback_secret=new_postback_secret(),
                public_key=new_public_key(),
                **terms,
            )
        ).returning(Campaign.id)
        campaign_id = rows[0]["id"]
        await Goal.insert(*[Goal(campaign=campaign_id, **g) for g in goals])
        await audit.record(
            "campaign.created",
            actor_id=advertiser.id,
            object_type="campaign",
            object_id=campaign_id,
            name=terms["name"],
        )
    return campaign_id


async def owned_campaign(advertiser: CurrentUser, campaign_id: int) -> dict[str, Any]:
    """The advertiser's own campaign; anyone else's answers NotFound, as if it did not exist."""
    row = await Campaign.select().where(Campaign.id == campaign_id, Campaign.advertiser == advertiser.id).first()
    if row is None:
        raise NotFound("There is no such campaign.")
    return row


async def goals_of(campaign_id: int) -> list[dict[str, Any]]:
    return await Goal.select().where(Goal.campaign == campaign_id).order_by(Goal.position)


async def update_campaign(advertiser: CurrentUser, campaign_id: int, form: Mapping[str, Any]) -> None:
    """Edit the terms. The currency is fixed once set (amounts already earned are in it);
    goals are matched by position, new rows add goals, and goals are never deleted."""
    current = await owned_campaign(advertiser, campaign_id)
    if current["status"] == CampaignStatus.ended.value:
        raise Conflict("This campaign has ended and can no longer be edited.")
    terms = await parse_terms(form, currency_locked=current["currency"])
    goals = await parse_goals(form, current["currency"])
    existing = {g["position"]: g for g in await goals_of(campaign_id)}
    async with db.transaction():
        await Campaign.update(
            {**{getattr(Campaign, k): v for k, v in terms.items()}, Campaign.updated_at: clock.now()}
        ).where(Campaign.id == campaign_id)
        for goal in goals:
            old = existing.get(goal["position"])
            if old is None:
                await Goal.insert(Goal(campaign=campaign_id, **goal))
            else:
                await Goal.update({getattr(Goal, k): v for k, v in goal.items()}).where(Goal.id == old["id"])
        await audit.record("campaign.updated", actor_id=advertiser.id, object_type="campaign", object_id=campaign_id)
    await _changed(campaign_id)


_TRANSITIONS = {
    "pause": ({CampaignStatus.active}, CampaignStatus.paused),
    "resume": ({CampaignStatus.paused}, CampaignStatus.active),
    "end": ({CampaignStatus.active, CampaignStatus.paused}, CampaignStatus.ended),
}


async def change_status(advertiser: CurrentUser, campaign_id: int, action: str) -> str:
    if action not in _TRANSITIONS:
        raise Invalid("Unknown action.")
    allowed_from, to = _TRANSITIONS[action]
    current = await owned_campaign(advertiser, campaign_id)
    if CampaignStatus(current["status"]) not in allowed_from:
        raise Conflict(f"A campaign that is {current['status']} cannot {action}.")
    async with db.transaction():
        await Campaign.update(
            {Campaign.status: to.value, Campaign.status_reason: "", Campaign.updated_at: clock.now()}
        ).where(Campaign.id == campaign_id)
        await audit.record(f"campaign.{action}", actor_id=advertiser.id, object_type="campaign", object_id=campaign_id)
    await _changed(campaign_id)
    return to.value


async def pause_for_balance(campaign_id: int, *, reason: str | None = None) -> bool:
    """The system pauses a campaign whose advertiser cannot pay for its conversions (or whose
    balance fell below their auto-pause threshold: billing passes its own `reason`). True if it
    was active (and is paused now); the advertiser resumes it after adding funds."""
    async with db.transaction():
        paused = (
            await Campaign.update(
                {
                    Campaign.status: CampaignStatus.paused.value,
                    Campaign.updated_at: clock.now(),
                    Campaign.status_reason: reason
                    or "Paused by affnet: your balance cannot cover the conversions waiting "
                    "for approval. Add funds, then resume the campaign.",
                }
            )
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.active.value)
            .returning(Campaign.id)
        )
        if paused:
            await audit.record(
                "campaign.paused_for_balance", actor_id=None, object_type="campaign", object_id=campaign_id
            )
    if paused:
        await _changed(campaign_id)
    return bool(paused)


async def list_for_advertiser(advertiser: CurrentUser) -> list[CampaignListing]:
    rows = (
        await Campaign.select(
            Campaign.id, Campaign.name, Campaign.status, Campaign.currency, Campaign.visibility, Campaign.created_at
        )
        .where(Campaign.advertiser == advertiser.id)
        .order_by(Campaign.id, ascending=False)
    )
    return [CampaignListing.from_row(row) for row in rows]


# --- publishers: marketplace and memberships -----------------------------------------------------


async def require_approved_publisher(publisher: CurrentUser) -> None:
    row = await Publisher.select(Publisher.status).where(Publisher.user == publisher.id).first()
    if row is None or row["status"] != PublisherStatus.approved.value:
        raise Forbidden(
            "Your publisher account is not approved yet, so you cannot join campaigns. "
            "An admin reviews new publishers, usually within two working days.",
            code="publisher_not_approved",
        )


async def marketplace(publisher: CurrentUser, *, search: str = "", model: str = "", category: str = "") -> list[dict]:
    """Active campaigns this publisher may see: public and approval ones, and private ones they
    were invited to or belong to. Each with its goals and the publisher's membership, if any."""
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
        Campaign.advertiser.id.as_alias("advertiser_id"),
    ).where(Campaign.status == CampaignStatus.active.value)
    if search:
        query = query.where(Campaign.name.ilike(f"%{search[:80]}%") | Campaign.description.ilike(f"%{search[:80]}%"))
    if category in CATEGORIES:
        query = query.where(Campaign.category == category)
    campaigns = [
        c
        for c in await query.order_by(Campaign.id, ascending=False)
        if c["visibility"] != Visibility.private.value or c["id"] in memberships
    ]
    if not campaigns:
        return []
    goals = await Goal.select().where(Goal.campaign.is_in([c["id"] for c in campaigns])).order_by(Goal.position)
    by_campaign: dict[int, list[dict]] = {}
    for g in goals:
        by_campaign.setdefault(g["campaign"], []).append(g)
    result = []
    for c in campaigns:
        c["goals"] = by_campaign.get(c["id"], [])
        if model and not any(g["payout_model"] == model for g in c["goals"]):
            continue
        c["membership"] = memberships.get(c["id"])
        result.append(c)
    return result


def describe_goal(goal: Mapping[str, Any], currency: str, *, for_publisher: bool = True) -> str:
    """The terms in plain words, e.g. 'Earn €1.20 per lead' or 'Earn 8 % of each sale'."""
    amount = goal["publisher_amount"] if for_publisher else goal["advertiser_amount"]
    model = PayoutModel(goal["payout_model"])
    value = f"{money.percent_text(amount)} %" if model is PayoutModel.revshare else money.display(amount, currency)
    verb = "Earn" if for_publisher else "Pay"
    return f"{verb} {value} {MODEL_LABELS[model]} ({goal['name']})"


async def join(publisher: CurrentUser, campaign_id: int) -> str:
    """Join a public campaign, apply to an approval one, or accept an invitation to a private one."""
    await require_approved_publisher(publisher)
    campaign = (
        await Campaign.select(Campaign.id, Campaign.status, Campaign.visibility)
        .where(Campaign.id == campaign_id)
        .first()
    )
    existing = (
        await Membership.select()
        .where(Membership.campaign == campaign_id, Membership.publisher == publisher.id)
        .first()
    )
    if campaign is None or (campaign["visibility"] == Visibility.private.value and existing is None):
        raise NotFound("There is no such campaign.")
    if campaign["status"] != CampaignStatus.active.value:
        raise Conflict("This campaign is not taking new publishers right now.")
    if existing is not None:
        status = MembershipStatus(existing["status"])
        if status in (MembershipStatus.approved, MembershipStatus.applied):
            return status.value
        if status in (MembershipStatus.declined, MembershipStatus.removed):
            raise Conflict("The advertiser has declined your participation in this campaign.")
    new_status = (
        MembershipStatus.applied if campaign["visibility"] == Visibility.approval.value else MembershipStatus.approved
    )
    now = clock.now()
    async with db.transaction():
        if existing is None:
            try:
                rows = await Membership.insert(
                    Membership(
                        campaign=campaign_id,
                        publisher=publisher.id,
                        status=new_status.value,
                        created_at=now,
                        decided_at=now if new_status is MembershipStatus.approved else None,
                    )
                ).returning(Membership.id)
            except Exception as exc:
                if db.is_unique_violation(exc):
                    raise Conflict("You have already joined or applied to this campaign.") from None
                raise
            membership_id = rows[0]["id"]
        else:  # an invitation accepted
            membership_id = existing["id"]
            await Membership.update({Membership.status: new_status.value, Membership.decided_at: now}).where(
                Membership.id == membership_id
            )
        if new_status is MembershipStatus.approved:
            await _ensure_link(membership_id, campaign_id, publisher.id)
        await audit.record(
            f"membership.{new_status.value}",
            actor_id=publisher.id,
            object_type="membership",
            object_id=membership_id,
            campaign_id=campaign_id,
        )
    await _changed(campaign_id)
    return new_status.value


async def applicants(advertiser: CurrentUser, campaign_id: int) -> list[Applicant]:
    await owned_campaign(advertiser, campaign_id)
    rows = (
        await Membership.select(
            Membership.id,
            Membership.status,
            Membership.created_at,
            Membership.note,
            Membership.publisher.email.as_alias("email"),
            Membership.publisher.id.as_alias("publisher_id"),
        )
        .where(Membership.campaign == campaign_id)
        .order_by(Membership.id)
    )
    profiles = {
        p["user"]: ApplicantProfile(p["display_name"], p["blog_url"], p["audience"])
        for p in await Publisher.select(
            Publisher.user, Publisher.display_name, Publisher.blog_url, Publisher.audience
        ).where(Publisher.user.is_in([r["publisher_id"] for r in rows] or [0]))
    }
    return [Applicant.from_row(r, profiles.get(r["publisher_id"])) for r in rows]


async def decide(
    advertiser: CurrentUser, membership_id: int, accept: bool, note: str = "", *, campaign_id: int | None = None
) -> None:
    """Accept or decline an applicant (or remove a member). Another advertiser's answers NotFound,
    as does one of another campaign than `campaign_id` (when given, e.g. by the page's URL)."""
    query = Membership.select(Membership.id, Membership.status, Membership.campaign, Membership.publisher).where(
        Membership.id == membership_id, Membership.campaign.advertiser == advertiser.id
    )
    if campaign_id is not None:
        query = query.where(Membership.campaign == campaign_id)
    row = await query.first()
    if row is None:
        raise NotFound("There is no such applicant.")
    note = validation.text(note, "note", "Note", max_length=500, required=False)
    new = (
        MembershipStatus.approved
        if accept
        else (
            MembershipStatus.removed if row["status"] == MembershipStatus.approved.value else MembershipStatus.declined
        )
    )
    if row["status"] == new.value:
        return
    async with db.transaction():
        await Membership.update(
            {Membership.status: new.value, Membership.note: note, Membership.decided_at: clock.now()}
        ).where(Membership.id == membership_id)
        if accept:
            await _ensure_link(membership_id, row["campaign"], row["publisher"])
        await audit.record(
            f"membership.{new.value}",
            actor_id=advertiser.id,
            object_type="membership",
            object_id=membership_id,
            note=note,
        )
    await _changed(row["campaign"])


async def _ensure_link(membership_id: int, campaign_id: int, publisher_id: int) -> None:
    """Give an approved membership its tracked link (once; a re-approval keeps the old link)."""
    if await Link.exists().where(Link.membership == membership_id):
        return
    await Link.insert(
        Link(
            code=secrets.token_urlsafe(6),  # 8 characters, 48 random bits
            campaign=campaign_id,
            publisher=publisher_id,
            membership=membership_id,
            created_at=clock.now(),
        )
    )


async def invite(advertiser: CurrentUser, campaign_id: int, publisher_email: str) -> None:
    await owned_campaign(advertiser, campaign_id)
    email = validation.email(publisher_email, field="publisher_email")
    pub = await User.select(User.id).where(User.email == email, User.role == "publisher").first()
    if pub is None:
        raise Invalid("No publisher has that email address.", field="publisher_email")
    if await Membership.exists().where(Membership.campaign == campaign_id, Membership.publisher == pub["id"]):
        raise Conflict("That publisher is already invited to or part of this campaign.", field="publisher_email")
    async with db.transaction():
        rows = await Membership.insert(
            Membership(
                campaign=campaign_id, publisher=pub["id"], status=MembershipStatus.invited.value, created_at=clock.now()
            )
        ).returning(Membership.id)
        await audit.record(
            "membership.invited", actor_id=advertiser.id, object_type="membership", object_id=rows[0]["id"], email=email
        )


async def _changed(campaign_id: int) -> None:
    """Tell every server process that the campaign's cached terms are stale."""
    await changes.campaign_changed(campaign_id)


CLICK_RULES = ("datacenter", "prefetch", "suspicious_headers")  # server/tracking/click_rules.py: SWITCHABLE
CLICK_RULES_OFF_KEY = "click_rules_off"  # the network setting (server/tracking/click_rules.py reads it)


async def click_rules_off(campaign_id: int | None) -> set[str]:
    """The click-quality rules switched off for a campaign (None: network-wide)."""
    if campaign_id is None:
        row = await NetworkSetting.select(NetworkSetting.value).where(NetworkSetting.key == CLICK_RULES_OFF_KEY).first()
        raw = row["value"] if row else ""
    else:
        row = await Campaign.select(Campaign.click_rules_off).where(Campaign.id == campaign_id).first()
        raw = row["click_rules_off"] if row else ""
    return {r for r in raw.split(",") if r in CLICK_RULES}


async def set_click_rules_off(user: CurrentUser, campaign_id: int | None, off: set[str]) -> bool:
    """Switch click-quality rules off (and the others on) for a campaign (its advertiser, checked by
    the caller, or an admin) or network-wide (an admin); audited; every server's cached link terms
    are dropped. Whether anything changed."""
    off = {r for r in off if r in CLICK_RULES}
    value = ",".join(r for r in CLICK_RULES if r in off)
    before = await click_rules_off(campaign_id)
    if before == off:
        return False
    now = clock.now()
    async with db.transaction():
        if campaign_id is not None:
            await Campaign.update({Campaign.click_rules_off: value, Campaign.updated_at: now}).where(
                Campaign.id == campaign_id
            )
        else:
            if user.role != "admin":
                raise Forbidden("Only an admin switches the click rules network-wide.")
            updated = (
                await NetworkSetting.update(
                    {NetworkSetting.value: value, NetworkSetting.updated_at: now, NetworkSetting.updated_by: user.id}
                )
                .where(NetworkSetting.key == CLICK_RULES_OFF_KEY)
                .returning(NetworkSetting.id)
            )
            if not updated:
                await NetworkSetting.insert(
                    NetworkSetting(key=CLICK_RULES_OFF_KEY, value=value, updated_at=now, updated_by=user.id)
                )
        await audit.record(
            "click_rules.changed",
            actor_id=user.id,
            object_type="campaign" if campaign_id is not None else "network",
            object_id=campaign_id,
            before=sorted(before),
            after=sorted(off),
        )
    if campaign_id is not None:
        await _changed(campaign_id)
    else:
        await changes.network_changed()
    return True
