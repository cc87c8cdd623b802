"""The pages' traffic figures read the rollups for the hours rolled up and the raw events only for
the hour since: the same numbers as counting every raw event, before and after a rollup, and
still the same once retention has dropped the raw events."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from server.ads.tables import AdSlot
from server.earnings import cpm
from server.reports import retention, rollup, traffic
from server.tracking.tables import Click
from tests.reports.world import BASE, Event, build

NOW = BASE + timedelta(days=100)


def _by(events, kind: str, *keys: str) -> Counter:
    return Counter(tuple(getattr(e, k) for k in keys) for e in events if e.kind == kind)


async def _figures(world, pub: int) -> dict:
    slot = world.slots[pub]
    return {
        "publisher": Counter(
            {
                (r["campaign_id"], r["sub1"], r["reason"]): r["clicks"]
                for r in await traffic.click_stats(pub, since=BASE)
            }
        ),
        "campaign": Counter(
            {
                (r["publisher_email"], r["reason"]): r["clicks"]
                for r in await traffic.campaign_click_stats(world.cpa_campaign, since=BASE)
            }
        ),
        "slot_views": await traffic.slot_stats(slot, BASE),
        "slot_clicks": await traffic.slot_click_stats(slot, BASE),
        "view_slots": await traffic.view_slots(pub, world.cpm_campaign, BASE, NOW + timedelta(hours=1)),
    }


async def test_page_figures_are_the_raw_counts_before_and_after_rollups_and_retention(clean, settings):
    world = await build(settings)
    pub, other = world.publishers
    slot = world.slots[pub]
    old = BASE + timedelta(hours=10)
    await world.add(
        [Event("click", pub, world.cpa_campaign, old + timedelta(minutes=m), sub1="a") for m in range(4)]
        + [Event("click", pub, world.cpa_campaign, old, sub1="a", reason="duplicate")]
        + [Event("click", other, world.cpa_campaign, old, sub1="z")]
        + [Event("click", pub, world.cpm_campaign, old + timedelta(minutes=m), slot=slot) for m in range(2)]
        + [Event("impression", pub, world.cpm_campaign, old + timedelta(minutes=m)) for m in range(3)]
        + [Event("impression", pub, world.cpm_campaign, old, reason="bot")]
        + [Event("click", pub, world.cpa_campaign, NOW - timedelta(hours=2), sub1="b") for _ in range(2)]
    )

    def expected() -> dict:
        mine = [e for e in world.events if e.publisher == pub]
        clicks = [e for e in world.events if e.kind == "click"]
        return {
            "publisher": _by(mine, "click", "campaign", "sub1", "reason"),
            "campaign": Counter(
                {
                    (world.emails[p], r): n
                    for (p, r), n in _by(
                        [e for e in clicks if e.campaign == world.cpa_campaign], "click", "publisher", "reason"
                    ).items()
                }
            ),
            "slot_views": {r: n for (r,), n in _by(mine, "impression", "reason").items()},
            "slot_clicks": {r: n for (r,), n in _by([e for e in clicks if e.slot == slot], "click", "reason").items()},
            "view_slots": {old: [slot_name]},
        }

    slot_name = (await AdSlot.select(AdSlot.name).where(AdSlot.id == slot).first())["name"]
    assert await _figures(world, pub) == expected()  # nothing rolled up yet: all from the raw events

    await rollup.roll_up(NOW)
    # A click stored after the rollup ran, in the hour it has not closed: read from the raw events.
    await world.add([Event("click", pub, world.cpa_campaign, NOW - timedelta(minutes=5), sub1="c")])
    assert await _figures(world, pub) == expected()

    await cpm.run(NOW)
    done = await retention.drop_raw_events(NOW, 90)
    assert done.floor == BASE + timedelta(days=10)
    assert await Click.count().where(Click.clicked_at < done.floor) == 0  # the old raw clicks are gone
    assert await _figures(world, pub) == expected()
