"""Earnings tests price CPM impressions: they start, as ads tests do, from no ad state held in process."""

from tests.ads.conftest import ads_state  # noqa: F401 - the autouse fixture, used by name
