"""What a person does in the browser, shared by the journeys."""

from __future__ import annotations

from tests.factories import PASSWORD


async def log_in(page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("main form[action='/login'] button[type=submit]")  # in whatever language the page is
