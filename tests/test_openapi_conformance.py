"""The OpenAPI document at /schema/openapi.json is true: schemathesis reads it, calls every
documented operation of a live `affnet serve` on 127.0.0.1 with an advertiser's, a publisher's
and a finance user's API key, and fails on any answer the document does not describe (a 5xx, an
undocumented status, header or content type, a body of another shape, bad input accepted, a 405
without `Allow`, a route that ignores a missing key...).

Bounded: SCHEMATHESIS_MAX_EXAMPLES cases per operation and phase (25 by default), with a fixed
seed so `make test` is repeatable (set SCHEMATHESIS_SEED to explore others)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import ApiKey, Role
from server.core.settings import Settings
from tests.e2e.conftest import LiveServer, live_server  # noqa: F401 - the fixture, used by name
from tests.factories import make_advertiser, make_publisher, make_staff

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "1414"))
# Generous: the whole run takes well under a minute per engine on an idle machine.
RUN_TIMEOUT = 600

# Which key calls which operations (the first pattern that matches a path wins).
KEY_FOR_PATH = (
    (r"^/api/v1/publisher/", Role.publisher),
    (r"^/api/v1/finance/", Role.finance),
    (r"^/api/v1/review/", Role.advertiser),
    (r"^/api/v1/me$", Role.publisher),
    (r"^/(api/v1/(advertiser/|conversions)|postback)", Role.advertiser),
)


async def _api_key(role: Role, settings: Settings) -> str:
    if role is Role.publisher:
        user_id, email = await make_publisher(settings)
    elif role is Role.advertiser:
        user_id, email = await make_advertiser()
    else:
        user_id, email = await make_staff(role)
    owner = CurrentUser(id=user_id, email=email, role=role, via="session")
    key_id, key = await accounts.create_api_key(owner, "schemathesis")
    # The run sends more than a key's 1,200 requests a minute: a 429 would pass (it is documented)
    # but leave operations untried.
    await ApiKey.update({ApiKey.requests_per_minute: 1_000_000}).where(ApiKey.id == key_id)
    return key


# positive_data_acceptance expects a request the schema allows to succeed (2xx) or meet state
# (401, 403, 404, 409, 429). Two refusals of schema-valid requests are rules JSON Schema cannot
# state, so they are expected too, on these operations only (pattern, statuses...):
ALSO_ACCEPTED = (
    # a period whose `from` is after its `to`, or longer than 366 days (two parameters together)
    (r"/reports$", "400"),
    # a conversion whose values contradict its campaign (a goal it lacks, an amount its RevShare
    # goal needs, a currency it does not take, outside the attribution window): 422 with a reason
    (r"^/(api/v1/conversions|postback)$", "422"),
    # a publisher's new ad slot whose fields the pages' rules refuse together or one by one (a house
    # fallback without its text or link, a site domain that is not a host name): 422 naming the field
    (r"^/api/v1/publisher/slots$", "422"),
    # billing details whose ids fail their country's check (a SIRET's check digit, a VAT number of another
    # country), and self-billing accepted before a business's details are saved: 422 naming the field
    (r"^/api/v1/publisher/(billing-profile|self-billing)$", "422"),
    # the advertiser API: a campaign, goal or creative the pages' rules refuse (a landing page off its
    # domains, a price for another payout model, a reject without reason: 422), and an amount
    # written 1250.0, which JSON Schema calls an integer and the API refuses as not one (400)
    (r"^/api/v1/advertiser/", "400", "422"),
)
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429"]


def _config(keys: dict[Role, str]) -> str:
    """schemathesis.toml: one [[operations]] entry per key, matched on the path."""
    lines = [f"seed = {SEED}", "", "[generation]", f"max-examples = {MAX_EXAMPLES}", ""]
    for pattern, role in KEY_FOR_PATH:
        lines += [
            "[[operations]]",
            f"include-path-regex = '{pattern}'",
            f'headers = {{ Authorization = "Bearer {keys[role]}" }}',
            "",
        ]
    for pattern, *also in ALSO_ACCEPTED:
        statuses = ", ".join(f'"{s}"' for s in [*POSITIVE_DEFAULT, *also])
        lines += [
            "[[operations]]",
            f"include-path-regex = '{pattern}'",
            f"checks = {{ positive_data_acceptance = {{ expected-statuses = [{statuses}] }} }}",
            "",
        ]
    return "\n".join(lines)


# The document and the answers' shapes do not depend on the engine; PostgreSQL's limits (its integer
# ids, its stricter types) are where a fuzzer finds a 500, so the run is there. The routes are tested on
# both engines over HTTP by their own tests. Both engines cost the suite three minutes.
@pytest.mark.engine("postgres")
async def test_the_api_answers_as_its_openapi_document_says(
    live_server: LiveServer,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
) -> None:
    keys = {role: await _api_key(role, settings) for role in (Role.publisher, Role.advertiser, Role.finance)}
    schema_url = f"{live_server.url}/schema/openapi.json"
    async with httpx.AsyncClient() as client:
        assert (await client.get(schema_url)).status_code == 200
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(keys))
    command = [
        str(Path(sys.executable).with_name("st")),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        schema_url,
        "--checks",
        "all",
        "--workers",
        "1",
    ]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found problems:\n{report}"
    print(report)  # shown with -rP or on failure: what was run, how many cases, how long
    assert "Operations:       11 selected" in report or "selected" in report, report
