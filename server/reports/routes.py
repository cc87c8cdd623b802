"""Each role's home page. Panels fill in as campaigns, conversions and payouts arrive."""

from __future__ import annotations

from litestar import Controller, Request, get
from litestar.response import Template

from server.accounts import service as accounts
from server.accounts.tables import PublisherStatus, Role
from server.campaigns.marketplace import click_table
from server.pages import render
from server.tracking import service as tracking
from server.web import current_user, requires_role


class PublisherDashboard(Controller):
    path = "/publisher"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def dashboard(self, request: Request) -> Template:
        user_id = current_user(request).id  # type: ignore[union-attr]
        profile = await accounts.publisher_profile(user_id)
        stats = await tracking.click_stats(user_id)  # the last 30 days
        return render("publisher/dashboard.html", profile=profile,
                      can_join=profile["status"] == PublisherStatus.approved.value,
                      clicks=tracking.summarise(stats), table=click_table(stats))


class AdvertiserDashboard(Controller):
    path = "/advertiser"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def dashboard(self, request: Request) -> Template:
        profile = await accounts.advertiser_profile(current_user(request).id)  # type: ignore[union-attr]
        return render("advertiser/dashboard.html", profile=profile)


class FinanceDashboard(Controller):
    path = "/finance"
    guards = [requires_role(Role.finance)]
    include_in_schema = False

    @get("")
    async def dashboard(self) -> Template:
        return render("finance/dashboard.html")


class AdminDashboard(Controller):
    path = "/admin"
    guards = [requires_role(Role.admin)]
    include_in_schema = False

    @get("")
    async def dashboard(self) -> Template:
        pending = await accounts.list_publishers(PublisherStatus.pending)
        return render("admin/dashboard.html", pending=pending, counts=await accounts.counts_by_role())
