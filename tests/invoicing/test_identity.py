"""Legal identities (issue 22): billing profiles whose ids python-stdnum checks, the network's own
identity, the language of a party's documents, and publishers' self-billing agreements."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.accounts import mailbox
from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.core.errors import Invalid
from server.core.settings import ConfigError
from server.invoicing import identity
from server.invoicing.tables import BillingProfile, SelfBillingAgreement
from tests.accounts.test_api_keys import create_key
from tests.factories import PASSWORD, login, make_publisher, post_form, staff_client, unique_email

FR_BUSINESS = {
    "kind": "business",
    "legal_name": "Boutique Dupont SARL",
    "address": "12 rue des Lilas\nBâtiment B",
    "postcode": "69003",
    "city": "Lyon",
    "country": "FR",
    "company_number": "732 829 320 00074",
    "vat_number": "FR 44 732 829 320",
}
IT_BUSINESS = {
    "kind": "business",
    "legal_name": "Negozio Rossi S.r.l.",
    "address": "Via Roma 1",
    "postcode": "20121",
    "city": "Milano",
    "country": "IT",
    "vat_number": "00743110157",
    "tax_code": "00743110157",
}
IT_PERSON = {
    "kind": "individual",
    "legal_name": "Mario Rossi",
    "address": "Via Verdi 3",
    "postcode": "00184",
    "city": "Roma",
    "country": "IT",
    "tax_code": "rssmra85t10a562s",
}


def _user(user_id: int, email: str, role: Role, language: str = "") -> CurrentUser:
    return CurrentUser(id=user_id, email=email, role=role, via="test", language=language)


async def new_advertiser() -> tuple[int, str]:
    """An advertiser with no billing details yet (tests.factories' default advertiser has some)."""
    email = unique_email("adv")
    user_id = await accounts.signup_advertiser(
        {"email": email, "password": PASSWORD, "company_name": "Shop Ltd", "website": "https://shop.affnet.example"}
    )
    await mailbox.mark_verified(user_id)
    return user_id, email


async def _advertiser() -> CurrentUser:
    user_id, email = await new_advertiser()
    return _user(user_id, email, Role.advertiser)


async def _publisher(settings) -> CurrentUser:
    user_id, email = await make_publisher(settings)
    return _user(user_id, email, Role.publisher)


# --- the service --------------------------------------------------------------------------------


async def test_french_business_is_stored_compact_and_read_back_as_a_party(client) -> None:
    user = await _advertiser()
    saved = await identity.save_profile(user, FR_BUSINESS)
    assert saved["company_number"] == "73282932000074"
    assert saved["vat_number"] == "FR44732829320"
    assert saved["vat_regime"] == "standard"
    party = await identity.party_of(user.id)
    assert party == {
        "kind": "business",
        "name": "Boutique Dupont SARL",
        "address": "12 rue des Lilas\nBâtiment B",
        "postcode": "69003",
        "city": "Lyon",
        "country": "FR",
        "company_number": "73282932000074",
        "tax_code": "",
        "vat_number": "FR44732829320",
        "vat_regime": "standard",
        "email": user.email,
    }
    events = await AuditEvent.select().where(AuditEvent.action == "billing_profile.saved")
    assert len(events) == 1 and events[0]["actor"] == user.id
    assert "732829320" not in events[0]["detail"]  # which fields changed, not the ids themselves


async def test_italian_business_and_person_and_a_plain_individual(client, settings) -> None:
    shop = await _advertiser()
    assert (await identity.save_profile(shop, IT_BUSINESS))["vat_number"] == "IT00743110157"
    person = await _publisher(settings)
    stored = await identity.save_profile(person, IT_PERSON)
    assert stored["tax_code"] == "RSSMRA85T10A562S" and stored["kind"] == "individual"
    reader = await _advertiser()
    await identity.save_profile(
        reader,
        {
            "kind": "individual",
            "legal_name": "Jane Doe",
            "address": "1 Main St",
            "postcode": "10001",
            "city": "New York",
            "country": "us",
        },
    )
    parties = await identity.parties_of([shop.id, person.id, reader.id, 999_999])
    assert set(parties) == {shop.id, person.id, reader.id}
    assert parties[reader.id]["country"] == "US" and parties[reader.id]["vat_number"] == ""
    assert await identity.party_of(999_999) is None


async def test_saving_again_updates_the_one_row(client) -> None:
    user = await _advertiser()
    await identity.save_profile(user, FR_BUSINESS)
    await identity.save_profile(user, {**FR_BUSINESS, "city": "Paris", "postcode": "75002"})
    rows = await BillingProfile.select().where(BillingProfile.user == user.id)
    assert len(rows) == 1 and rows[0]["city"] == "Paris"


REFUSED = [
    ({**FR_BUSINESS, "company_number": "73282932000075"}, "company_number", "SIRET", "France"),
    ({**FR_BUSINESS, "vat_number": "FR45732829320"}, "vat_number", "TVA intracommunautaire", "France"),
    ({**IT_BUSINESS, "vat_number": "00743110158"}, "vat_number", "partita IVA", "Italy"),
    ({**IT_PERSON, "tax_code": "RSSMRA85T10A562T"}, "tax_code", "codice fiscale", "Italy"),
    ({**FR_BUSINESS, "country": "DE", "vat_number": "DE136695975"}, "vat_number", "VAT number", "Germany"),
    ({**IT_BUSINESS, "vat_number": "DE136695976"}, "vat_number", "VAT number", "Italy"),
]


@pytest.mark.parametrize(("form", "field", "id_name", "country"), REFUSED)
async def test_a_bad_id_is_refused_naming_it_and_the_country(
    new_client, settings, form, field, id_name, country
) -> None:
    api, _browser, user_id = await _api(new_client, lambda: make_publisher(settings))
    assert (await api.put("/api/v1/publisher/billing-profile", json=IT_PERSON)).status_code == 200
    before = await identity.profile_of(user_id)
    refused = await api.put("/api/v1/publisher/billing-profile", json=form)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == field
    assert id_name in error["message"] and country in error["message"], error["message"]
    assert await identity.profile_of(user_id) == before  # nothing changed


async def test_required_ids_by_country_and_kind(client) -> None:
    user = await _advertiser()
    for form, field in (
        ({**FR_BUSINESS, "company_number": ""}, "company_number"),
        ({**IT_BUSINESS, "vat_number": ""}, "vat_number"),
        ({**IT_PERSON, "tax_code": ""}, "tax_code"),
        ({**IT_PERSON, "tax_code": "00743110157"}, "tax_code"),  # a company's code is not a person's
        ({**FR_BUSINESS, "address": "  "}, "address"),
        ({**FR_BUSINESS, "country": "XX"}, "country"),
    ):
        with pytest.raises(Invalid) as refused:
            await identity.save_profile(user, form)
        assert refused.value.field == field, form
    assert await identity.profile_of(user.id) is None


async def test_vat_regime_is_a_publishers_and_ids_of_other_countries_are_dropped(client, settings) -> None:
    advertiser = await _advertiser()
    saved = await identity.save_profile(advertiser, {**FR_BUSINESS, "vat_regime": "franchise", "tax_code": "X"})
    assert saved["vat_regime"] == "standard" and saved["tax_code"] == ""
    publisher = await _publisher(settings)
    saved = await identity.save_profile(publisher, {**FR_BUSINESS, "vat_regime": "franchise"})
    assert saved["vat_regime"] == "franchise"
    with pytest.raises(Invalid) as refused:
        await identity.save_profile(publisher, {**FR_BUSINESS, "vat_regime": "exempt"})
    assert refused.value.field == "vat_regime"


def test_document_locale() -> None:
    assert identity.document_locale("it", {"country": "FR"}) == "it"
    assert identity.document_locale("", {"country": "FR"}) == "fr"
    assert identity.document_locale("de", {"country": "IT"}) == "it"
    assert identity.document_locale("", {"country": "DE"}) == "en"
    assert identity.document_locale("", None) == "en"


@pytest.mark.engine("sqlite")
def test_network_party_comes_from_settings_and_bad_ids_stop_production(settings) -> None:
    identity.configure(settings)
    network = identity.network_party()
    assert network["vat_number"] == settings.network_vat_number and network["kind"] == "business"
    assert network["country"] == "FR" and network["name"] == settings.network_name
    bad = replace(settings, network_vat_number="FR45732829320")
    assert any("NETWORK_VAT_NUMBER" in problem for problem in identity.check_network(bad))  # a warning
    with pytest.raises(ConfigError, match="TVA intracommunautaire"):
        identity.configure(replace(bad, env="production"))
    assert identity.network_party() == network  # the refused one was not kept


# --- self-billing ----------------------------------------------------------------------------------


async def test_agreement_accepted_revoked_and_accepted_again(client, settings) -> None:
    publisher = await _publisher(settings)
    t0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with pytest.raises(Invalid):  # no billing details yet
        await identity.accept_agreement(publisher.id, now=t0)
    await identity.save_profile(publisher, FR_BUSINESS)
    first = await identity.accept_agreement(publisher.id, now=t0)
    assert first["version"] == identity.AGREEMENT_VERSION
    again = await identity.accept_agreement(publisher.id, now=t0 + timedelta(hours=1))
    assert again["id"] == first["id"]  # already in force: nothing new
    await identity.revoke_agreement(publisher.id, now=t0 + timedelta(days=2))
    await identity.accept_agreement(publisher.id, now=t0 + timedelta(days=5))
    rows = await SelfBillingAgreement.select().where(SelfBillingAgreement.publisher == publisher.id)
    assert len(rows) == 2

    def at(days: float) -> datetime:
        return t0 + timedelta(days=days)

    assert await identity.agreement_in_force(publisher.id, at(-1)) is None
    assert (await identity.agreement_in_force(publisher.id, at(1)))["id"] == first["id"]
    assert await identity.agreement_in_force(publisher.id, at(2)) is None  # revoked at that instant
    assert await identity.agreement_in_force(publisher.id, at(3)) is None
    later = await identity.agreement_in_force(publisher.id, at(6))
    assert later is not None and later["id"] != first["id"]
    other = await _publisher(settings)
    found = await identity.agreements_in_force([publisher.id, other.id], at(1))
    assert set(found) == {publisher.id}


async def test_acceptances_at_once_make_one_agreement(client, settings) -> None:
    publisher = await _publisher(settings)
    await identity.save_profile(publisher, FR_BUSINESS)
    accepted = await asyncio.gather(*(identity.accept_agreement(publisher.id) for _ in range(4)))
    assert len({row["id"] for row in accepted}) == 1
    assert len(await identity.agreements_of(publisher.id)) == 1
    revoked = await asyncio.gather(*(identity.revoke_agreement(publisher.id) for _ in range(3)))
    assert sum(row is not None for row in revoked) == 1  # one revocation; the others found none in force
    assert await identity.agreement_in_force(publisher.id, datetime.now(UTC)) is None


async def test_self_billing_is_for_businesses(client, settings) -> None:
    publisher = await _publisher(settings)
    await identity.save_profile(publisher, IT_PERSON)
    with pytest.raises(Invalid):
        await identity.accept_agreement(publisher.id)
    await identity.save_profile(publisher, IT_BUSINESS)
    await identity.accept_agreement(publisher.id)
    with pytest.raises(Invalid) as refused:  # not while an agreement is in force
        await identity.save_profile(publisher, IT_PERSON)
    assert refused.value.field == "kind"


# --- pages ---------------------------------------------------------------------------------------


async def _logged_in(new_client, make) -> tuple:
    user_id, email = await make()
    browser = new_client()
    await login(browser, email)
    return browser, user_id, email


async def test_billing_details_page_saves_and_shows_each_problem_under_its_field(new_client) -> None:
    browser, user_id, _email = await _logged_in(new_client, new_advertiser)
    page = await browser.get("/account/billing-profile")
    assert page.status_code == 200 and 'data-testid="no-profile"' in page.text
    assert 'href="/account/billing-profile"' in page.text  # the navigation links to it

    bad = {**FR_BUSINESS, "company_number": "73282932000075", "vat_number": "FR45732829320", "city": ""}
    refused = await post_form(browser, "/account/billing-profile", bad)
    assert refused.status_code == 422
    assert 'data-field-error="company_number"' in refused.text and "SIRET" in refused.text
    assert 'data-field-error="vat_number"' in refused.text and 'data-field-error="city"' in refused.text
    assert 'value="Boutique Dupont SARL"' in refused.text  # what was typed is kept
    assert await identity.profile_of(user_id) is None

    saved = await post_form(browser, "/account/billing-profile", FR_BUSINESS)
    assert saved.status_code == 303 and saved.headers["location"] == "/account/billing-profile?done=saved"
    shown = await browser.get(saved.headers["location"])
    assert 'class="notice"' in shown.text and 'value="73282932000074"' in shown.text
    assert 'name="vat_regime"' not in shown.text  # an advertiser's regime is always standard
    assert (await identity.profile_of(user_id))["vat_number"] == "FR44732829320"


async def test_self_billing_page_accepts_and_revokes(new_client, settings) -> None:
    browser, user_id, _email = await _logged_in(new_client, lambda: make_publisher(settings))
    page = await browser.get("/publisher/self-billing")
    assert page.status_code == 200 and 'data-state="off"' in page.text
    assert (
        "289 I-2" in page.text
        and "633/1972" in page.text
        and 'action="/publisher/self-billing/accept"' not in page.text
    )
    refused = await post_form(browser, "/publisher/self-billing/accept")
    assert refused.status_code == 422  # no billing details yet
    saved = await post_form(browser, "/account/billing-profile", {**IT_BUSINESS, "vat_regime": "franchise"})
    assert saved.status_code == 303
    assert (await identity.profile_of(user_id))["vat_regime"] == "franchise"
    accepted = await post_form(browser, "/publisher/self-billing/accept")
    assert accepted.status_code == 303 and accepted.headers["location"].endswith("?done=accepted")
    page = await browser.get(accepted.headers["location"])
    assert 'data-state="in_force"' in page.text and 'class="notice"' in page.text
    revoked = await post_form(browser, "/publisher/self-billing/revoke")
    assert revoked.headers["location"].endswith("?done=revoked")
    assert await identity.agreement_in_force(user_id, datetime.now(UTC)) is None
    assert len(await identity.agreements_of(user_id)) == 1


async def test_staff_have_no_billing_details(new_client) -> None:
    browser, _staff = await staff_client(new_client, Role.finance)
    assert (await browser.get("/account/billing-profile")).status_code == 403
    assert (await post_form(browser, "/account/billing-profile", FR_BUSINESS)).status_code == 403
    assert (await browser.get("/publisher/self-billing")).status_code == 403


# --- API -----------------------------------------------------------------------------------------


async def _api(new_client, make) -> tuple:
    browser, user_id, _email = await _logged_in(new_client, make)
    key = await create_key(browser)
    api = new_client()
    api.headers["Authorization"] = f"Bearer {key}"
    return api, browser, user_id


async def test_api_billing_profile_is_the_pages_profile(new_client) -> None:
    api, browser, user_id = await _api(new_client, new_advertiser)
    missing = await api.get("/api/v1/advertiser/billing-profile")
    assert missing.status_code == 404 and missing.json()["error"]["message"]

    refused = await api.put("/api/v1/advertiser/billing-profile", json={**IT_BUSINESS, "vat_number": "00743110158"})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == "vat_number" and "partita IVA" in error["message"] and "Italy" in error["message"]
    assert await identity.profile_of(user_id) is None

    put = await api.put("/api/v1/advertiser/billing-profile", json=IT_BUSINESS)
    assert put.status_code == 200, put.text
    assert put.json()["vat_number"] == "IT00743110157" and put.json()["vat_regime"] == "standard"
    got = await api.get("/api/v1/advertiser/billing-profile")
    assert got.json() == put.json()
    page = await browser.get("/account/billing-profile")
    assert 'value="IT00743110157"' in page.text and "Negozio Rossi S.r.l." in page.text

    await post_form(browser, "/account/billing-profile", FR_BUSINESS)  # the page's change, read by the API
    assert (await api.get("/api/v1/advertiser/billing-profile")).json()["company_number"] == "73282932000074"
    wrong_role = await api.get("/api/v1/publisher/billing-profile")
    assert wrong_role.status_code == 403


async def test_api_self_billing(new_client, settings) -> None:
    api, _browser, user_id = await _api(new_client, lambda: make_publisher(settings))
    state = (await api.get("/api/v1/publisher/self-billing")).json()
    assert state["in_force"] is False and state["version"] == identity.AGREEMENT_VERSION and state["text"]
    refused = await api.post("/api/v1/publisher/self-billing", json={"accept": True})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "billing_profile"
    put = await api.put("/api/v1/publisher/billing-profile", json={**FR_BUSINESS, "vat_regime": "franchise"})
    assert put.status_code == 200 and put.json()["vat_regime"] == "franchise"
    accepted = await api.post("/api/v1/publisher/self-billing", json={"accept": True})
    assert accepted.status_code == 200 and accepted.json()["in_force"] is True
    assert (await api.post("/api/v1/publisher/self-billing", json={"accept": True})).json() == accepted.json()
    revoked = await api.post("/api/v1/publisher/self-billing", json={"accept": False})
    assert revoked.json()["in_force"] is False
    assert len(await identity.agreements_of(user_id)) == 1


async def test_each_user_sees_and_changes_only_their_own_profile(new_client) -> None:
    first, _browser, first_id = await _api(new_client, new_advertiser)
    second, other_browser, second_id = await _api(new_client, new_advertiser)
    await first.put("/api/v1/advertiser/billing-profile", json=FR_BUSINESS)
    assert (await second.get("/api/v1/advertiser/billing-profile")).status_code == 404
    page = await other_browser.get("/account/billing-profile")
    assert "Boutique Dupont" not in page.text and "73282932000074" not in page.text
    await second.put("/api/v1/advertiser/billing-profile", json=IT_BUSINESS)
    assert (await identity.profile_of(first_id))["country"] == "FR"  # the first one's is untouched
    assert (await identity.profile_of(second_id))["country"] == "IT"
