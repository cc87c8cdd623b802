"""Conversion intake: the one rule that turns a postback, an API call or a pixel hit into a
pending conversion (attribution, validation, pricing, caps, dedup by txn id).

Every refusal is a DomainError with a stable machine code and changes nothing. A conversion is
unique per (campaign, txn_id): a retried or duplicated report returns the first conversion.

Forged reports are bounded here, whoever sends them (the pixel is public by design): a click
brings at most its goal's `conversions_per_click` conversions (`click_limit_reached`, counted by
a unique index, so racing reports cannot both take the last one), a RevShare sale above the
goal's `max_sale_minor` is refused (`amount_above_max`, never stored, never charged), and a
campaign whose advertiser switched the pixel off records nothing from it (`pixel_disabled`)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server.campaigns.tables import Campaign, CampaignStatus, Goal, Link, PayoutModel
from server.conversions import announce, flags, rules
from server.conversions.group_commit import NAMES, BatchFailed, ConversionWriter
from server.conversions.tables import Conversion, ConversionSource, ConversionStatus
from server.core import clock, db, money
from server.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthorized
from server.core.i18n import _, _l, ngettext
from server.tracking.tokens import read_click_id
from server.webhooks import events

MAX_TXN_ID = 100
MAX_SALE_MINOR = 10**12
# Conversions that count towards caps: all but those the advertiser refused or undid.
COUNTED = (ConversionStatus.pending.value, ConversionStatus.approved.value)
CONVERSION_MODELS = (PayoutModel.cpl, PayoutModel.cpa, PayoutModel.revshare)
CAPS = (
    "cap_conversions_daily",
    "cap_conversions_monthly",
    "cap_publisher_conversions_daily",
    "cap_publisher_conversions_monthly",
)


@dataclass(frozen=True, slots=True)
class Report:
    """What the advertiser reported, as received (validated here, not by the edges)."""

    click_id: str = ""
    txn_id: str = ""
    goal: str = ""
    amount: Any = None  # minor units: an int, or a string of digits
    currency: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Report:
        def text(name: str) -> str:
            value = params.get(name)
            return value.strip() if isinstance(value, str) else ""

        amount = params.get("amount")
        return cls(
            click_id=text("click_id"),
            txn_id=text("txn_id"),
            goal=text("goal").lower(),
            amount=amount.strip() if isinstance(amount, str) else amount,
            currency=text("currency"),
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who is reporting: the campaign's postback token, an advertiser's API key (its user id), or
    the public key of a campaign's pixel (which proves nothing: pixels fire from browsers)."""

    token: str | None = None
    advertiser_id: int | None = None
    public_key: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    conversion: dict[str, Any]  # the stored row (the first one, for a duplicate)
    duplicate: bool
    goal: str


def _txn_id(raw: str) -> str:
    if not raw:
        raise Invalid(
            _("txn_id is required: send your order or lead id, so a repeated report counts once."),
            field="txn_id",
            code="txn_id_required",
        )
    if len(raw) > MAX_TXN_ID or not raw.isprintable():
        raise Invalid(
            _("txn_id must be at most %(max)s printable characters.", max=MAX_TXN_ID), field="txn_id", code="bad_txn_id"
        )
    return raw


