"""The rules of campaigns: terms and their validation, status changes, goals, memberships."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from piccolo.query.functions.aggregate import Count

from server.accounts.identity import CurrentUser
from server.accounts.tables import NetworkSetting, Publisher, PublisherStatus, User
from server.audit import service as audit
from server.campaigns import notices
from server.campaigns.records import Applicant, ApplicantProfile, CampaignListing, CampaignSummary
from server.campaigns.tables import (
    SUB_NAMES,
    Campaign,
    CampaignStatus,
    Creative,
    Goal,
    Link,
    Membership,
    MembershipStatus,
    PayoutModel,
    Visibility,
)
from server.core import changes, clock, db, deeplink, money, validation
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.i18n import _, _l, percent_text
from server.core.validation import form_field
from server.ledger import service as ledger
from server.ledger.tables import AccountKind
from server.webhooks import events

CATEGORIES = {
    "fashion": _l("Fashion & beauty"),
    "finance": _l("Finance & insurance"),
    "food": _l("Food & drink"),
    "home": _l("Home & garden"),
    "software": _l("Software & apps"),
    "travel": _l("Travel"),
    "health": _l("Health & fitness"),
    "education": _l("Education"),
    "games": _l("Games & entertainment"),
    "other": _l("Other"),
}
MODEL_LABELS = {
    PayoutModel.cpc: _l("per click"),
    PayoutModel.cpm: _l("per 1,000 impressions"),
    PayoutModel.cpl: _l("per lead"),
    PayoutModel.cpa: _l("per sale"),
    PayoutModel.revshare: _l("of each sale"),
}
# A goal's terms as whole sentences (what the publisher earns, what the advertiser pays), so each
# language words them its own way.
_EARN = {
    PayoutModel.cpc: _l("Earn %(amount)s per click (%(goal)s)"),
    PayoutModel.cpm: _l("Earn %(amount)s per 1,000 impressions (%(goal)s)"),
    PayoutModel.cpl: _l("Earn %(amount)s per lead (%(goal)s)"),
    PayoutModel.cpa: _l("Earn %(amount)s per sale (%(goal)s)"),
    PayoutModel.revshare: _l("Earn %(amount)s of each sale (%(goal)s)"),
}
_PAY = {
    PayoutModel.cpc: _l("Pay %(amount)s per click (%(goal)s)"),
    PayoutModel.cpm: _l("Pay %(amount)s per 1,000 impressions (%(goal)s)"),
    PayoutModel.cpl: _l("Pay %(amount)s per lead (%(goal)s)"),
    PayoutModel.cpa: _l("Pay %(amount)s per sale (%(goal)s)"),
    PayoutModel.revshare: _l("Pay %(amount)s of each sale (%(goal)s)"),
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
        raise Invalid(_("%(label)s must be a whole number.", label=label), field=field)
    value = int(raw)
    if value < minimum:
        raise Invalid(_("%(label)s cannot be less than %(num)s.", label=label, num=minimum), field=field)
    if value > maximum:
        raise Invalid(_("%(label)s cannot be more than %(num)s.", label=label, num=maximum), field=field)
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
        label=_("Allowed domain"),
        most=50,
        empty=_("List at least one domain your landing pages live on."),
        too_many=_("At most 50 allowed domains."),
    )


def _checked_url(raw: str, domains: list[str], field: str, label: str, *, required: bool) -> str:
    if not raw:
        if required:
            raise Invalid(_("%(label)s is required.", label=label), field=field)
        return ""
    safe = deeplink.safe_url(raw, frozenset(domains))
    if safe is None:
        raise Invalid(
            _(
                "%(label)s must be an http(s) address on one of the allowed domains (%(domains)s), "
                "without a port or user name.",
                label=label,
                domains=", ".join(domains),
            ),
            field=field,
        )
    return safe


async def parse_terms(form: Mapping[str, Any], *, currency_locked: str | None = None) -> dict[str, Any]:
    """Validate the campaign form into column values. Raises Invalid naming the first bad field."""
    name = validation.text(form_field(form, "name"), "name", _("Campaign name"), max_length=120)
    description = validation.text(
        form_field(form, "description"), "description", _("Description"), max_length=5000, required=False
    )
    category = form_field(form, "category") or "other"
    if category not in CATEGORIES:
        raise Invalid(_("Choose one of the listed categories."), field="category")
    currency = currency_locked or money.currency(form_field(form, "currency"))
    domains = _parse_domains(form_field(form, "allowed_domains"))
    landing_url = _checked_url(form_field(form, "landing_url"), domains, "landing_url", _("Landing URL"), required=True)
    # The fallback takes traffic the campaign cannot: it may live anywhere, but must be a plain web URL.
    fallback_raw = form_field(form, "fallback_url")
    fallback_url = ""
    if fallback_raw:
        fallback = validation.web_url(fallback_raw, "fallback_url", _("Fallback URL"))
        try:
            fallback_domain = deeplink.normalise_domain(urlsplit(fallback).hostname or "")
        except ValueError:
            raise Invalid(
                _("Fallback URL must be a web address such as https://example.com."), field="fallback_url"
            ) from None
        fallback_url = _checked_url(fallback, [fallback_domain], "fallback_url", _("Fallback URL"), required=False)
    budgets = {}
    for field, label in (("total_budget", _("Total budget")), ("daily_budget", _("Daily budget"))):
        raw = form_field(form, field)
        budgets[f"{field}_minor"] = (
            money.parse_amount(raw, currency, field=field, label=label, allow_zero=False) if raw else None
        )
    if (
        budgets["daily_budget_minor"]
        and budgets["total_budget_minor"]
        and budgets["daily_budget_minor"] > budgets["total_budget_minor"]
    ):
        raise Invalid(_("The daily budget cannot be larger than the total budget."), field="daily_budget")
    caps = {
        column: _optional_int(form, column, label, minimum=1)
        for column, label in (
            ("cap_clicks_daily", _("Clicks per day")),
            ("cap_conversions_daily", _("Conversions per day")),
            ("cap_conversions_monthly", _("Conversions per month")),
            ("cap_publisher_clicks_daily", _("Clicks per day per publisher")),
            ("cap_publisher_conversions_daily", _("Conversions per day per publisher")),
            ("cap_publisher_conversions_monthly", _("Conversions per month per publisher")),
        )
    }
    visibility = form_field(form, "visibility") or Visibility.public.value
    if visibility not in Visibility.__members__:
        raise Invalid(_("Choose public, approval or private."), field="visibility")
    click_id_param = form_field(form, "click_id_param") or "click_id"
    if not (click_id_param.replace("_", "").replace("-", "").isalnum() and len(click_id_param) <= 32):
        raise Invalid(_("The click id parameter may use letters, digits, - and _ only."), field="click_id_param")
    forward = [s for s in SUB_NAMES if form.get(f"forward_{s}") in ("on", "true", "1", True)]
    # A choice rather than a checkbox, so a form that does not send it (older pages, scripts) keeps it on.
    pixel = form_field(form, "pixel") or "on"
    if pixel not in ("on", "off"):
        raise Invalid(_("Choose whether the conversion pixel is on or off."), field="pixel")
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
            _("Attribution window"),
            minimum=1,
            maximum=365,
        ),
        "hold_days": _int(form_field(form, "hold_days") or "30", "hold_days", _("Hold period"), minimum=0, maximum=365),
        "min_conversion_seconds": _int(
            form_field(form, "min_conversion_seconds") or "0",
            "min_conversion_seconds",
            _("Minimum click-to-conversion time"),
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
            raise Invalid(
                _("Goal name '%(goal)s' may use letters, digits, - and _ only.", goal=name), field=f"{field}_name"
            )
        if name in names:
            raise Invalid(_("Two goals are called '%(goal)s'.", goal=name), field=f"{field}_name")
        names.add(name)
        model = form_field(form, f"{field}_model")
        if model not in PayoutModel.__members__:
            raise Invalid(_("Choose a payout model for goal '%(goal)s'.", goal=name), field=f"{field}_model")
        pub_raw = form_field(form, f"{field}_publisher")
        if model == PayoutModel.revshare:
            adv = money.parse_percent_bp(
                form_field(form, f"{field}_advertiser"),
                field=f"{field}_advertiser",
                label=_("What the advertiser pays for '%(goal)s'", goal=name),
            )
            pub = (
                money.parse_percent_bp(
                    pub_raw, field=f"{field}_publisher", label=_("Publisher share for '%(goal)s'", goal=name)
                )
                if pub_raw
                else publisher_share(adv, margin)
            )
        else:
            adv = money.parse_amount(
                form_field(form, f"{field}_advertiser"),
                currency,
                field=f"{field}_advertiser",
                label=_("What the advertiser pays for '%(goal)s'", goal=name),
                allow_zero=False,
            )
            pub = (
                money.parse_amount(
                    pub_raw, currency, field=f"{field}_publisher", label=_("Publisher payout for '%(goal)s'", goal=name)
                )
                if pub_raw
                else publisher_share(adv, margin)
            )
        if pub > adv:
            raise Invalid(
                _("The publisher payout for '%(goal)s' cannot be more than what the advertiser pays.", goal=name),
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
        raise Invalid(_("Add at least one goal: what you pay for, and how much."), field="goal_0_name")
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
        _("Conversions per click for '%(goal)s'", goal=name),
        minimum=1,
        maximum=MAX_CONVERSIONS_PER_CLICK,
    )
    max_sale = None
    if model == PayoutModel.revshare:
        raw = form_field(form, f"{field}_max_sale")
        max_sale = (
            money.parse_amount(
                raw,
                currency,
                field=f"{field}_max_sale",
                label=_("Largest sale for '%(goal)s'", goal=name),
                allow_zero=False,
            )
            if raw
            else default_max_sale_minor(currency)
        )
        if max_sale > MAX_SALE_MINOR:
            raise Invalid(_("Largest sale for '%(goal)s' is too large.", goal=name), field=f"{field}_max_sale")
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
        raise NotFound(_("There is no such campaign."))
    return row


async def goals_of(campaign_id: int) -> list[dict[str, Any]]:
    return await Goal.select().where(Goal.campaign == campaign_id).order_by(Goal.position)


async def update_campaign(advertiser: CurrentUser, campaign_id: int, form: Mapping[str, Any]) -> None:
    """Edit the terms. The currency is fixed once set (amounts already earned are in it);
    goals are matched by position, new rows add goals, and goals are never deleted."""
    current = await owned_campaign(advertiser, campaign_id)
    if current["status"] == CampaignStatus.ended.value:
        raise Conflict(_("This campaign has ended and can no longer be edited."))
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
# Why a change of status is refused, by action and the campaign's status: whole sentences.
_REFUSED = {
    ("pause", CampaignStatus.paused): _l("A campaign that is paused cannot pause."),
    ("pause", CampaignStatus.ended): _l("A campaign that is ended cannot pause."),
    ("resume", CampaignStatus.active): _l("A campaign that is active cannot resume."),
    ("resume", CampaignStatus.ended): _l("A campaign that is ended cannot resume."),
    ("end", CampaignStatus.ended): _l("A campaign that is ended cannot end."),
}


async def change_status(advertiser: CurrentUser, campaign_id: int, action: str) -> str:
    if action not in _TRANSITIONS:
        raise Invalid(_("Unknown action."))
    allowed_from, to = _TRANSITIONS[action]
    current = await owned_campaign(advertiser, campaign_id)
    status = CampaignStatus(current["status"])
    if status not in allowed_from:
        raise Conflict(str(_REFUSED[action, status]))
    async with db.transaction():
        await Campaign.update(
            {Campaign.status: to.value, Campaign.status_reason: "", Campaign.updated_at: clock.now()}
        ).where(Campaign.id == campaign_id)
        await audit.record(f"campaign.{action}", actor_id=advertiser.id, object_type="campaign", object_id=campaign_id)
    await _changed(campaign_id)
    return to.value


# Stored in English (the pause may happen in a worker, in no one's language) and translated when
# shown: status_reason_text.
PAUSED_FOR_BALANCE = (
    "Paused by affnet: your balance cannot cover the conversions waiting for approval. "
    "Add funds, then resume the campaign."
)


def status_reason_text(stored: str) -> str:
    """Why the campaign is in its status, in the reader's language when it is one of ours."""
    if stored == PAUSED_FOR_BALANCE:
        return _(
            "Paused by affnet: your balance cannot cover the conversions waiting for approval. "
            "Add funds, then resume the campaign."
        )
    return stored


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
                    Campaign.status_reason: reason or PAUSED_FOR_BALANCE,
                }
            )
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.active.value)
            .returning(Campaign.id, Campaign.advertiser, Campaign.currency, Campaign.name)
        )
        if paused:
            await audit.record(
                "campaign.paused_for_balance", actor_id=None, object_type="campaign", object_id=campaign_id
            )
            row = paused[0]
            await events.campaign_paused_for_funds(
                {**row, "id": campaign_id}, threshold=reason is not None, reason=reason or PAUSED_FOR_BALANCE
            )
            await notices.balance_low(
                row["advertiser"], row["currency"], threshold_minor=0, paused_campaign=row["name"]
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


async def funded_ids(campaigns: Sequence[Mapping[str, Any]]) -> set[int]:
    """Of these campaigns (rows with `id`, `currency` and `advertiser_id`), those whose advertiser
    has money in the campaign's currency (their ledger balance is above zero): the only ones
    publishers are offered, as the others could not pay them. One read per currency."""
    advertisers: dict[str, set[int]] = defaultdict(set)
    for c in campaigns:
        advertisers[c["currency"]].add(c["advertiser_id"])
    balances = {
        currency: await ledger.balances(AccountKind.advertiser_balance, currency, sorted(ids))
        for currency, ids in advertisers.items()
    }
    return {c["id"] for c in campaigns if balances[c["currency"]][c["advertiser_id"]] > 0}


async def summaries(advertiser: CurrentUser, campaign_id: int | None = None) -> list[CampaignSummary]:
    """The advertiser's campaigns (or the one asked for) with what they lack to reach publishers
    (funds, creatives) and how many applications wait for an answer: four reads in all."""
    listings = [c for c in await list_for_advertiser(advertiser) if campaign_id in (None, c.id)]
    ids = [c.id for c in listings] or [0]
    funded = await funded_ids([{"id": c.id, "currency": c.currency, "advertiser_id": advertiser.id} for c in listings])
    with_creatives = {
        r["campaign"]
        for r in await Creative.select(Creative.campaign)
        .where(Creative.campaign.is_in(ids), Creative.archived.eq(False))
        .distinct()
    }
    waiting = await waiting_applications(ids)
    return [
        CampaignSummary(c, funded=c.id in funded, has_creatives=c.id in with_creatives, waiting=waiting.get(c.id, 0))
        for c in listings
    ]


async def waiting_applications(campaign_ids: Sequence[int]) -> dict[int, int]:
    """How many publishers applied to each campaign and wait for the advertiser's answer."""
    rows = (
        await Membership.select(Membership.campaign, Count(alias="n"))
        .where(
            Membership.campaign.is_in(list(campaign_ids) or [0]), Membership.status == MembershipStatus.applied.value
        )
        .group_by(Membership.campaign)
    )
    return {r["campaign"]: r["n"] for r in rows}


# --- publishers: marketplace and memberships -----------------------------------------------------


async def require_approved_publisher(publisher: CurrentUser) -> None:
    row = await Publisher.select(Publisher.status).where(Publisher.user == publisher.id).first()
    if row is None or row["status"] != PublisherStatus.approved.value:
        raise Forbidden(
            _(
                "Your publisher account is not approved yet, so you cannot join campaigns. "
                "An admin reviews new publishers, usually within two working days."
            ),
            code="publisher_not_approved",
        )


def describe_goal(goal: Mapping[str, Any], currency: str, *, for_publisher: bool = True) -> str:
    """The terms in plain words, e.g. 'Earn €1.20 per lead' or 'Earn 8 % of each sale'."""
    amount = goal["publisher_amount"] if for_publisher else goal["advertiser_amount"]
    model = PayoutModel(goal["payout_model"])
    value = (
        percent_text(Decimal(amount) / money.BASIS_POINTS, places=2)
        if model is PayoutModel.revshare
        else money.display(amount, currency)
    )
    sentence = (_EARN if for_publisher else _PAY)[model]
    return str(sentence) % {"amount": value, "goal": goal["name"]}


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
        raise NotFound(_("There is no such campaign."))
    if campaign["status"] != CampaignStatus.active.value:
        raise Conflict(_("This campaign is not taking new publishers right now."))
    if existing is not None:
        status = MembershipStatus(existing["status"])
        if status in (MembershipStatus.approved, MembershipStatus.applied):
            return status.value
        if status in (MembershipStatus.declined, MembershipStatus.removed):
            raise Conflict(_("The advertiser has declined your participation in this campaign."))
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
                    raise Conflict(_("You have already joined or applied to this campaign.")) from None
                raise
            membership_id = rows[0]["id"]
        else:  # an invitation accepted
            membership_id = existing["id"]
            await Membership.update({Membership.status: new_status.value, Membership.decided_at: now}).where(
                Membership.id == membership_id
            )
        if new_status is MembershipStatus.approved:
            await _ensure_link(membership_id, campaign_id, publisher.id)
        else:  # applied: the advertiser is told, with the publisher's public profile only
            await notices.publisher_applied(campaign_id, publisher.id)
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
    """The campaign's publishers as the advertiser may see them: their public profile (name, site,
    audience), never their e-mail address, which is personal data."""
    await owned_campaign(advertiser, campaign_id)
    rows = (
        await Membership.select(
            Membership.id,
            Membership.status,
            Membership.created_at,
            Membership.note,
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


async def members_of(
    advertiser: CurrentUser,
    *,
    status: str | None = None,
    campaign_id: int | None = None,
    membership_id: int | None = None,
    before_id: int | None = None,
    limit: int = 200,
) -> list[tuple[int, Applicant]]:
    """The publishers of all the advertiser's campaigns (campaign id, membership), newest membership
    first, as `applicants` shows them (public profile only); `before_id` continues below one (the API)."""
    query = Membership.select(
        Membership.id,
        Membership.status,
        Membership.created_at,
        Membership.note,
        Membership.publisher.id.as_alias("publisher_id"),
        Membership.campaign.as_alias("campaign_id"),
    ).where(Membership.campaign.advertiser == advertiser.id)
    if status is not None:
        query = query.where(Membership.status == status)
    if campaign_id is not None:
        query = query.where(Membership.campaign == campaign_id)
    if membership_id is not None:
        query = query.where(Membership.id == membership_id)
    if before_id is not None:
        query = query.where(Membership.id < before_id)
    rows = await query.order_by(Membership.id, ascending=False).limit(limit)
    profiles = {
        p["user"]: ApplicantProfile(p["display_name"], p["blog_url"], p["audience"])
        for p in await Publisher.select(
            Publisher.user, Publisher.display_name, Publisher.blog_url, Publisher.audience
        ).where(Publisher.user.is_in(sorted({r["publisher_id"] for r in rows}) or [0]))
    }
    return [(r.pop("campaign_id"), Applicant.from_row(r, profiles.get(r["publisher_id"]))) for r in rows]


async def owned_goal(advertiser: CurrentUser, goal_id: int) -> dict[str, Any]:
    """One goal of the advertiser's campaigns; anyone else's answers NotFound, as if it did not exist."""
    row = await Goal.select().where(Goal.id == goal_id, Goal.campaign.advertiser == advertiser.id).first()
    if row is None:
        raise NotFound(_("There is no such goal."))
    return row


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
        raise NotFound(_("There is no such applicant."))
    note = validation.text(note, "note", _("Note"), max_length=500, required=False)
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
        # An answer to an application (or a re-admission) is told; withdrawing an invitation or
        # removing a member is not an answer to anything the publisher asked.
        if row["status"] != MembershipStatus.invited.value and new is not MembershipStatus.removed:
            await notices.application_decided(row["campaign"], row["publisher"], accepted=accept, note=note)
            await events.application_decided(
                membership_id, row["campaign"], row["publisher"], accepted=accept, status=new.value, reason=note
            )
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
        raise Invalid(_("No publisher has that email address."), field="publisher_email")
    if await Membership.exists().where(Membership.campaign == campaign_id, Membership.publisher == pub["id"]):
        raise Conflict(_("That publisher is already invited to or part of this campaign."), field="publisher_email")
    async with db.transaction():
        rows = await Membership.insert(
            Membership(
                campaign=campaign_id, publisher=pub["id"], status=MembershipStatus.invited.value, created_at=clock.now()
            )
        ).returning(Membership.id)
        await audit.record(
            "membership.invited", actor_id=advertiser.id, object_type="membership", object_id=rows[0]["id"], email=email
        )
        await notices.invited(campaign_id, pub["id"])


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
                raise Forbidden(_("Only an admin switches the click rules network-wide."))
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
