"""Ads tests start from nothing held in process (ids restart in each emptied database) and leave no
counted view unwritten behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def ads_state(app) -> AsyncIterator[None]:
    await app.state.ads.buffer.flush()  # a view of the previous test lands before its rows go
    app.state.ads.reset()
    yield
    await app.state.ads.buffer.flush()
