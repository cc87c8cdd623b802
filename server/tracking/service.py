"""The click redirect's rules (what a click is provisionally, the landing URL), the batched click
writer (which has server/tracking/counting.py settle duplicates, rate limits, caps and budgets across
every process), and the queries behind publishers' links and click statistics."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from server.campaigns.tables import (
    SUB_NAMES,
    Campaign,
    CampaignStatus,
    Goal,
    Link,
    MembershipStatus,
    PayoutModel,
)
from server.core import batch_counts, db, deeplink
from server.core.errors import NotFound
from server.tracking import click_rules, datacenter
from server.tracking.cache import Target
from server.tracking.classify import Reason, is_bot, reason_label, ua_family
from server.tracking.counting import CANDIDATE, RATE_ONLY, SETTLED, ClickCounter, Key, Limits, SeedTotal
from server.tracking.records import LinkTarget, PublisherLink
from server.tracking.tables import Click
from server.tracking.tokens import issue_click_id
from server.tracking.visitor import daily_hmac, truncate_ip

SUB_MAX = 100
CLICK_COLUMNS = (
    "click_id",
    "clicked_at",
    "link",
    "campaign",
    "publisher",
    *SUB_NAMES,
    "referrer_host",
    "ua_family",
    "visitor_hash",
    "reason",
    "slot",
    "country",
)


async def load_target(code: str) -> Target | None:
    """Read one link and its campaign's terms (a cache miss: at most once per TTL per code)."""
    if not code or len(code) > 16:
        return None
    row = (
        await Link.select(
            Link.id,
            Link.campaign.id.as_alias("campaign_id"),
            Link.publisher.id.as_alias("publisher_id"),
            Link.membership.status.as_alias("membership_status"),
            *(
                getattr(Link.campaign, c).as_alias(c)
                for c in (
                    "status",
                    "landing_url",
                    "allowed_domains",
                    "fallback_url",
                    "click_id_param",
                    "forward_subs",
                    "click_rules_off",
                )
            ),
        )
        .where(Link.code == code)
        .first()
    )
    if row is None:
        return None
    return Target(
        link_id=row["id"],
        campaign_id=row["campaign_id"],
        publisher_id=row["publisher_id"],
        member=row["membership_status"] == MembershipStatus.approved.value,
        campaign_status=row["status"],
        landing_url=row["landing_url"],
        allowed_domains=frozenset(row["allowed_domains"].split()),
        fallback_url=row["fallback_url"],
        click_id_param=row["click_id_param"],
        forward_subs=tuple(s for s in row["forward_subs"].split(",") if s),
        rules_off=click_rules.parse(row["click_rules_off"]) | await click_rules.network_off(),
    )


_LIMIT_TERMS = ("cap_clicks_daily", "cap_publisher_clicks_daily", "daily_budget_minor", "total_budget_minor")


async def limits_of(campaign_ids: Iterable[int]) -> dict[int, Limits]:
    """Campaigns' caps and budgets, with what a valid click costs (their first CPC goal's price, 0
    without one): read by the click flush once per campaign, again after the campaign changes."""
    ids = list(campaign_ids)
    rows = await Campaign.select(Campaign.id, *(getattr(Campaign, c) for c in _LIMIT_TERMS)).where(
        Campaign.id.is_in(ids)
    )
    prices: dict[int, int] = {}
    for goal in (
        await Goal.select(Goal.campaign, Goal.advertiser_amount)
        .where(Goal.campaign.is_in(ids), Goal.payout_model == PayoutModel.cpc.value)
        .order_by(Goal.position, ascending=False)
    ):
        prices[goal["campaign"]] = goal["advertiser_amount"]  # last written: the first by position
    return {
        row["id"]: Limits(cpc_price_minor=prices.get(row["id"], 0), **{c: row[c] for c in _LIMIT_TERMS}) for row in rows
    }


async def stored_valid_clicks(key: Key) -> int:
    """The valid clicks stored for a day's counter: a seed for server/tracking/counting.py."""
    start = datetime.fromisoformat(key.day).replace(tzinfo=UTC)
    query = Click.count().where(
        Click.campaign == key.campaign_id,
        Click.reason == Reason.valid.value,
        Click.clicked_at >= start,
        Click.clicked_at < start + timedelta(days=1),
    )
    if key.publisher_id is not None:
        query = query.where(Click.publisher == key.publisher_id)
    return await query


