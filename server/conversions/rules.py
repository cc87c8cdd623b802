"""The conversion fraud rules, evaluated at intake on every new conversion (postback, API, pixel;
one report alone or in the group commit's batch: the rules run before either path stores the row,
so both store the same `held` and the same flags).

A rule that fires holds the conversion (conversion.held, written in the same row as the report, so
no approval can come between) and writes a conversion_flag with its evidence: the figures and the
thresholds it compared. Held conversions are never approved, by the job or by hand, until a
reviewer releases them (server/conversions/flags.py).

The hot path stays cheap: what the rules compare against (a campaign's median click-to-conversion
time, a publisher's conversions today and their trailing 14-day daily mean, the knobs in force)
is read by one indexed query per campaign or publisher and kept in the server's memory for a
short while (`RuleState`); a conversion recorded by this process counts at once. With several
server processes a publisher's count today can lag by what the other processes recorded in the
last BASELINE_TTL seconds."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from server.campaigns.tables import PayoutModel
from server.conversions.tables import Conversion, ConversionRuleSetting, FlagRule
from server.core.hours import utc
from server.core.i18n import _l

SETTINGS_TTL = 30 * 10**9  # nanoseconds a campaign's knobs are kept (a change in this process forgets them at once)
BASELINE_TTL = 60 * 10**9  # nanoseconds a publisher's volume or a campaign's median is kept
MEDIAN_WINDOW_DAYS = 30
MEDIAN_SAMPLE = 200  # the campaign's latest conversions the median is taken over
BASELINE_DAYS = 14
CENT = Decimal("0.01")  # figures shown to people (means, limits, rates) are text to the hundredth
# A click id carries its time in whole seconds: below this a campaign's median says nothing a
# fraction of it could separate from the rounding.
MIN_MEDIAN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Knob:
    rule: FlagRule
    default: int
    minimum: int
    maximum: int
    label: Any  # _l("..."): read in the reader's language


# Every tunable, by name: a campaign's value (its advertiser's) wins over the network's (an
# admin's), which wins over the default here. `.enabled` 1 or 0.
KNOBS: dict[str, Knob] = {
    "too_fast.enabled": Knob(FlagRule.too_fast, 1, 0, 1, _l("Hold conversions that come too fast after their click")),
    "too_fast.percent_of_median": Knob(
        FlagRule.too_fast,
        10,
        1,
        100,
        _l("Too fast: below this percentage of the campaign's median click-to-conversion time"),
    ),
    "too_fast.min_samples": Knob(
        FlagRule.too_fast, 20, 5, 10_000, _l("Too fast: conversions needed before the median is trusted")
    ),
    "too_fast.floor_seconds": Knob(
        FlagRule.too_fast,
        0,
        0,
        86_400,
        _l("Too fast: hold any sale (CPA, RevShare) faster than this many seconds (0: off)"),
    ),
    "rate_anomaly.enabled": Knob(
        FlagRule.rate_anomaly, 1, 0, 1, _l("Hold conversions of a publisher far above their own daily baseline")
    ),
    "rate_anomaly.multiple": Knob(
        FlagRule.rate_anomaly, 5, 2, 1_000, _l("Rate anomaly: today above this many times the 14-day daily mean")
    ),
    "rate_anomaly.min_daily": Knob(
        FlagRule.rate_anomaly, 50, 1, 1_000_000, _l("Rate anomaly: and above this many conversions today")
    ),
    "conversion_rate.enabled": Knob(
        FlagRule.rate_anomaly,
        1,
        0,
        1,
        _l("Hold conversions of a publisher whose conversion rate today is far above their own 14-day rate"),
    ),
    "conversion_rate.multiple": Knob(
        FlagRule.rate_anomaly, 5, 2, 1_000, _l("Conversion rate: today above this many times the 14-day rate")
    ),
    "conversion_rate.min_conversions": Knob(
        FlagRule.rate_anomaly, 20, 1, 1_000_000, _l("Conversion rate: and at least this many conversions today")
    ),
    "conversion_rate.min_baseline_clicks": Knob(
        FlagRule.rate_anomaly,
        500,
        1,
        1_000_000_000,
        _l("Conversion rate: and at least this many valid clicks over the 14 days (else no baseline)"),
    ),
    "self_conversion.enabled": Knob(
        FlagRule.self_conversion, 1, 0, 1, _l("Hold conversions whose click came from the publisher's own session")
    ),
}


def defaults() -> dict[str, int]:
    return {name: knob.default for name, knob in KNOBS.items()}


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that fired on one conversion, and why (the figures, JSON-ready)."""

    rule: FlagRule
    evidence: dict[str, Any]


