"""Legal identities (issue 22): billing profiles whose ids python-stdnum checks, the network's own
identity, the language of a party's documents, and publishers' self-billing agreements."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.core.errors import Invalid
from server.core.settings import ConfigError
from server.invoicing import identity
from server.invoicing.tables import BillingProfile, SelfBillingAgreement
from tests.factories import make_advertiser, make_publisher

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


async def _advertiser() -> CurrentUser:
    user_id, email = await make_advertiser()
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
async def test_a_bad_id_is_refused_naming_it_and_the_country(client, form, field, id_name, country) -> None:
    user = await _advertiser()
    before = await identity.save_profile(user, IT_PERSON | {"kind": "business", "vat_number": "IT00743110157"})
    with pytest.raises(Invalid) as refused:
        await identity.save_profile(user, form)
    assert refused.value.field == field
    assert id_name in refused.value.message and country in refused.value.message
    assert await identity.profile_of(user.id) == before  # nothing changed


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
