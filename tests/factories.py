"""Build real rows through the services, and drive the app the way a browser does."""

from __future__ import annotations

import itertools
import re
from typing import Any

from httpx import AsyncClient as AsyncTestClient

from server.accounts import mailbox
from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Publisher, Role
from server.core import clock
from server.core.settings import Settings
from server.invoicing.tables import BillingProfile

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_seq)}@affnet.example"


async def make_publisher(
    settings: Settings,
    *,
    email: str | None = None,
    approved: bool = True,
    display_name: str = "Cooking Blog",
    verified: bool = True,
) -> tuple[int, str]:
    email = email or unique_email("pub")
    user_id = await accounts.signup_publisher(
        {
            "email": email,
            "password": PASSWORD,
            "display_name": display_name,
            "blog_url": "https://blog.affnet.example",
            "audience": "home cooks",
        },
        settings,
    )
    if verified:  # as if they opened the link of their verification mail (approval needs it)
        await mailbox.mark_verified(user_id)
    if approved:
        row = await Publisher.select(Publisher.id).where(Publisher.user == user_id).first()
        admin = CurrentUser(id=None, email="system", role=Role.admin, via="test")  # type: ignore[arg-type]
        await accounts.review_publisher(admin, row["id"], approve=True)
    return user_id, email


async def make_advertiser(*, email: str | None = None, billing_profile: bool = True) -> tuple[int, str]:
    email = email or unique_email("adv")
    user_id = await accounts.signup_advertiser(
        {"email": email, "password": PASSWORD, "company_name": "Shop Ltd", "website": "https://shop.affnet.example"}
    )
    await mailbox.mark_verified(user_id)
    if billing_profile:
        await give_billing_profile(user_id, **ITALIAN_BUSINESS)
    return user_id, email


# The advertiser the tests make by default can top up: an Italian business with a valid partita IVA, so
# (the network being French) its top-ups bear no VAT under the reverse charge, and what the billing tests
# say of charges and balances holds as before invoicing. tests/invoicing/ covers the VAT of each case.
ITALIAN_BUSINESS = {
    "kind": "business",
    "legal_name": "Shop S.r.l.",
    "address": "Via Roma 1",
    "postcode": "20121",
    "city": "Milano",
    "country": "IT",
    "tax_code": "00743110157",
    "vat_number": "IT00743110157",
}
FRENCH_BUSINESS = {
    "kind": "business",
    "legal_name": "Boutique SARL",
    "address": "5 rue du Commerce",
    "postcode": "69002",
    "city": "Lyon",
    "country": "FR",
    "company_number": "73282932000074",
    "vat_number": "FR44732829320",
}
FRENCH_INDIVIDUAL = {
    "kind": "individual",
    "legal_name": "Marie Dupont",
    "address": "3 place Bellecour",
    "postcode": "69002",
    "city": "Lyon",
    "country": "FR",
}


async def give_billing_profile(user_id: int, **fields: Any) -> None:
    """A billing profile stored as is (the identity tests check what the form accepts)."""
    now = clock.now()
    await BillingProfile.insert(BillingProfile(user=user_id, created_at=now, updated_at=now, **fields))


async def make_staff(role: Role, *, email: str | None = None) -> tuple[int, str]:
    email = email or unique_email(role.value)
    return await accounts.create_user(email, PASSWORD, role), email


async def make_user(role: Role, settings: Settings) -> tuple[int, str]:
    if role is Role.publisher:
        return await make_publisher(settings)
    if role is Role.advertiser:
        return await make_advertiser()
    return await make_staff(role)


def csrf(client: AsyncTestClient) -> str:
    token = client.cookies.get("affnet_csrf")
    assert token, "no CSRF cookie yet: GET a page first"
    return token


async def post_form(client: AsyncTestClient, path: str, data: dict[str, Any] | None = None, *, with_csrf: bool = True):
    """POST a form as a browser would: with the CSRF token from the cookie set by an earlier page."""
    if client.cookies.get("affnet_csrf") is None:
        await client.get("/login")
    payload = dict(data or {})
    if with_csrf:
        payload["_csrf_token"] = csrf(client)
    return await client.post(path, data=payload, follow_redirects=False)


async def login(client: AsyncTestClient, email: str, password: str = PASSWORD) -> None:
    response = await post_form(client, "/login", {"email": email, "password": password})
    assert response.status_code == 303, response.text


async def staff_client(new_client: Any, role: Role, *, first_page: str = "/") -> tuple[AsyncTestClient, str]:
    """A new client logged in as a new staff user of `role` (finance, admin), with a page loaded so
    its forms carry a CSRF token."""
    _, email = await make_staff(role)
    client = new_client()
    await login(client, email)
    await client.get(first_page)
    return client, email


def error_text(html: str) -> str:
    """The message a person sees in the page's error box."""
    match = re.search(r'class="error[^"]*"[^>]*>(.*?)</p>', html, re.S)
    return match.group(1).strip() if match else ""