def clean_sub(value: str | None) -> str:
    if not value:
        return ""
    value = value[:SUB_MAX]
    return value if value.isprintable() else "".join(c for c in value if c.isprintable())


_NO_SUBS = ("",) * len(SUB_NAMES)
# Reasons and statuses as plain strings for the redirect: an enum member's .value is a property call.
_VALID, _HEAD, _BOT, _NOT_MEMBER = (
    Reason.valid.value,
    Reason.head_request.value,
    Reason.bot.value,
    Reason.not_member.value,
)
_CAMPAIGN_PAUSED, _CAMPAIGN_ENDED = Reason.campaign_paused.value, Reason.campaign_ended.value
_DATACENTER = Reason.datacenter.value
_ACTIVE, _PAUSED, _ENDED = CampaignStatus.active.value, CampaignStatus.paused.value, CampaignStatus.ended.value


@lru_cache(maxsize=4096)
def _landing_template(landing: str, param: str) -> tuple[str, str] | None:
    """The landing URL with `param` appended, split around where the click id goes. Click ids are
    URL-safe base64, so they are placed as they are; this saves re-parsing the URL per click."""
    built = deeplink.with_params(landing, [(param, "CLICKID")])
    if built.count("CLICKID") != 1:
        return None
    before, _, after = built.partition("CLICKID")
    return before, after


@lru_cache(maxsize=4096)  # a blog's pages send the same few referrers
def referrer_host(referer: str | None) -> str:
    if not referer:
        return ""
    try:
        return (urlsplit(referer[:2048]).hostname or "")[:255]
    except ValueError:
        return ""