@dataclass(slots=True)
class _Median:
    elapsed: deque[int]  # the campaign's latest click-to-conversion times (whole seconds), newest last
    loaded: int  # monotonic nanoseconds

    @property
    def seconds(self) -> int | None:
        return statistics.median_low(self.elapsed) if self.elapsed else None

    @property
    def samples(self) -> int:
        return len(self.elapsed)


@dataclass(slots=True)
class _Volume:
    day: datetime
    today: int  # conversions of the publisher today, as read, plus those this process recorded since
    before: int  # conversions (not rejected) over the BASELINE_DAYS before today
    loaded: int  # monotonic nanoseconds
    clicks: tuple[int, int] | None = None  # valid clicks (today, the BASELINE_DAYS before), once asked


@dataclass
class RuleState:
    """The server's memory of knobs and baselines (one per process, in the app's state). A fresh
    one reads everything from the database: that is what an intake without the server gets."""

    clock: Any = time.monotonic_ns
    _settings: dict[int, tuple[dict[str, int], int]] = field(default_factory=dict)
    _medians: dict[int, _Median] = field(default_factory=dict)
    _volumes: dict[int, _Volume] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget everything (the tests' emptied database restarts its ids)."""
        self._settings.clear()
        self._medians.clear()
        self._volumes.clear()

    def forget(self, campaign_id: int | None = None) -> None:
        """Knobs changed: for one campaign, or (None) network-wide for all."""
        if campaign_id is None:
            self._settings.clear()
        else:
            self._settings.pop(campaign_id, None)

    async def settings(self, campaign_id: int) -> dict[str, int]:
        now = self.clock()
        cached = self._settings.get(campaign_id)
        if cached is not None and now - cached[1] < SETTINGS_TTL:
            return cached[0]
        found = await knobs_of(campaign_id)
        self._settings[campaign_id] = (found, now)
        return found

    async def median(self, campaign_id: int, at: datetime) -> _Median:
        now = self.clock()
        cached = self._medians.get(campaign_id)
        if cached is None or now - cached.loaded >= BASELINE_TTL:
            elapsed = await campaign_elapsed(campaign_id, at)
            cached = self._medians[campaign_id] = _Median(deque(elapsed, maxlen=MEDIAN_SAMPLE), now)
        return cached

    async def volume(self, publisher_id: int, at: datetime) -> _Volume:
        now = self.clock()
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        cached = self._volumes.get(publisher_id)
        if cached is None or cached.day != day or now - cached.loaded >= BASELINE_TTL:
            today, before = await publisher_volume(publisher_id, day)
            cached = self._volumes[publisher_id] = _Volume(day, today, before, now)
        return cached

    def counted(self, row: Mapping[str, Any]) -> None:
        """A new conversion (`row`: its columns) was stored by this process: it counts at once."""
        at = row["converted_at"]
        median = self._medians.get(row["campaign"])
        if median is not None:
            median.elapsed.append(seconds_between(row["clicked_at"], at))
        publisher_id = row["publisher"]
        cached = self._volumes.get(publisher_id)
        if cached is not None and cached.day == at.replace(hour=0, minute=0, second=0, microsecond=0):
            cached.today += 1


async def knobs_of(campaign_id: int | None) -> dict[str, int]:
    """The knobs in force for a campaign (None: network-wide): defaults, then the network's, then its own."""
    rows = await ConversionRuleSetting.raw(
        "SELECT campaign, name, value FROM conversion_rule_setting WHERE campaign IS NULL OR campaign = {}",
        -1 if campaign_id is None else campaign_id,
    )
    found = defaults()
    for row in sorted(rows, key=lambda r: r["campaign"] is not None):  # the network's first, the campaign's over it
        if row["name"] in KNOBS:
            found[row["name"]] = int(row["value"])
    return found


async def publisher_clicks(publisher_id: int, day: datetime) -> tuple[int, int]:
    """(valid clicks today, over the BASELINE_DAYS before): from the reports' hourly rollup
    (traffic_campaign_hour, a few rows a day, written every few minutes by the worker), not the click
    table: a large publisher's millions of clicks are not counted once a minute. Today's count lags
    the rollup by minutes, which the rule's minimum volumes absorb. Named by SQL only: the reports
    build on conversions, not the other way."""
    rows = await Conversion.raw(
        "SELECT COALESCE(SUM(CASE WHEN hour >= {} THEN clicks ELSE 0 END), 0) AS today, "
        "COALESCE(SUM(CASE WHEN hour < {} THEN clicks ELSE 0 END), 0) AS before "
        "FROM traffic_campaign_hour WHERE publisher = {} AND reason = 'valid' AND hour >= {}",
        day,
        day,
        publisher_id,
        day - timedelta(days=BASELINE_DAYS),
    )
    return int(rows[0]["today"]), int(rows[0]["before"])


def percent(part: int, whole: int) -> str:
    """part / whole as a percentage to the hundredth, for people ("–" without a whole)."""
    if not whole:
        return "–"
    return str((Decimal(part) * 100 / whole).quantize(CENT))


async def campaign_elapsed(campaign_id: int, at: datetime) -> list[int]:
    """The click-to-conversion times (seconds, oldest first) of the campaign's latest MEDIAN_SAMPLE
    conversions of the last MEDIAN_WINDOW_DAYS that nobody rejected: one query on (campaign, converted_at)."""
    rows = await Conversion.raw(
        "SELECT clicked_at, converted_at FROM conversion WHERE campaign = {} AND converted_at >= {} "
        "AND status <> 'rejected' ORDER BY converted_at DESC LIMIT {}",
        campaign_id,
        at - timedelta(days=MEDIAN_WINDOW_DAYS),
        MEDIAN_SAMPLE,
    )
    return [seconds_between(utc(r["clicked_at"]), utc(r["converted_at"])) for r in reversed(rows)]


async def publisher_volume(publisher_id: int, day: datetime) -> tuple[int, int]:
    """(conversions today, those not rejected over the BASELINE_DAYS before): one query on
    (publisher, converted_at)."""
    start = day - timedelta(days=BASELINE_DAYS)
    rows = await Conversion.raw(
        "SELECT COALESCE(SUM(CASE WHEN converted_at >= {} THEN 1 ELSE 0 END), 0) AS today, "
        "COALESCE(SUM(CASE WHEN converted_at < {} AND status <> 'rejected' THEN 1 ELSE 0 END), 0) AS before "
        "FROM conversion WHERE publisher = {} AND converted_at >= {}",
        day,
        day,
        publisher_id,
        start,
    )
    return int(rows[0]["today"]), int(rows[0]["before"])


def daily_mean(before: int) -> Decimal:
    """The daily mean of `before` conversions over BASELINE_DAYS, to the hundredth (for people)."""
    return (Decimal(before) / BASELINE_DAYS).quantize(CENT)


def seconds_between(clicked_at: datetime, converted_at: datetime) -> int:
    """Whole seconds from click to conversion (a click id records its time to the second)."""
    return (converted_at - clicked_at) // timedelta(seconds=1)


async def evaluate(
    state: RuleState, row: Mapping[str, Any], campaign: Mapping[str, Any], goal_model: str
) -> list[Finding]:
    """The rules that fire on the conversion about to be stored (`row`: its columns)."""
    knobs = await state.settings(row["campaign"])
    findings: list[Finding] = []
    at = row["converted_at"]
    elapsed = seconds_between(row["clicked_at"], at)
    if knobs["too_fast.enabled"]:
        floor = knobs["too_fast.floor_seconds"]
        is_sale = goal_model in (PayoutModel.cpa.value, PayoutModel.revshare.value)
        median = await state.median(row["campaign"], at)
        median_seconds = median.seconds
        limit = None
        if (
            median_seconds is not None
            and median_seconds >= MIN_MEDIAN_SECONDS
            and median.samples >= knobs["too_fast.min_samples"]
        ):
            limit = -(
                -median_seconds * knobs["too_fast.percent_of_median"] // 100
            )  # ceil: elapsed < limit ⇔ below the %
        if (limit is not None and elapsed < limit) or (is_sale and floor and elapsed < floor):
            findings.append(
                Finding(
                    FlagRule.too_fast,
                    {
                        "elapsed_seconds": elapsed,
                        "campaign_median_seconds": median_seconds,
                        "samples": median.samples,
                        "min_samples": knobs["too_fast.min_samples"],
                        "percent_of_median": knobs["too_fast.percent_of_median"],
                        "limit_seconds": limit,
                        "floor_seconds": floor if is_sale else 0,
                        "campaign_minimum_seconds": campaign.get("min_conversion_seconds", 0),
                    },
                )
            )
    if knobs["rate_anomaly.enabled"]:
        volume = await state.volume(row["publisher"], at)
        today = volume.today + 1  # with this one
        multiple, min_daily = knobs["rate_anomaly.multiple"], knobs["rate_anomaly.min_daily"]
        # today > max(min_daily, multiple × before / BASELINE_DAYS), in integers
        if today > min_daily and today * BASELINE_DAYS > multiple * volume.before:
            findings.append(
                Finding(
                    FlagRule.rate_anomaly,
                    {
                        "conversions_today": today,
                        # Figures for people, as text to the hundredth (as `percent` gives rates).
                        "daily_mean_14d": str(daily_mean(volume.before)),
                        "multiple": multiple,
                        "min_daily": min_daily,
                        "limit": str(max(Decimal(min_daily), multiple * daily_mean(volume.before)).quantize(CENT)),
                    },
                )
            )
    if knobs["conversion_rate.enabled"] and not any(f.rule == FlagRule.rate_anomaly for f in findings):
        finding = await _conversion_rate(state, row["publisher"], at, knobs)
        if finding is not None:
            findings.append(finding)
    return findings


async def _conversion_rate(
    state: RuleState, publisher_id: int, at: datetime, knobs: Mapping[str, int]
) -> Finding | None:
    """rate_anomaly's conversion-rate variant: the publisher's conversions per valid click today far
    above their own over the BASELINE_DAYS before, once both days have the minimum volumes."""
    volume = await state.volume(publisher_id, at)
    today = volume.today + 1  # with this one
    if today < knobs["conversion_rate.min_conversions"]:
        return None  # before the clicks are asked for: most conversions stop here
    if volume.clicks is None:
        volume.clicks = await publisher_clicks(publisher_id, volume.day)
    clicks_today, clicks_before = volume.clicks
    if clicks_before < knobs["conversion_rate.min_baseline_clicks"]:
        return None
    multiple = knobs["conversion_rate.multiple"]
    # today / clicks_today > multiple × before / clicks_before, in integers (no click today: any rate is above)
    if today * clicks_before <= multiple * volume.before * max(clicks_today, 1):
        return None
    return Finding(
        FlagRule.rate_anomaly,
        {
            "variant": "conversion_rate",
            "conversions_today": today,
            "valid_clicks_today": clicks_today,
            "rate_today_percent": percent(today, clicks_today),
            "conversions_14d": volume.before,
            "valid_clicks_14d": clicks_before,
            "rate_14d_percent": percent(volume.before, clicks_before),
            "multiple": multiple,
            "min_conversions": knobs["conversion_rate.min_conversions"],
            "min_baseline_clicks": knobs["conversion_rate.min_baseline_clicks"],
        },
    )
