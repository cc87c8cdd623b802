"""A publisher (or advertiser) driving /api/v1/publisher with a real API key, made on the keys page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from tests.accounts.test_api_keys import create_key
from tests.factories import login, make_advertiser, make_publisher

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
API = "/api/v1/publisher"


def browser() -> str:
    """A user agent of its own: the redirect counts one click per visitor and link an hour."""
    return f"{BROWSER} affnet-test/{uuid.uuid4().hex}"


@dataclass
class ApiUser:
    http: httpx.AsyncClient  # no cookies: the key alone says who calls
    user: CurrentUser
    key: str

    async def get(self, path: str, **params: Any) -> httpx.Response:
        query = {k: (str(v) if not isinstance(v, str) else v) for k, v in params.items() if v is not None}
        return await self.http.get(f"{API}{path}", params=query, headers=self._auth())

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.http.post(f"{API}{path}", json=body, headers=self._auth())

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def publisher_api(new_client, settings, *, approved: bool = True, display_name: str = "API Blog") -> ApiUser:
    user_id, email = await make_publisher(settings, approved=approved, display_name=display_name)
    browser_client = new_client()
    await login(browser_client, email)
    key = await create_key(browser_client, "automation")
    return ApiUser(new_client(), CurrentUser(id=user_id, email=email, role=Role.publisher, via="test"), key)


async def advertiser_api(new_client) -> ApiUser:
    user_id, email = await make_advertiser()
    browser_client = new_client()
    await login(browser_client, email)
    key = await create_key(browser_client, "automation")
    return ApiUser(new_client(), CurrentUser(id=user_id, email=email, role=Role.advertiser, via="test"), key)


async def all_pages(api: ApiUser, path: str, **params: Any) -> tuple[list[dict], int]:
    """Every item of a list, page after page by next_cursor, and how many pages it took."""
    items: list[dict] = []
    cursor = None
    pages = 0
    while True:
        response = await api.get(path, cursor=cursor, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 100, "the cursor never stops"