class Redirector:
    """Decides where a click goes and what is recorded about it: CPU and memory only. What needs
    every process's clicks (duplicates, the network rate, caps, budgets) is settled when the batch
    is stored (`store`, server/tracking/counting.py); the redirect only reads the flags those
    answers left, so a full campaign's visitors go to its fallback URL at most one flush later."""

    def __init__(self, token_key: bytes, visitor_key: bytes, counter: ClickCounter) -> None:
        self.token_key = token_key
        self.visitor_key = visitor_key
        self.counter = counter
        self.country_header: bytes | None = None  # server/tracking/geo.py: set from the settings
        # Prefetches, forged browser headers (classify.header_reason) and data centres' clicks are
        # invalid at once; settings.click_quality_checks off: classified as before.
        self.quality_checks = True
        # Give browsers the visitor cookie and key duplicates on it (settings.visitor_cookie).
        self.visitor_cookie = True
        self.datacenter = datacenter.snapshot()  # cloud and hosting networks (server/tracking/datacenter.py)
        self._day_number = -1  # the UTC day `decide` last saw (days since the epoch), and its values
        self._day = ""
        self._visitor_hmac = daily_hmac(visitor_key, date.today())

    def reset(self) -> None:
        """Forget what counted clicks showed (the tests' database and Redis are emptied between tests)."""
        self.counter.clear()

    async def store(self, rows: list[tuple]) -> None:
        """The click buffer's writer, in this process (see store_clicks)."""
        await store_clicks(self.counter, rows)

    def decide(
        self,
        target: Target,
        *,
        method: str,
        query: dict[str, str],
        user_agent: str,
        ip: str,
        referer: str | None,
        now: float | None = None,
        offer_reason: Reason | None = None,
        quality_reason: Reason | None = None,
        slot_id: int | None = None,
        country: str = "",
        visitor_id: str | None = None,
        language: str = "",
    ) -> tuple[str, tuple]:
        """Where the click goes (its Location) and its row: the click table's columns, then its
        network and what the flush still decides (server/tracking/counting.py). The row's reason is
        provisional: `store` settles duplicates, rate limits, caps and budgets.

        `offer_reason`: why the ad offer a click carries makes it invalid (None: no offer, or a good
        one); `quality_reason`: what the request's headers say (classify.header_reason: a prefetch,
        forged browser headers), final at once; `slot_id`: the ad slot the offer was shown in, kept
        with the click; `country`: the visitor's, checked by server/tracking/geo.py ("" when unknown);
        `visitor_id`: the browser's visitor cookie (server/tracking/visitor.py), the one it is given
        now if it had none, None when the network runs without the cookie (the duplicate check then
        keys on the network + User-Agent hash); `language`: its Accept-Language, for the address's key.

        The hottest code of the network: written for the interpreter (plain strings for reasons, the
        day's values kept for the day, one keyed-HMAC copy per hash), each step measured with
        bench/click_profile.py."""
        now = time.time() if now is None else now
        moment = datetime.fromtimestamp(now, UTC)
        day = self._day if int(now // 86400) == self._day_number else self._new_day(now)
        network = truncate_ip(ip)  # once per click: the visitor hash and the rate limit both need it
        hashing = self._visitor_hmac.copy()
        hashing.update(network.encode("ascii") + b"\x00" + user_agent.encode("utf-8", "surrogatepass"))
        visitor = hashing.digest()[:16].hex()
        # The duplicate check's short-window key: the same keyed hash, carried on with the exact
        # address and the languages (counting.py: NEAR_SECONDS).
        hashing.update(f"\x00{ip}\x00{language}".encode("utf-8", "surrogatepass"))
        address = hashing.digest()[:12].hex()
        subs = tuple([clean_sub(query.get(s)) for s in SUB_NAMES]) if query else _NO_SUBS
        reason = _VALID
        takes_traffic = True
        left = CANDIDATE  # what the flush decides; every request counts towards its network's rate
        if method == "HEAD":
            reason, left = _HEAD, SETTLED
        elif is_bot(user_agent):
            reason, left = _BOT, SETTLED
        elif quality_reason is not None and quality_reason.value not in target.rules_off:
            reason, left = quality_reason.value, SETTLED
        elif self.quality_checks and self.datacenter.contains(ip) and _DATACENTER not in target.rules_off:
            reason, left = _DATACENTER, SETTLED
        elif offer_reason is not None:
            reason, left = offer_reason.value, RATE_ONLY
        if not target.member:
            reason, takes_traffic, left = _NOT_MEMBER, False, SETTLED
        elif target.campaign_status != _ACTIVE:
            if target.campaign_status == _PAUSED:
                reason, takes_traffic, left = _CAMPAIGN_PAUSED, False, SETTLED
            elif target.campaign_status == _ENDED:
                reason, takes_traffic, left = _CAMPAIGN_ENDED, False, SETTLED
        if left == CANDIDATE and self.counter.flagged:
            over = self.counter.over(target.campaign_id, target.publisher_id, day)
            if over is not None:
                reason, takes_traffic, left = over.value, False, SETTLED
        click_id = issue_click_id(self.token_key, target.link_id, int(now))
        if takes_traffic or not target.fallback_url:
            landing = target.landing_url
            deep = query.get("url")
            if deep:
                landing = deeplink.safe_url(deep, target.allowed_domains) or target.landing_url
            forwarded = (
                [
                    (name, value)
                    for name, value in zip(SUB_NAMES, subs, strict=True)
                    if value and name in target.forward_subs
                ]
                if target.forward_subs
                else None
            )
            template = None if forwarded else _landing_template(landing, target.click_id_param)
            if template is not None:
                location = template[0] + click_id + template[1]
            else:
                location = deeplink.with_params(landing, [(target.click_id_param, click_id), *(forwarded or ())])
        else:
            location = target.fallback_url
        row = (
            click_id,
            moment,
            target.link_id,
            target.campaign_id,
            target.publisher_id,
            *subs,
            referrer_host(referer) if referer else "",
            ua_family(user_agent),
            visitor,
            reason,
            slot_id,
            country,
            visitor if visitor_id is None else visitor_id,  # the duplicate check's keys (counting.py)
            address,
            network,
            left,
        )
        return location, row

    def _new_day(self, now: float) -> str:
        """The UTC day of `now` (ISO), kept with the visitor hash's keyed HMAC until the next day."""
        today = datetime.fromtimestamp(now, UTC).date()
        self._visitor_hmac = daily_hmac(self.visitor_key, today)
        self._day = today.isoformat()
        self._day_number = int(now // 86400)
        return self._day


# --- the batched writer --------------------------------------------------------------------------


def click_counter(
    redis: Any, seed_total: SeedTotal, kind: type[ClickCounter] = ClickCounter, **tuning: int
) -> ClickCounter:
    """The counter of the network's clicks (server/tracking/counting.py), in a server process or a
    click writer process: the click table's columns, day counters seeded from the stored clicks,
    a campaign's total from `seed_total` (the reports' rollups and the clicks since), limits from
    the campaigns; `tuning`: the network rate's and duplicates' windows, when not the defaults."""
    return kind(
        redis, columns=CLICK_COLUMNS, seed=stored_valid_clicks, seed_total=seed_total, limits_of=limits_of, **tuning
    )


async def store_clicks(counter: ClickCounter, rows: list[tuple]) -> None:
    """Settle a batch's reasons in Redis, a Redis call per batch_counts.ROWS_PER_CALL clicks, then
    store it once: in the serving process (Redirector.store) or in a click writer process
    (workers/click_writer.py). A retried batch is settled again from its first row: its counted
    clicks answer as counted."""
    settled: list[tuple] = []
    for part in batch_counts.per_call(rows):
        settled += await counter.classify(part)
    await write_clicks(settled)


async def write_clicks(rows: list[tuple]) -> None:
    """Store a batch of clicks: COPY on PostgreSQL, one executemany transaction on SQLite. A batch
    retried after an unclear failure never stores a click twice (click ids are unique)."""
    await db.insert_once("click", CLICK_COLUMNS, "click_id", rows)


# --- publishers' links and statistics ------------------------------------------------------------


async def links_of(publisher_id: int) -> list[PublisherLink]:
    rows = (
        await Link.select(
            Link.id,
            Link.code,
            Link.campaign.id.as_alias("campaign_id"),
            Link.campaign.name.as_alias("campaign_name"),
            Link.campaign.status.as_alias("campaign_status"),
            Link.campaign.allowed_domains.as_alias("allowed_domains"),
            Link.membership.status.as_alias("membership_status"),
        )
        .where(Link.publisher == publisher_id)
        .order_by(Link.id)
    )
    return [PublisherLink.from_row(row) for row in rows]


async def link_for(publisher_id: int, campaign_id: int) -> LinkTarget:
    """The publisher's link in a campaign they are approved in; anyone else's answers NotFound."""
    row = (
        await Link.select(
            Link.id,
            Link.code,
            Link.campaign.allowed_domains.as_alias("allowed_domains"),
            Link.campaign.landing_url.as_alias("landing_url"),
        )
        .where(
            Link.publisher == publisher_id,
            Link.campaign == campaign_id,
            Link.membership.status == MembershipStatus.approved.value,
        )
        .first()
    )
    if row is None:
        raise NotFound("You have no link in this campaign.")
    return LinkTarget.from_row(row)


def fold_clicks(stats: Iterable[Mapping[str, Any]], by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Click statistics (rows of the `by` columns, a `reason` and its `clicks`) folded into one row per
    value of the `by` columns, in the order they first appear: those columns, then `valid` and `invalid`
    clicks and `reasons`, the invalid ones by reason in words. With no `by`, one row of totals (none
    without statistics: `click_totals`)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for stat in stats:
        key = tuple(stat[column] for column in by)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {**dict(zip(by, key, strict=True)), "valid": 0, "invalid": 0, "reasons": {}}
        if stat["reason"] == Reason.valid.value:
            row["valid"] += stat["clicks"]
        else:
            row["invalid"] += stat["clicks"]
            label = reason_label(stat["reason"])
            row["reasons"][label] = row["reasons"].get(label, 0) + stat["clicks"]
    return list(rows.values())


def click_totals(stats: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """All the statistics in one row: valid and invalid clicks, the invalid ones by reason in words."""
    return next(iter(fold_clicks(stats)), {"valid": 0, "invalid": 0, "reasons": {}})
