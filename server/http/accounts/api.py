"""JSON API of accounts under /api/v1 (Bearer API keys only)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, get

from server.accounts import service as accounts
from server.accounts.tables import Role
from server.http.web import current_user, requires_role


class Me(msgspec.Struct):
    id: int
    email: str
    role: str
    display_name: str
    publisher_status: str | None = None


class AccountsApi(Controller):
    path = "/api/v1"
    guards = [requires_role(Role.publisher, Role.advertiser)]
    tags = ["accounts"]
    security = [{"apiKey": []}]

    @get("/me", summary="The account this API key belongs to")
    async def me(self, request: Request) -> Me:
        user = current_user(request)
        assert user is not None
        if user.role is Role.publisher:
            pub = await accounts.publisher_profile(user.id)
            return Me(
                id=user.id,
                email=user.email,
                role=user.role.value,
                display_name=pub["display_name"],
                publisher_status=pub["status"],
            )
        adv = await accounts.advertiser_profile(user.id)
        return Me(id=user.id, email=user.email, role=user.role.value, display_name=adv["company_name"])
