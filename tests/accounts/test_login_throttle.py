"""Login throttling holds under concurrency, locks out only the guesser's network, and fails closed (503)
when its Redis is away. Every request goes through the real app over HTTP, on a real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import httpx

from dev.services import free_port
from server.accounts.tables import Session
from server.app import create_app
from tests.conftest import BASE_URL
from tests.factories import PASSWORD, error_text, login, make_publisher, post_form

ATTACKER_IP = "203.0.113.7"  # the `client` fixture's address
OWNER_HOME_IP = "198.51.100.20"  # another /24


def browser(app, ip: str) -> httpx.AsyncClient:
    """A browser on the shared app whose requests come from `ip` (as uvicorn would set it)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url=BASE_URL)


async def test_forty_simultaneous_wrong_passwords_get_only_the_limit_checked(app, client, settings):
    _, email = await make_publisher(settings)
    await client.get("/login")  # the CSRF cookie, once, before the burst
    answers = await asyncio.gather(
        *[post_form(client, "/login", {"email": email, "password": f"guess number {i}"}) for i in range(40)]
    )
    codes = Counter(a.status_code for a in answers)
    # Only `limit` passwords were checked (401 "do not match"); the rest were refused before checking.
    limit = settings.login_max_failures_per_account
    assert codes == {401: limit, 429: 40 - limit}, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert "from your network" in error_text(refused.text) and "another network" in error_text(refused.text)
    # Even the right password is refused from the guesser's network now...
    again = await post_form(client, "/login", {"email": email, "password": PASSWORD})
    assert again.status_code == 429 and await Session.count() == 0
    # ...while the owner, at home on another network, logs in as usual.
    async with browser(app, OWNER_HOME_IP) as owner:
        await login(owner, email)
        assert (await owner.get("/publisher")).status_code == 200


async def test_five_wrong_passwords_lock_out_only_the_guessers_network(app, client, settings):
    _, email = await make_publisher(settings)
    for _ in range(settings.login_max_failures_per_account):
        assert (await post_form(client, "/login", {"email": email, "password": "wrong password"})).status_code == 401
    refused = await post_form(client, "/login", {"email": email, "password": PASSWORD})
    assert refused.status_code == 429
    assert "Too many wrong passwords for this account from your network" in error_text(refused.text)
    assert 0 < int(refused.headers["retry-after"]) <= settings.login_failure_window_seconds
    # A neighbour in the same /24 shares the network's lock; the next /24 does not.
    async with browser(app, "203.0.113.99") as neighbour:
        assert (await post_form(neighbour, "/login", {"email": email, "password": PASSWORD})).status_code == 429
    async with browser(app, OWNER_HOME_IP) as owner:
        await login(owner, email)


async def test_ipv6_guessers_are_locked_out_by_their_48_not_by_their_address(app, settings):
    _, email = await make_publisher(settings)
    async with browser(app, "2001:db8:1:1::5") as guesser:
        for _ in range(settings.login_max_failures_per_account):
            await post_form(guesser, "/login", {"email": email, "password": "wrong password"})
    # A new address in the same /48 (IPv6 hands out whole networks: one address per try would be free)...
    async with browser(app, "2001:db8:1:ffff::9") as same_network:
        assert (await post_form(same_network, "/login", {"email": email, "password": PASSWORD})).status_code == 429
    async with browser(app, "2001:db8:2::1") as owner:  # ...but not the next /48
        await login(owner, email)


async def test_guessing_spread_over_many_networks_stops_but_not_at_the_owners_own_network(app, settings):
    # Small limits so the test checks few passwords: 2 per account and network, 6 over all networks.
    strict = create_app(
        replace(settings, login_max_failures_per_account=2, login_max_failures_per_account_all_networks=6)
    )
    try:
        _, email = await make_publisher(settings)
        async with browser(strict, OWNER_HOME_IP) as owner:
            await login(owner, email)  # the owner's network becomes known to the account
            for n in range(10):  # a botnet: 2 guesses from each of 10 networks, 6 of them checked
                async with browser(strict, f"192.0.{n}.10") as bot:
                    for _ in range(2):
                        await post_form(bot, "/login", {"email": email, "password": "wrong password"})
            async with browser(strict, "192.0.200.1") as traveller:  # the owner abroad, on a new network
                refused = await post_form(traveller, "/login", {"email": email, "password": PASSWORD})
            assert refused.status_code == 429
            assert "from many networks" in error_text(refused.text)
            assert "network you logged in from before" in error_text(refused.text)
            await post_form(owner, "/logout")
            await login(owner, email)  # at home it still works
    finally:
        await strict.state.redis.aclose()


async def test_many_accounts_tried_from_one_network_are_throttled(client, settings):
    _, email = await make_publisher(settings)
    for i in range(settings.login_max_failures_per_ip):
        await post_form(client, "/login", {"email": f"guess{i}@affnet.example", "password": "wrong password"})
    response = await post_form(client, "/login", {"email": email, "password": PASSWORD})
    assert response.status_code == 429
    assert "from your network, for several accounts" in error_text(response.text)


async def test_login_answers_503_with_a_message_when_redis_is_away(app, settings):
    _, email = await make_publisher(settings)
    cut_off = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        async with browser(cut_off, OWNER_HOME_IP) as person:
            response = await post_form(person, "/login", {"email": email, "password": PASSWORD})
    finally:
        await cut_off.state.redis.aclose()
    assert response.status_code == 503
    assert "Logging in is paused for a moment" in error_text(response.text)
    assert int(response.headers["retry-after"]) > 0
    assert "affnet_session" not in response.headers.get("set-cookie", "")
    assert await Session.count() == 0
