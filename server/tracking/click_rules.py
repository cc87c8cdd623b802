"""Switching the click-quality rules (`datacenter`, `prefetch`, `suspicious_headers`) off per
campaign (its advertiser: campaign.click_rules_off) and network-wide (an admin: the network setting
CLICK_RULES_OFF_KEY). A switched-off rule classifies those clicks as it would without the rule
(usually `valid`). The global AFFNET_CLICK_QUALITY_CHECKS=off still turns all three off at start.

The redirect never reads these per click: they are read with a link's terms (server/tracking/
service.py: load_target, a cache miss, at most once per TTL per link) into Target.rules_off, which
`Redirector.decide` looks at only when one of those reasons fires. The network-wide value is kept
here for NETWORK_TTL seconds (one query per process per TTL at most)."""

from __future__ import annotations

import time

from server.accounts.tables import NetworkSetting
from server.tracking.classify import Reason

SWITCHABLE = (Reason.datacenter.value, Reason.prefetch.value, Reason.suspicious_headers.value)
CLICK_RULES_OFF_KEY = "click_rules_off"
NETWORK_TTL = 30.0

_network: tuple[float, frozenset[str]] | None = None


def parse(raw: str) -> frozenset[str]:
    return frozenset(r for r in (raw or "").split(",") if r in SWITCHABLE)


def text(off: frozenset[str] | set[str]) -> str:
    return ",".join(r for r in SWITCHABLE if r in off)


def forget() -> None:
    """The network-wide value changed (or the tests emptied the database): read it again."""
    global _network
    _network = None


async def network_off() -> frozenset[str]:
    global _network
    now = time.monotonic()
    if _network is not None and now - _network[0] < NETWORK_TTL:
        return _network[1]
    row = await NetworkSetting.select(NetworkSetting.value).where(NetworkSetting.key == CLICK_RULES_OFF_KEY).first()
    off = parse(row["value"]) if row else frozenset()
    _network = (now, off)
    return off


class _NetworkValue:
    """The network-wide value as a cache server/core/changes.py clears: a network change
    (changes.network_changed, or a lost invalidation channel) forgets it in every process."""

    def clear(self) -> None:
        forget()

    def drop_campaign(self, campaign_id: int) -> None:
        pass  # a campaign's change leaves the network's value as it is


NETWORK = _NetworkValue()
