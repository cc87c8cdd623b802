"""The hourly rollups against the raw events they count: equal over random ranges and groupings,
whether built at once or run by run; late and reversed conversions after the nightly rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from server.conversions.tables import Conversion
from server.reports import rollup
from server.reports.tables import RollupCursor
from tests.reports.world import BASE, Event, World, build, count

HOURS = 72
SUBS = ["", "spring", "=cmd", "long-" + "x" * 90]
COUNTRIES = ["", "DE", "US"]
REASONS = ["valid", "valid", "valid", "bot", "duplicate", "rate_limited"]
STATUSES = ["pending", "approved", "released", "rejected", "reversed"]


def _drawn(strategy, examples: int) -> list:
    """Values drawn by Hypothesis (its edge cases included), collected to be stored through the
    real writers below: Hypothesis cannot drive an async database test itself."""
    drawn: list = []

    @given(strategy)
    @hsettings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    def collect(value) -> None:
        drawn.append(value)

    collect()
    return drawn


_event = st.tuples(
    st.sampled_from(["click", "click", "impression", "conversion"]),
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, HOURS * 3600 - 1),
    st.sampled_from(SUBS),
    st.booleans(),
    st.sampled_from(COUNTRIES),
    st.sampled_from(REASONS),
    st.sampled_from(STATUSES),
    st.integers(0, 50_000),
    st.integers(0, 9_000),
    st.integers(0, 10**9),
)


def _events(world: World, drawn: list[tuple]) -> list[Event]:
    events = []
    for kind, pub, camp, second, sub1, via_slot, country, reason, status, payout, margin, sale in drawn:
        publisher = world.publishers[pub]
        at = BASE + timedelta(seconds=second, microseconds=second % 7 * 1000)
        if kind == "impression":
            events.append(
                Event(
                    "impression",
                    publisher,
                    world.cpm_campaign,
                    at,
                    slot=world.slots[publisher],
                    country=country,
                    reason=reason,
                )
            )
        elif kind == "click":
            campaign = (world.cpa_campaign, world.cpm_campaign)[camp]
            events.append(
                Event(
                    "click",
                    publisher,
                    campaign,
                    at,
                    sub1=sub1,
                    slot=world.slots[publisher] if via_slot and campaign == world.cpm_campaign else 0,
                    country=country,
                    reason=reason,
                )
            )
        else:
            events.append(
                Event(
                    "conversion",
                    publisher,
                    world.cpa_campaign,
                    at,
                    sub1=sub1,
                    country=country,
                    status=status,
                    payout=payout,
                    price=payout + margin,
                    sale=sale,
                )
            )
    return events


async def _traffic(publisher: int, start: datetime, end: datetime, dim: str, table: str = "traffic_hour") -> dict:
    rows = await RollupCursor.raw(
        f"SELECT {dim} AS k, reason, SUM(clicks) AS clicks, SUM(impressions) AS impressions FROM {table} "  # noqa: S608
        "WHERE publisher = {} AND hour >= {} AND hour < {} GROUP BY " + dim + ", reason",
        publisher,
        start,
        end,
    )
    return {
        (r["k"], r["reason"]): (int(r["clicks"]), int(r["impressions"]))
        for r in rows
        if r["clicks"] or r["impressions"]
    }


async def _slice(publisher: int, start: datetime, end: datetime, dim: str) -> dict:
    """The narrow rollup by sub-ID, slot or country: valid and invalid apart, keys as text."""
    rows = await RollupCursor.raw(
        "SELECT key, SUM(clicks) AS c, SUM(invalid_clicks) AS ic, SUM(impressions) AS i, "
        "SUM(invalid_impressions) AS ii FROM traffic_slice_hour WHERE publisher = {} AND dim = {} "
        "AND hour >= {} AND hour < {} GROUP BY key",
        publisher,
        dim,
        start,
        end,
    )
    return {
        r["key"]: tuple(int(r[c]) for c in ("c", "ic", "i", "ii"))
        for r in rows
        if any(r[c] for c in ("c", "ic", "i", "ii"))
    }


def _expected_slice(events: list[Event], publisher: int, start: datetime, end: datetime, dim: str) -> dict:
    found: dict = {}
    for e in events:
        if e.publisher == publisher and start <= e.at < end and e.kind in ("click", "impression"):
            c, ic, i, ii = found.get(str(getattr(e, dim)), (0, 0, 0, 0))
            valid, click = e.reason == "valid", e.kind == "click"
            found[str(getattr(e, dim))] = (
                c + (valid and click),
                ic + (not valid and click),
                i + (valid and not click),
                ii + (not valid and not click),
            )
    return found


async def _conversions(publisher: int, start: datetime, end: datetime, dim: str) -> dict:
    rows = await RollupCursor.raw(
        f"SELECT {dim} AS k, status, SUM(conversions) AS n, SUM(payout_minor) AS payout, SUM(price_minor) AS price, "  # noqa: S608
        "SUM(margin_minor) AS margin, SUM(sale_minor) AS sale FROM conversion_hour "
        "WHERE publisher = {} AND hour >= {} AND hour < {} GROUP BY " + dim + ", status",
        publisher,
        start,
        end,
    )
    return {(r["k"], r["status"]): tuple(int(r[c]) for c in ("n", "payout", "price", "margin", "sale")) for r in rows}


def _expected_traffic(events: list[Event], publisher: int, start: datetime, end: datetime, dim: str) -> dict:
    found: dict = {}
    for e in events:
        if e.publisher == publisher and start <= e.at < end and e.kind in ("click", "impression"):
            key = (getattr(e, dim), e.reason)
            clicks, views = found.get(key, (0, 0))
            found[key] = (clicks + (e.kind == "click"), views + (e.kind == "impression"))
    return found


def _expected_conversions(events: list[Event], publisher: int, start: datetime, end: datetime, dim: str) -> dict:
    found: dict = {}
    for e in events:
        if e.publisher == publisher and start <= e.at < end and e.kind == "conversion":
            key = (getattr(e, dim), e.status)
            n, payout, price, margin, sale = found.get(key, (0, 0, 0, 0, 0))
            found[key] = (n + 1, payout + e.payout, price + e.price, margin + e.price - e.payout, sale + e.sale)
    return found


_range = st.tuples(
    st.integers(0, HOURS),
    st.integers(1, HOURS),
    st.integers(0, 1),
    st.sampled_from(["campaign", "sub1", "slot", "country"]),
)


async def _assert_equal_over_ranges(world: World, ranges: list[tuple]) -> None:
    for first, length, pub, dim in ranges:
        start = BASE + timedelta(hours=first)
        end = start + timedelta(hours=length)
        publisher = world.publishers[pub]
        assert await _traffic(publisher, start, end, dim) == _expected_traffic(
            world.events, publisher, start, end, dim
        ), (start, end, dim)
        if dim == "campaign":
            assert await _traffic(publisher, start, end, dim, "traffic_campaign_hour") == _expected_traffic(
                world.events, publisher, start, end, dim
            ), (start, end, dim)
        else:
            assert await _slice(publisher, start, end, dim) == _expected_slice(
                world.events, publisher, start, end, dim
            ), (start, end, dim)
        assert await _conversions(publisher, start, end, dim) == _expected_conversions(
            world.events, publisher, start, end, dim
        ), (start, end, dim)


async def test_rollups_equal_a_direct_count_of_raw_events_over_random_ranges(app, clean, settings):
    world = await build(settings)
    drawn = _drawn(_event, 300)
    await world.add(_events(world, drawn))
    done = await rollup.roll_up(BASE + timedelta(hours=HOURS, minutes=5))  # the first run: the whole history
    assert done.traffic_hours >= HOURS
    await _assert_equal_over_ranges(world, _drawn(_range, 40))
    # Everything, once more: the totals per publisher over all time.
    for publisher in world.publishers:
        start, end = BASE, BASE + timedelta(hours=HOURS)
        total = sum(c for c, _ in (await _traffic(publisher, start, end, "campaign")).values())
        assert total == count(world.events, "click", publisher=publisher, start=start, end=end)


async def test_run_by_run_the_rollups_equal_a_rebuild_from_scratch(app, clean, settings):
    """Events arrive hour after hour and the rollup runs after each batch, as the cron job does."""
    world = await build(settings)
    drawn = _drawn(_event, 120)
    events = sorted(_events(world, drawn), key=lambda e: e.at)
    for hour in range(0, HOURS, 6):
        start, end = BASE + timedelta(hours=hour), BASE + timedelta(hours=hour + 6)
        await world.add([e for e in events if start <= e.at < end])
        await rollup.roll_up(end + timedelta(minutes=1))
    await rollup.roll_up(BASE + timedelta(hours=HOURS, minutes=2))  # and once more: nothing changes
    await _assert_equal_over_ranges(world, _drawn(_range, 25))
    incremental = await _rows()
    await rollup.rebuild_all()
    assert incremental and await _rows() == incremental


async def _rows() -> list[tuple]:
    """Every rollup row without its id, in a stable order."""
    found = []
    for table in ("traffic_hour", "traffic_campaign_hour", "traffic_slice_hour", "conversion_hour"):
        for row in await RollupCursor.raw(f"SELECT * FROM {table}"):  # noqa: S608
            found.append((table, *(str(v) for k, v in sorted(row.items()) if k != "id")))
    return sorted(found)


async def test_late_and_reversed_conversions_appear_after_the_nightly_rebuild(app, clean, settings):
    world = await build(settings)
    publisher = world.publishers[0]
    day = BASE + timedelta(days=1)
    await world.add(
        [
            Event(
                "conversion",
                publisher,
                world.cpa_campaign,
                day + timedelta(hours=3),
                status="approved",
                payout=700,
                price=1000,
            )
        ]
    )
    await rollup.rebuild_day(day)
    before = await _conversions(publisher, day, day + timedelta(days=1), "campaign")
    assert before == {(world.cpa_campaign, "approved"): (1, 700, 1000, 300, 0)}
    # A week later: the approved conversion is reversed, and a conversion of that same day is
    # reported late. Neither changes the hours of the day they are reported on.
    await Conversion.update({Conversion.status: "reversed"}).where(Conversion.publisher == publisher)
    next(e for e in world.events if e.kind == "conversion").status = "reversed"  # as the database has it now
    late = Event(
        "conversion", publisher, world.cpa_campaign, day + timedelta(hours=5), status="pending", payout=500, price=800
    )
    await world.add([late])
    await rollup.rebuild_day(datetime.now(UTC))  # the nightly job of the day the changes were made
    after = await _conversions(publisher, day, day + timedelta(days=1), "campaign")
    assert after == {
        (world.cpa_campaign, "reversed"): (1, 700, 1000, 300, 0),
        (world.cpa_campaign, "pending"): (1, 500, 800, 300, 0),
    }
    assert after == _expected_conversions(world.events, publisher, day, day + timedelta(days=1), "campaign")


async def test_a_changed_conversion_is_rolled_up_again_by_the_next_incremental_run(app, clean, settings):
    world = await build(settings)
    publisher = world.publishers[1]
    at = BASE + timedelta(hours=2)
    await world.add(
        [Event("conversion", publisher, world.cpa_campaign, at, status="pending", payout=250, price=300, sale=9_900)]
    )
    await rollup.roll_up(datetime.now(UTC))
    assert await _conversions(publisher, BASE, BASE + timedelta(days=1), "sub1") == {
        ("", "pending"): (1, 250, 300, 50, 9_900)
    }
    # Approved and released weeks after it happened: a run now rebuilds that old hour.
    await Conversion.update({Conversion.status: "approved", Conversion.released_at: datetime.now(UTC)}).where(
        Conversion.publisher == publisher
    )
    await rollup.roll_up(datetime.now(UTC))
    assert await _conversions(publisher, BASE, BASE + timedelta(days=1), "sub1") == {
        ("", "released"): (1, 250, 300, 50, 9_900)
    }