def _sale_amount(raw: Any) -> int:
    """A sale amount in minor units: a non-negative whole number up to 10**12 (no floats, no decimals)."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 13:
        value = int(raw)
    if value is None or not 0 <= value <= MAX_SALE_MINOR:
        raise Invalid(
            _(
                "amount must be the sale amount in minor units, a whole number from 0 to 10^12 "
                "(for example 1250 for 12.50)."
            ),
            field="amount",
            code="bad_amount",
        )
    return value


def _goal(goals: list[dict[str, Any]], name: str) -> dict[str, Any]:
    if not name:
        for goal in goals:
            if goal["payout_model"] in CONVERSION_MODELS:
                return goal
        raise Invalid(
            _("This campaign has no conversion goal (CPL, CPA or RevShare): it pays per click or view only."),
            field="goal",
            code="unknown_goal",
        )
    for goal in goals:
        if goal["name"] == name:
            if goal["payout_model"] not in CONVERSION_MODELS:
                per_click = goal["payout_model"] == "cpc"
                raise Invalid(
                    _(
                        "Goal '%(goal)s' pays per click; it is counted by affnet and cannot be reported as a "
                        "conversion.",
                        goal=name,
                    )
                    if per_click
                    else _(
                        "Goal '%(goal)s' pays per view; it is counted by affnet and cannot be reported as a "
                        "conversion.",
                        goal=name,
                    ),
                    field="goal",
                    code="unknown_goal",
                )
            return goal
    names = ", ".join(g["name"] for g in goals if g["payout_model"] in CONVERSION_MODELS) or _("none")
    raise Invalid(
        _("This campaign has no goal '%(goal)s' (its conversion goals: %(names)s).", goal=name[:40], names=names),
        field="goal",
        code="unknown_goal",
    )


def price(goal: Mapping[str, Any], sale_minor: int | None) -> tuple[int, int, int]:
    """(advertiser price, publisher payout, network margin) of one conversion of `goal`."""
    if goal["payout_model"] == PayoutModel.revshare.value:
        assert sale_minor is not None
        return money.revshare_split(sale_minor, goal["advertiser_amount"], goal["publisher_amount"])
    return money.flat_split(goal["advertiser_amount"], goal["publisher_amount"])


_UNKNOWN_CLICK = _l("This click id was not issued by affnet for this campaign (it is unknown, edited or forged).")

# The campaign's conversion caps, as the refusal says them (%(cap)s: the cap).
_CAPS = (
    _l("The campaign's cap of %(cap)s conversions a day is reached (days and months in UTC)."),
    _l("The campaign's cap of %(cap)s conversions a month is reached (days and months in UTC)."),
    _l("The campaign's cap of %(cap)s conversions a day per publisher is reached (days and months in UTC)."),
    _l("The campaign's cap of %(cap)s conversions a month per publisher is reached (days and months in UTC)."),
)

_CAMPAIGN_COLUMNS = (
    "status",
    "currency",
    "advertiser",
    "postback_secret",
    "attribution_window_days",
    "hold_days",
    "min_conversion_seconds",
    *CAPS,
)


# Written out once: building this join through Piccolo's column objects cost more CPU than the
# rest of a postback (bench/postback_ingest.py). Only constant column names; the id is bound.
_CLICK_CAMPAIGN_SQL = (
    "SELECT link.id AS id, link.publisher AS publisher_id, campaign.id AS campaign_id, "  # noqa: S608
    + ", ".join(f"campaign.{c} AS {c}" for c in _CAMPAIGN_COLUMNS)
    + " FROM link JOIN campaign ON campaign.id = link.campaign WHERE link.id = {}"
)


async def _campaign_by_key(public_key: str) -> dict[str, Any]:
    row = None
    if public_key and len(public_key) <= 24:
        row = (
            await Campaign.select(
                Campaign.id, Campaign.pixel_enabled, *(getattr(Campaign, c) for c in _CAMPAIGN_COLUMNS)
            )
            .where(Campaign.public_key == public_key)
            .first()
        )
    if row is None:
        raise NotFound(
            _("There is no campaign with this pixel key: copy the pixel tag from your campaign page."),
            code="unknown_campaign",
        )
    if not row["pixel_enabled"]:
        # Read from the database on every hit (not the terms cache), so switching it off takes at once.
        raise Forbidden(
            _(
                "The advertiser has switched this campaign's pixel off: conversions are reported by postback or "
                "API only."
            ),
            code="pixel_disabled",
        )
    return row


@dataclass(frozen=True, slots=True)
class Terms:
    """A link's publisher and its campaign's intake terms and goals: what a postback needs, held
    in the server's cache by link id (dropped whenever the campaign changes, like the redirect's)."""

    link_id: int
    campaign_id: int
    campaign: dict[str, Any]  # the columns of _CLICK_CAMPAIGN_SQL
    goals: list[dict[str, Any]]


async def load_terms(link_key: str) -> Terms | None:
    rows = await Link.raw(_CLICK_CAMPAIGN_SQL, int(link_key))
    if not rows:
        return None
    goals = await Goal.select().where(Goal.campaign == rows[0]["campaign_id"]).order_by(Goal.position)
    return Terms(link_id=int(link_key), campaign_id=rows[0]["campaign_id"], campaign=rows[0], goals=goals)


TermsSource = Callable[[str], Awaitable[Terms | None]]


async def _click_and_terms(token_key: bytes, click_id: str, terms_of: TermsSource) -> tuple[Any, Terms]:
    """The click the id stands for, and its link's publisher and campaign. The click row itself
    may not be written yet: the signed id is proof enough."""
    ref = read_click_id(token_key, click_id) if click_id else None
    if ref is None:
        raise NotFound(
            _("click_id is missing.") if not click_id else str(_UNKNOWN_CLICK), field="click_id", code="unknown_click"
        )
    terms = await terms_of(str(ref.link_id))
    if terms is None:
        raise NotFound(str(_UNKNOWN_CLICK), field="click_id", code="unknown_click")
    return ref, terms


def _authorise(credentials: Credentials, campaign: Mapping[str, Any]) -> None:
    if credentials.public_key is not None:
        return  # the pixel's campaign was found by its key, and the click checked against it
    if credentials.advertiser_id is not None:
        if credentials.advertiser_id != campaign["advertiser"]:
            raise Unauthorized(
                _("This API key does not belong to the advertiser of the click's campaign."), code="bad_token"
            )
        return
    secret = campaign["postback_secret"]
    if not secret or not hmac.compare_digest((credentials.token or "").encode(), secret.encode()):
        raise Unauthorized(
            _("token is not the postback token of the click's campaign: copy it from the campaign page."),
            field="token",
            code="bad_token",
        )


async def _existing(campaign_id: int, txn_id: str) -> dict[str, Any] | None:
    return await Conversion.select().where(Conversion.campaign == campaign_id, Conversion.txn_id == txn_id).first()


async def _check_caps(campaign: Mapping[str, Any], publisher_id: int, now: datetime) -> None:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    base = (Conversion.campaign == campaign["campaign_id"]) & Conversion.status.is_in(list(COUNTED))
    mine = Conversion.publisher == publisher_id
    checks = (
        ("cap_conversions_daily", base & (Conversion.converted_at >= day), _CAPS[0]),
        ("cap_conversions_monthly", base & (Conversion.converted_at >= month), _CAPS[1]),
        ("cap_publisher_conversions_daily", base & mine & (Conversion.converted_at >= day), _CAPS[2]),
        ("cap_publisher_conversions_monthly", base & mine & (Conversion.converted_at >= month), _CAPS[3]),
    )
    for column, where, message in checks:
        cap = campaign[column]
        if cap is not None and await Conversion.count().where(where) >= cap:
            raise Conflict(str(message) % {"cap": cap}, code="cap_reached")


async def record_conversion(
    token_key: bytes,
    report: Report,
    credentials: Credentials,
    source: ConversionSource,
    *,
    now: datetime | None = None,
    terms_of: TermsSource = load_terms,
    writer: ConversionWriter | None = None,
    rule_state: rules.RuleState | None = None,
) -> Recorded:
    """Validate, attribute, price and store one reported conversion as `pending`.

    Raises a DomainError (nothing stored) when it is refused; returns the first conversion with
    duplicate=True when (campaign, txn_id) was reported before, however close together.
    `terms_of` is the server's cache of campaign terms (the database itself by default); `writer`
    the server's group commit of conversions (server/conversions/group_commit.py), which stores
    the reports of campaigns without caps a batch at a time (without: each alone). Either way the
    conversion is committed before this returns. `rule_state`: the server's memory of the fraud
    rules' knobs and baselines (server/conversions/rules.py); a conversion a rule flags is stored
    held, with its flags."""
    now = now or clock.now()
    pixel_campaign = None
    if credentials.public_key is not None:
        pixel_campaign = await _campaign_by_key(credentials.public_key)
    elif not credentials.token and credentials.advertiser_id is None:
        raise Unauthorized(
            _(
                "Authenticate with token=<the campaign's postback token> or 'Authorization: Bearer <advertiser "
                "API key>'."
            ),
            field="token",
            code="bad_token",
        )
    txn_id = _txn_id(report.txn_id)
    ref, terms = await _click_and_terms(token_key, report.click_id, terms_of)
    campaign, goals, campaign_id = terms.campaign, terms.goals, terms.campaign_id
    if pixel_campaign is not None and pixel_campaign["id"] != campaign_id:
        raise NotFound(str(_UNKNOWN_CLICK), field="click_id", code="unknown_click")
    _authorise(credentials, campaign)
    try:
        row = _conversion_row(campaign, goals, ref, txn_id, report, source, now)
    except DomainError:
        # A report seen before answers with the first result, whatever has changed since.
        first = await _existing(campaign_id, txn_id)
        if first is not None:
            return _recorded(first, goals, duplicate=True)
        raise
    goal = next(g for g in goals if g["id"] == row["goal"])
    limit = goal["conversions_per_click"]
    rule_state = rule_state or rules.RuleState()
    findings = await rules.evaluate(rule_state, row, campaign, goal["payout_model"])
    row["held"] = bool(findings)
    # Whether its advertiser or publisher hears of it (a webhook endpoint, a postback template): then
    # its conversion.recorded events are written with it, in its transaction. A set lookup, no query.
    told = campaign["advertiser"] if await _watched(campaign) else None
    if any(campaign[c] is not None for c in CAPS):
        async with db.transaction():
            # Caps are a read-then-write: serialise them per campaign. SQLite's write
            # transactions are serial already (BEGIN IMMEDIATE); PostgreSQL locks the row.
            if not db.is_sqlite():
                await Campaign.select(Campaign.id).where(Campaign.id == campaign_id).lock_rows("UPDATE")
            first = await _existing(campaign_id, txn_id)
            if first is not None:
                return _recorded(first, goals, duplicate=True)
            await _check_caps(campaign, campaign["publisher_id"], now)
            stored, duplicate = await _store(row, limit)
            if told is not None and not duplicate:
                await announce.changed(events.CONVERSION_RECORDED, [{**stored, "advertiser_id": told}], now=now)
    elif writer is not None and db.engine().current_transaction.get() is None:
        stored, duplicate = await _store_grouped(writer, row, limit, told)
    elif told is not None:
        stored, duplicate = await _store_told(row, limit, told)
    else:
        stored, duplicate = await _store(row, limit)  # one statement when the click's first: no transaction
    if not duplicate:
        rule_state.counted(row)
        if findings:
            await flags.record(stored, findings, now)
    return _recorded(stored, goals, duplicate=duplicate)


async def _watched(campaign: Mapping[str, Any]) -> bool:
    publisher = campaign["publisher_id"]
    return await events.watching((campaign["advertiser"], publisher), postback_publishers=(publisher,))


async def _store_grouped(
    writer: ConversionWriter, row: dict[str, Any], limit: int, told: int | None = None
) -> tuple[dict[str, Any], bool]:
    """_store, with the first attempt (the click's first place) made in the writer's batch: what
    the batch did not settle (the place taken by another txn id, or the batch's statement failed)
    goes on alone, so every report gets the answer _store gives. `told`: the advertiser's id when
    someone hears of the conversion (its events are committed with it, in the batch or alone)."""
    try:
        outcome = await writer.insert(row, advertiser_id=told)
    except BatchFailed:
        outcome = None
    if outcome is not None:
        return outcome
    if told is not None:
        return await _store_told(row, limit, told)
    return await _store(row, limit)


async def _store_told(row: dict[str, Any], limit: int, advertiser_id: int) -> tuple[dict[str, Any], bool]:
    """_store and, when it stored the row, its conversion.recorded events, in one transaction."""
    async with db.transaction():
        stored, duplicate = await _store(row, limit)
        if not duplicate:
            await announce.changed(
                events.CONVERSION_RECORDED, [{**stored, "advertiser_id": advertiser_id}], now=row["created_at"]
            )
    return stored, duplicate


async def _store(row: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    """Insert `row` as the next of its click's conversions of its goal: (the stored row, False),
    or (the first report's row, True) when its txn_id was reported before. Two unique indexes
    decide, so concurrent reports are counted at the database on both engines: (campaign, txn_id)
    makes a repeat a duplicate, (click_id, goal, click_ordinal) lets only one report take each of
    the click's `limit` places. Raises click_limit_reached when every place is taken."""
    ordinal = 1
    while ordinal <= limit:
        inserted = await _insert({**row, "click_ordinal": ordinal})
        if inserted is not None:
            return inserted, False
        # Either this report was stored before (or by a copy a moment ago), or the place is taken.
        first = await _existing(row["campaign"], row["txn_id"])
        if first is not None:
            return first, True
        ordinal = await _next_ordinal(row["click_id"], row["goal"])
    raise Conflict(
        ngettext(
            "This click has already brought %(num)s conversion of this goal, as many as the advertiser allows per "
            "click: this one is not counted.",
            "This click has already brought %(num)s conversions of this goal, as many as the advertiser allows per "
            "click: this one is not counted.",
            limit,
        ),
        field="click_id",
        code="click_limit_reached",
    )


async def _next_ordinal(click_id: str, goal_id: int) -> int:
    rows = await Conversion.raw(
        "SELECT COALESCE(MAX(click_ordinal), 0) AS taken FROM conversion WHERE click_id = {} AND goal = {}",
        click_id,
        goal_id,
    )
    return int(rows[0]["taken"]) + 1


_INSERT_COLUMNS = NAMES  # every column the intake writes, in order
# Written out, like the lookup above: Piccolo's insert builder cost more than the insert itself.
_INSERT_SQL = (
    f"INSERT INTO conversion ({', '.join(_INSERT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('{}' for _column in _INSERT_COLUMNS)}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)  # either unique index: see _store
_INSERT_SQL_PG = _INSERT_SQL.format(*(f"${i}" for i in range(1, len(_INSERT_COLUMNS) + 1)))


async def _insert(row: dict[str, Any]) -> dict[str, Any] | None:
    """The stored conversion, or None when (campaign, txn_id) or its click's place exists: the unique indexes decide,
    without an error to catch and roll back. Outside a transaction on PostgreSQL it goes straight
    to the pool: one round trip, the hot path of every postback."""
    values = [row[c] for c in _INSERT_COLUMNS]
    eng = db.engine()
    if not db.is_sqlite(eng) and eng.current_transaction.get() is None:
        async with eng.pool.acquire() as conn:
            new_id = await conn.fetchval(_INSERT_SQL_PG, *values)
    else:
        rows = await Conversion.raw(_INSERT_SQL, *values)
        new_id = rows[0]["id"] if rows else None
    if new_id is None:
        return None
    return {**row, "id": new_id, "approved_at": None, "released_at": None}


def _conversion_row(
    campaign: Mapping[str, Any],
    goals: list[dict[str, Any]],
    ref: Any,
    txn_id: str,
    report: Report,
    source: ConversionSource,
    now: datetime,
) -> dict[str, Any]:
    """The conversion to store (its columns), once the campaign's terms allow it; raises why they do not."""
    if campaign["status"] == CampaignStatus.ended.value:
        raise Conflict(_("This campaign has ended: it takes no more conversions."), code="campaign_ended")
    clicked_at = datetime.fromtimestamp(ref.clicked_at, UTC)
    elapsed = (now - clicked_at).total_seconds()
    if elapsed > campaign["attribution_window_days"] * 86400:
        raise Invalid(
            _(
                "The click was more than %(days)s days ago, outside the campaign's attribution window.",
                days=campaign["attribution_window_days"],
            ),
            field="click_id",
            code="outside_attribution_window",
        )
    if elapsed < campaign["min_conversion_seconds"]:
        raise Invalid(
            _(
                "The conversion came %(seconds)s s after the click; the campaign requires at least %(least)s s.",
                seconds=max(int(elapsed), 0),
                least=campaign["min_conversion_seconds"],
            ),
            field="click_id",
            code="too_fast",
        )
    goal = _goal(goals, report.goal)
    if report.currency and report.currency.upper() != campaign["currency"]:
        raise Invalid(
            _("currency must be the campaign's currency, %(currency)s.", currency=campaign["currency"]),
            field="currency",
            code="bad_currency",
        )
    # The sale amount is kept for every goal that sends one (the advertiser's sales and ROI); only
    # RevShare needs it for the price. None: no sale amount was reported, which is not a sale of 0.
    sale = None if report.amount is None or report.amount == "" else _sale_amount(report.amount)
    if goal["payout_model"] == PayoutModel.revshare.value and sale is None:
        raise Invalid(
            _(
                "Goal '%(goal)s' pays a share of the sale: send amount, the sale amount in minor units.",
                goal=goal["name"],
            ),
            field="amount",
            code="amount_required",
        )
    if sale is not None:
        if goal["max_sale_minor"] is not None and sale > goal["max_sale_minor"]:
            # Refused rather than held: nothing is stored, so nothing can be charged or approved
            # by mistake; a real sale this large is reported again after the advertiser raises the max.
            raise Invalid(
                _(
                    "The sale amount %(sale)s is more than the largest sale the advertiser accepts for goal "
                    "'%(goal)s' (%(largest)s): it is not counted.",
                    sale=money.display(sale, campaign["currency"]),
                    goal=goal["name"],
                    largest=money.display(goal["max_sale_minor"], campaign["currency"]),
                ),
                field="amount",
                code="amount_above_max",
            )
    advertiser_minor, publisher_minor, network_minor = price(goal, sale)
    return dict(
        campaign=campaign["campaign_id"],
        goal=goal["id"],
        publisher=campaign["publisher_id"],
        link=campaign["id"],
        click_id=ref.click_id,
        click_ordinal=1,
        txn_id=txn_id,
        sale_amount_minor=sale,
        currency=campaign["currency"],
        advertiser_amount_minor=advertiser_minor,
        publisher_amount_minor=publisher_minor,
        network_amount_minor=network_minor,
        status=ConversionStatus.pending.value,
        status_reason="",
        source=source.value,
        clicked_at=clicked_at,
        converted_at=now,
        hold_until=now + timedelta(days=campaign["hold_days"]),
        created_at=now,
        held=False,
    )


def _recorded(row: dict[str, Any], goals: list[dict[str, Any]], *, duplicate: bool) -> Recorded:
    name = next((g["name"] for g in goals if g["id"] == row["goal"]), "")
    return Recorded(conversion=row, duplicate=duplicate, goal=name)
