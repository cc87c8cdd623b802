"""API keys: shown once, stored hashed, told apart by prefix, revocable, owner-only."""

from __future__ import annotations

import re

from server.accounts.tables import ApiKey, Role
from server.audit.tables import AuditEvent
from tests.factories import login, make_advertiser, make_publisher, make_staff, post_form

KEY_RE = re.compile(r'data-testid="new-api-key">(afn_[a-z]{3}_[0-9a-f]{8}_[0-9a-f]{64})<')


async def create_key(client, name: str = "reporting") -> str:
    response = await post_form(client, "/account/api-keys", {"name": name})
    assert response.status_code == 201, response.text
    match = KEY_RE.search(response.text)
    assert match, "the new key is shown on the page"
    return match.group(1)


async def test_key_is_shown_once_and_stored_only_as_a_hash(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    key = await create_key(client)
    assert key.startswith("afn_pub_")

    rows = await ApiKey.select()
    assert len(rows) == 1
    secret = key.rsplit("_", 1)[1]
    assert secret not in str(rows) and key not in str(rows)
    assert rows[0]["prefix"] == key.rsplit("_", 1)[0]
    assert secret not in str(await AuditEvent.select())

    listing = await client.get("/account/api-keys")
    assert rows[0]["prefix"] in listing.text  # the visible prefix tells keys apart
    assert secret not in listing.text  # never shown again


async def test_advertiser_keys_have_their_own_prefix(client):
    _, email = await make_advertiser()
    await login(client, email)
    assert (await create_key(client)).startswith("afn_adv_")


async def test_a_key_authenticates_the_api_as_its_owner(client, new_client, settings):
    _, email = await make_publisher(settings, display_name="Key Blog")
    await login(client, email)
    key = await create_key(client)
    api = new_client()
    me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200
    assert me.json() == {
        "id": me.json()["id"],
        "email": email,
        "role": "publisher",
        "display_name": "Key Blog",
        "publisher_status": "approved",
    }
    row = await ApiKey.select(ApiKey.last_used_at).first()
    assert row["last_used_at"] is not None


async def test_revoked_key_is_refused_with_401_and_a_message(client, new_client, settings):
    _, email = await make_advertiser()
    await login(client, email)
    key = await create_key(client)
    key_id = (await ApiKey.select(ApiKey.id).first())["id"]
    assert (await post_form(client, f"/account/api-keys/{key_id}/revoke")).status_code == 303
    response = await new_client().get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "revoked_api_key"
    assert "has been revoked" in response.json()["error"]["message"]
    assert "revoked" in (await client.get("/account/api-keys")).text


async def test_forged_malformed_and_missing_keys_are_refused(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    key = await create_key(client)
    forged = key[:-4] + ("0000" if not key.endswith("0000") else "1111")
    cases = {
        f"Bearer {forged}": "invalid_api_key",
        "Bearer not-a-key": "invalid_api_key",
        f"Basic {key}": "invalid_authorization",
        None: "missing_api_key",
    }
    for header, code in cases.items():
        headers = {"Authorization": header} if header else {}
        response = await client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == code, header


async def test_session_cookie_does_not_authenticate_the_api(client, settings):
    """The API trusts Bearer keys only, so no page can spend a logged-in user's API authority."""
    _, email = await make_publisher(settings)
    await login(client, email)
    response = await client.get("/api/v1/me")
    assert response.status_code == 401


async def test_another_users_key_cannot_be_revoked_and_answers_404(client, new_client, settings):
    _, owner = await make_publisher(settings)
    await login(client, owner)
    key = await create_key(client)
    key_id = (await ApiKey.select(ApiKey.id).first())["id"]

    _, intruder = await make_advertiser()
    other = new_client()
    await login(other, intruder)
    response = await post_form(other, f"/account/api-keys/{key_id}/revoke")
    assert response.status_code == 404
    assert (await ApiKey.select(ApiKey.revoked_at).first())["revoked_at"] is None
    assert (await other.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})).json()["email"] == owner


async def test_admins_cannot_create_api_keys(client):
    """Keys are for reading and reporting through /api/ (publishers, advertisers, finance's
    reports); no admin action is open to a key."""
    _, email = await make_staff(Role.admin)
    await login(client, email)
    response = await post_form(client, "/account/api-keys", {"name": "x"})
    assert response.status_code == 403
    assert await ApiKey.count() == 0


async def test_a_key_needs_a_name(client, settings):
    _, email = await make_publisher(settings)
    await login(client, email)
    response = await post_form(client, "/account/api-keys", {"name": "  "})
    assert response.status_code == 422
    assert "Key name is required" in response.text
    assert await ApiKey.count() == 0


async def test_openapi_schema_describes_the_api(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/me" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert not any(p.startswith("/admin") or p == "/login" for p in schema["paths"])
