"""Who the parties of a document are: the network's own legal identity (settings), each advertiser's
and publisher's billing profile, and publishers' self-billing agreements.

Every id is checked with python-stdnum, format and check digits, before anything is stored, and a
refusal names the id and the country ("This SIRET is not valid for France: …"). Ids are stored
compact (no spaces or dots, upper case); VAT numbers carry their country's prefix (Greece's is EL).

A *party* (`party_of`, `network_party`) is the dict documents copy as their seller and buyer: kind,
name, address, postcode, city, country, company_number, tax_code, vat_number, vat_regime, email."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from babel import Locale
from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError
from stdnum.fr import siren, siret
from stdnum.fr import tva as fr_tva
from stdnum.it import codicefiscale
from stdnum.it import iva as it_iva

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role, User
from server.audit import service as audit
from server.core import clock, db, i18n
from server.core import locale as locales
from server.core.errors import Forbidden, Invalid, NotFound
from server.core.i18n import _
from server.core.settings import ConfigError, Settings
from server.invoicing.tables import BillingProfile, DocumentKind, PartyKind, SelfBillingAgreement, VatRegime
from server.invoicing.vat import EU

log = logging.getLogger("affnet.invoicing")

PARTY_FIELDS = (
    "kind",
    "name",
    "address",
    "postcode",
    "city",
    "country",
    "company_number",
    "tax_code",
    "vat_number",
    "vat_regime",
    "email",
)
PROFILE_FIELDS = (
    "kind",
    "legal_name",
    "address",
    "postcode",
    "city",
    "country",
    "company_number",
    "tax_code",
    "vat_number",
    "vat_regime",
)
PROFILE_ROLES = (Role.advertiser, Role.publisher)
DOCUMENT_LANGUAGES = ("fr", "it", "en")
# Region and grouping codes babel also names, which are not countries one can live in.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "ZZ", "QO", "XA", "XB"})
_LIMITS = {"legal_name": 200, "address": 500, "postcode": 16, "city": 100}


# --- countries -------------------------------------------------------------------------------------


@cache
def _countries() -> frozenset[str]:
    return frozenset(c for c in Locale("en").territories if len(c) == 2 and c.isalpha() and c not in _NOT_COUNTRIES)


def country_name(code: str) -> str:
    """The country's name in the reader's language (babel's territory names)."""
    return Locale.parse(i18n.language()).territories.get(code, code)


def country_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """For the form's select: the EU's countries first, then every other, each by name in the reader's
    language."""
    names = Locale.parse(i18n.language()).territories

    def named(codes: Iterable[str]) -> list[tuple[str, str]]:
        return sorted(((c, names.get(c, c)) for c in codes), key=lambda pair: pair[1].casefold())

    return [
        (_("European Union"), named(EU)),
        (_("Other countries"), named(_countries() - EU)),
    ]


def vat_prefix(country: str) -> str:
    """The prefix of a country's VAT numbers: its ISO code, but EL for Greece."""
    return "EL" if country == "GR" else country


_PREFIXES = {vat_prefix(c): c for c in EU} | {"XI": "GB"}  # XI: Northern Ireland, under the EU's VAT rules


# --- the ids, one checker each -------------------------------------------------------------------


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(ch for ch in text.upper() if ch not in " .-/\t\r\n")


def _company_number_fr(raw: str) -> str:
    country = country_name("FR")
    if len(raw) == 9:
        if not siren.is_valid(raw):
            raise Invalid(
                _(
                    "This SIREN is not valid for %(country)s: it must be 9 digits with a correct check digit.",
                    country=country,
                ),
                field="company_number",
            )
        return raw
    if len(raw) == 14 and siret.is_valid(raw):
        return raw
    raise Invalid(
        _("This SIRET is not valid for %(country)s: it must be 14 digits with a correct check digit.", country=country),
        field="company_number",
    )


def _vat_fr(raw: str, company_number: str) -> str:
    country = country_name("FR")
    number = raw if raw.startswith("FR") else "FR" + raw
    try:
        number = "FR" + fr_tva.validate(number)
    except ValidationError:
        raise Invalid(
            _(
                "This TVA intracommunautaire number is not valid for %(country)s: it must be FR, a two-character "
                "key and the 9-digit SIREN, with a correct key.",
                country=country,
            ),
            field="vat_number",
        ) from None
    if company_number and number[4:].isdigit() and number[4:] != company_number[:9]:
        raise Invalid(
            _(
                "This TVA intracommunautaire number does not match the SIREN given for %(country)s: its last 9 digits "
                "must be the SIREN.",
                country=country,
            ),
            field="vat_number",
        )
    return number


def _vat_it(raw: str) -> str:
    number = raw.removeprefix("IT")
    if not it_iva.is_valid(number):
        raise Invalid(
            _(
                "This partita IVA is not valid for %(country)s: it must be 11 digits with a correct check digit.",
                country=country_name("IT"),
            ),
            field="vat_number",
        )
    return "IT" + it_iva.compact(number)


def _tax_code_it(raw: str, kind: PartyKind) -> str:
    country = country_name("IT")
    if kind is PartyKind.individual:
        if len(raw) == 16 and codicefiscale.is_valid(raw):
            return raw
        raise Invalid(
            _(
                "This codice fiscale is not valid for %(country)s: a person's has 16 letters and digits with a correct "
                "check character.",
                country=country,
            ),
            field="tax_code",
        )
    if len(raw) in (11, 16) and codicefiscale.is_valid(raw):
        return raw
    raise Invalid(
        _(
            "This codice fiscale is not valid for %(country)s: it must be 16 letters and digits (a person's) or 11 "
            "digits (a company's), with a correct check character.",
            country=country,
        ),
        field="tax_code",
    )


def _vat_of_another_country(raw: str, country: str) -> None:
    """Refuse a VAT number whose prefix is another country's than the profile's."""
    given = raw[:2]
    if given in _PREFIXES and given != vat_prefix(country) and not (country == "GB" and given == "XI"):
        raise Invalid(
            _(
                "This VAT number is not valid for %(country)s: it starts with %(prefix)s, the prefix of %(other)s. "
                "Give the VAT number of %(country)s, or change the country.",
                country=country_name(country),
                prefix=given,
                other=country_name(_PREFIXES[given]),
            ),
            field="vat_number",
        )


def _vat_other(raw: str, country: str) -> str:
    """Any other country's VAT number: an EU one with stdnum.eu.vat and that country's prefix (added
    when missing); elsewhere the country's own stdnum module when it has one."""
    name = country_name(country)
    if country in EU:
        prefix = vat_prefix(country)
        given = raw[:2]
        number = raw if given == prefix else prefix + raw
        if not eu_vat.is_valid(number):
            raise Invalid(
                _(
                    "This VAT number is not valid for %(country)s: it must be %(prefix)s followed by the number, with "
                    "correct check digits.",
                    country=name,
                    prefix=prefix,
                ),
                field="vat_number",
            )
        return eu_vat.compact(number)
    module = get_cc_module(country.lower(), "vat")
    if module is not None:
        if not module.is_valid(raw):
            raise Invalid(
                _("This VAT number is not valid for %(country)s: check it for a typing mistake.", country=name),
                field="vat_number",
            )
        return module.compact(raw).upper()
    if not raw.isalnum() or len(raw) > 20:
        raise Invalid(
            _("This VAT number is not valid for %(country)s: it must be at most 20 letters and digits.", country=name),
            field="vat_number",
        )
    return raw


# --- a profile, checked whole ----------------------------------------------------------------------


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if name == "address":
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return " ".join(text.split())


def check_profile(form: Mapping[str, Any], *, role: Role) -> dict[str, str]:
    """The profile to store from what was typed, every id compact and checked; Invalid (all the
    problems, each with its field) when something is missing or wrong."""
    problems: list[Invalid] = []

    def refuse(exc: Invalid) -> None:
        problems.append(exc)

    kind_text = _text(form, "kind") or PartyKind.individual.value
    try:
        kind = PartyKind(kind_text)
    except ValueError:
        kind = PartyKind.individual
        refuse(Invalid(_("Choose whether you are a business or an individual."), field="kind"))
    values = {name: _text(form, name) for name in ("legal_name", "address", "postcode", "city")}
    required = {
        "legal_name": _("Give your legal name: the company's registered name, or your full name."),
        "address": _("Give your address: invoices must show it."),
        "postcode": _("Give your postcode."),
        "city": _("Give your city."),
    }
    for name, message in required.items():
        if not values[name]:
            refuse(Invalid(message, field=name))
        elif len(values[name]) > _LIMITS[name]:
            refuse(Invalid(_("At most %(count)s characters.", count=_LIMITS[name]), field=name))
    country = _text(form, "country").upper()
    if not country:
        refuse(Invalid(_("Choose your country."), field="country"))
    elif country not in _countries():
        refuse(Invalid(_("Choose your country from the list."), field="country"))
        country = ""

    ids = {"company_number": "", "tax_code": "", "vat_number": ""}
    raw = {name: _compact(form.get(name)) for name in ids}
    vat_refused = False
    if country and raw["vat_number"]:
        try:
            _vat_of_another_country(raw["vat_number"], country)
        except Invalid as exc:
            refuse(exc)
            raw["vat_number"] = ""
            vat_refused = True
    if country == "FR":
        if raw["company_number"]:
            try:
                ids["company_number"] = _company_number_fr(raw["company_number"])
            except Invalid as exc:
                refuse(exc)
        elif kind is PartyKind.business:
            refuse(
                Invalid(
                    _("Give the SIRET (14 digits) or SIREN (9 digits) of your business: French invoices must show it."),
                    field="company_number",
                )
            )
        if raw["vat_number"]:
            try:
                ids["vat_number"] = _vat_fr(raw["vat_number"], ids["company_number"])
            except Invalid as exc:
                refuse(exc)
    elif country == "IT":
        if raw["vat_number"]:
            try:
                ids["vat_number"] = _vat_it(raw["vat_number"])
            except Invalid as exc:
                refuse(exc)
        elif kind is PartyKind.business and not vat_refused:
            refuse(
                Invalid(
                    _("Give the partita IVA of your business (11 digits): Italian invoices must show it."),
                    field="vat_number",
                )
            )
        if raw["tax_code"]:
            try:
                ids["tax_code"] = _tax_code_it(raw["tax_code"], kind)
            except Invalid as exc:
                refuse(exc)
        elif kind is PartyKind.individual:
            refuse(
                Invalid(
                    _("Give your codice fiscale (16 letters and digits): Italian invoices must show it."),
                    field="tax_code",
                )
            )
    elif country and raw["vat_number"]:
        try:
            ids["vat_number"] = _vat_other(raw["vat_number"], country)
        except Invalid as exc:
            refuse(exc)

    regime = VatRegime.standard
    regime_text = _text(form, "vat_regime") or VatRegime.standard.value
    if role is Role.publisher and kind is PartyKind.business:
        try:
            regime = VatRegime(regime_text)
        except ValueError:
            refuse(Invalid(_("Choose your VAT regime: standard or franchise."), field="vat_regime"))
    if problems:
        raise Invalid.of(problems)
    return {"kind": kind.value, **values, "country": country, **ids, "vat_regime": regime.value}


# --- the network ---------------------------------------------------------------------------------

_network: dict[str, str] | None = None


def _network_of(settings: Settings) -> dict[str, str]:
    return {
        "kind": PartyKind.business.value,
        "name": settings.network_name,
        "address": settings.network_address,
        "postcode": settings.network_postcode,
        "city": settings.network_city,
        "country": settings.network_country.upper(),
        "company_number": _compact(settings.network_company_number),
        "tax_code": "",
        "vat_number": _compact(settings.network_vat_number),
        "vat_regime": VatRegime.standard.value,
        "email": "",
    }


def check_network(settings: Settings) -> list[str]:
    """What is wrong with the network's identity in settings (NETWORK_* variables), as sentences. In
    production any problem stops the start (ConfigError): every invoice would carry it; elsewhere
    each is logged as a warning."""
    party = _network_of(settings)
    found: list[str] = []
    with locales.using("en"):
        try:
            check_profile(
                {**party, "legal_name": party["name"], "kind": PartyKind.business.value}, role=Role.advertiser
            )
        except Invalid as exc:
            found = [f"NETWORK_{(p.field or 'name').upper()}: {p.message}" for p in exc.problems]
        if party["country"] in EU and not party["vat_number"]:
            found.append(f"NETWORK_VAT_NUMBER: the network's VAT number is needed on invoices in {party['country']}.")
    found = [text.replace("NETWORK_LEGAL_NAME", "NETWORK_NAME") for text in found]
    if found and settings.production:
        raise ConfigError("The network's legal identity is not valid: " + " ".join(found))
    for text in found:
        log.warning("the network's legal identity: %s", text)
    return found


def configure(settings: Settings) -> None:
    """Called once by the server's and the worker's start: the network's party, checked."""
    global _network
    check_network(settings)
    _network = _network_of(settings)
    _series.update(
        {
            DocumentKind.invoice: settings.invoice_series,
            DocumentKind.credit_note: settings.invoice_series,  # one sequence with the invoices they correct
            DocumentKind.self_billed_invoice: settings.self_billing_series,
            DocumentKind.statement: settings.statement_series,
        }
    )


_series: dict[str, str] = {}


def series(kind: DocumentKind) -> str:
    """The series documents of `kind` are numbered in (Settings: INVOICE_SERIES, SELF_BILLING_SERIES,
    STATEMENT_SERIES)."""
    if not _series:
        raise RuntimeError("server.invoicing.identity.configure(settings) was not called")
    return _series[kind]


def network_party() -> dict[str, str]:
    """The network as a party of documents (the seller of advertisers' invoices, the buyer of
    self-billed ones)."""
    if _network is None:
        raise RuntimeError("server.invoicing.identity.configure(settings) was not called")
    return dict(_network)


# --- profiles ------------------------------------------------------------------------------------

_COLUMNS = (
    BillingProfile.user,
    BillingProfile.kind,
    BillingProfile.legal_name,
    BillingProfile.address,
    BillingProfile.postcode,
    BillingProfile.city,
    BillingProfile.country,
    BillingProfile.company_number,
    BillingProfile.tax_code,
    BillingProfile.vat_number,
    BillingProfile.vat_regime,
    BillingProfile.created_at,
    BillingProfile.updated_at,
)


def _party(row: Mapping[str, Any]) -> dict[str, str]:
    return {
        "kind": row["kind"],
        "name": row["legal_name"],
        "address": row["address"],
        "postcode": row["postcode"],
        "city": row["city"],
        "country": row["country"],
        "company_number": row["company_number"],
        "tax_code": row["tax_code"],
        "vat_number": row["vat_number"],
        "vat_regime": row["vat_regime"],
        "email": row.get("email") or "",
    }


async def profile_of(user_id: int) -> dict[str, Any] | None:
    """The user's billing profile as stored (PROFILE_FIELDS, user, created_at, updated_at), or None."""
    return await BillingProfile.select(*_COLUMNS).where(BillingProfile.user == user_id).first()


async def party_of(user_id: int) -> dict[str, str] | None:
    """The user as a party of documents (with their e-mail address), or None without a profile."""
    found = await parties_of([user_id])
    return found.get(user_id)


async def parties_of(user_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """The parties of many users at once (one query), by user id; users without a profile are left out."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await BillingProfile.select(*_COLUMNS, BillingProfile.user.email.as_alias("email")).where(
        BillingProfile.user.is_in(ids)
    )
    return {row["user"]: _party(row) for row in rows}


def document_locale(user_language: str, party: Mapping[str, Any] | None) -> str:
    """The language a user's documents are written in: their own choice when affnet writes it,
    else French for a French party, Italian for an Italian one, else English."""
    if user_language in DOCUMENT_LANGUAGES:
        return user_language
    country = (party or {}).get("country", "")
    return {"FR": "fr", "IT": "it"}.get(country, "en")


async def language_of(user_id: int) -> str:
    row = await User.select(User.language).where(User.id == user_id).first()
    return row["language"] if row else ""


def _require_profile_role(user: CurrentUser) -> None:
    if user.role not in PROFILE_ROLES:
        raise Forbidden(_("Only advertisers and publishers have billing details."))


async def save_profile(user: CurrentUser, form: Mapping[str, Any]) -> dict[str, Any]:
    """Check what was typed and store it as the user's one profile (created the first time). Nothing
    is written when anything is refused. Documents issued before keep the details they were issued
    with."""
    _require_profile_role(user)
    values = check_profile(form, role=user.role)
    now = clock.now()
    async with db.transaction():
        before = await profile_of(user.id)
        if (
            before is not None
            and values["kind"] == PartyKind.individual.value
            and before["kind"] == PartyKind.business.value
            and await agreement_in_force(user.id, now) is not None
        ):
            raise Invalid(
                _("Revoke the self-billing agreement before you change to an individual: it is for businesses."),
                field="kind",
            )
        if before is None:
            await BillingProfile.insert(BillingProfile(user=user.id, **values, created_at=now, updated_at=now))
            changed = sorted(k for k, v in values.items() if v)
        else:
            changed = sorted(k for k, v in values.items() if before[k] != v)
            if changed:
                await BillingProfile.update({**values, "updated_at": now}).where(BillingProfile.user == user.id)
        if before is None or changed:
            # The fields' names only: a person's codice fiscale is personal data the audit log need not copy.
            await audit.record(
                "billing_profile.saved",
                actor_id=user.id,
                object_type="user",
                object_id=user.id,
                created=before is None,
                changed=changed,
                country=values["country"],
                kind=values["kind"],
            )
    saved = await profile_of(user.id)
    assert saved is not None
    return saved


# --- self-billing ----------------------------------------------------------------------------------

AGREEMENT_VERSION = "2026-12"


def agreement_text() -> list[str]:
    """The self-billing agreement of AGREEMENT_VERSION, paragraph by paragraph, in the reader's language."""
    return [
        _(
            "You authorise affnet to issue, in your name and on your behalf, the invoices for the commissions it pays "
            "you (self-billing: article 289 I-2 of the French Code général des impôts; article 21 of Italian DPR "
            "633/1972)."
        ),
        _(
            "Each self-billed invoice is numbered in its own series, sent to you when the payment is made, and kept "
            "in your account. You accept each one unless you contest it in writing within 30 days of its issue."
        ),
        _(
            "You remain responsible for your VAT: the VAT regime in your billing details must be right, and you "
            "declare and pay the VAT these invoices show. You do not issue invoices of your own for the same "
            "commissions."
        ),
        _(
            "Either party may end this agreement at any time; it then stops for payments made afterwards. Invoices "
            "already issued stay as they are."
        ),
    ]


_AGREEMENT_COLUMNS = (
    SelfBillingAgreement.id,
    SelfBillingAgreement.publisher,
    SelfBillingAgreement.version,
    SelfBillingAgreement.accepted_at,
    SelfBillingAgreement.revoked_at,
)


def _in_force_at(at: datetime) -> Any:
    return (SelfBillingAgreement.accepted_at <= at) & (
        SelfBillingAgreement.revoked_at.is_null() | (SelfBillingAgreement.revoked_at > at)
    )


async def agreements_in_force(publisher_ids: Iterable[int], at: datetime) -> dict[int, dict[str, Any]]:
    """The agreement in force at `at` of each publisher who had one (one query), by publisher id."""
    ids = sorted(set(publisher_ids))
    if not ids:
        return {}
    rows = (
        await SelfBillingAgreement.select(*_AGREEMENT_COLUMNS)
        .where(SelfBillingAgreement.publisher.is_in(ids))
        .where(_in_force_at(at))
        .order_by(SelfBillingAgreement.id)
    )
    return {row["publisher"]: row for row in rows}


async def agreement_in_force(publisher_id: int, at: datetime) -> dict[str, Any] | None:
    return (await agreements_in_force([publisher_id], at)).get(publisher_id)


async def agreements_of(publisher_id: int) -> list[dict[str, Any]]:
    """Every agreement the publisher accepted, newest first (revoked ones included)."""
    return (
        await SelfBillingAgreement.select(*_AGREEMENT_COLUMNS)
        .where(SelfBillingAgreement.publisher == publisher_id)
        .order_by(SelfBillingAgreement.id, ascending=False)
    )


async def _lock_profile(publisher_id: int) -> dict[str, Any] | None:
    """The publisher's profile, its row locked until the transaction ends (PostgreSQL; SQLite's
    writers queue anyway), so two acceptances at once make one agreement."""
    rows = await BillingProfile.raw(
        'UPDATE billing_profile SET updated_at = updated_at WHERE "user" = {} RETURNING kind', publisher_id
    )
    return rows[0] if rows else None


async def _open_agreement(publisher_id: int) -> dict[str, Any] | None:
    """The publisher's agreement not revoked (at most one: acceptances queue on the profile's row)."""
    return (
        await SelfBillingAgreement.select(*_AGREEMENT_COLUMNS)
        .where(SelfBillingAgreement.publisher == publisher_id, SelfBillingAgreement.revoked_at.is_null())
        .order_by(SelfBillingAgreement.id, ascending=False)
        .first()
    )


async def accept_agreement(publisher_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """The publisher accepts the self-billing agreement of AGREEMENT_VERSION from `now`. Needs a saved
    billing profile of a business (self-billed invoices are a business's invoices); accepting while
    one is in force changes nothing and answers it."""
    async with db.transaction():
        profile = await _lock_profile(publisher_id)
        now = now or clock.now()  # read once the lock is held: acceptances are dated in the order they are kept
        if profile is None:
            raise Invalid(_("Save your billing details before you accept self-billing."), field="billing_profile")
        if profile["kind"] != PartyKind.business.value:
            raise Invalid(
                _("Self-billing is for businesses: your billing details describe an individual."),
                field="billing_profile",
            )
        current = await _open_agreement(publisher_id)
        if current is not None:
            return current
        await SelfBillingAgreement.insert(
            SelfBillingAgreement(publisher=publisher_id, version=AGREEMENT_VERSION, accepted_at=now)
        )
        await audit.record(
            "self_billing.accepted",
            actor_id=publisher_id,
            object_type="user",
            object_id=publisher_id,
            version=AGREEMENT_VERSION,
        )
        accepted = await _open_agreement(publisher_id)
    assert accepted is not None
    return accepted


async def revoke_agreement(publisher_id: int, *, now: datetime | None = None) -> dict[str, Any] | None:
    """End the agreement in force from `now` (the row stays, dated). None when none was in force."""
    async with db.transaction():
        await _lock_profile(publisher_id)
        now = now or clock.now()
        current = await _open_agreement(publisher_id)
        if current is None:
            return None
        revoked_at = max(now, current["accepted_at"])  # never before it began
        await SelfBillingAgreement.update({SelfBillingAgreement.revoked_at: revoked_at}).where(
            SelfBillingAgreement.id == current["id"], SelfBillingAgreement.revoked_at.is_null()
        )
        await audit.record(
            "self_billing.revoked",
            actor_id=publisher_id,
            object_type="user",
            object_id=publisher_id,
            version=current["version"],
        )
    return {**current, "revoked_at": revoked_at}


async def require_profile(user_id: int) -> dict[str, Any]:
    found = await profile_of(user_id)
    if found is None:
        raise NotFound(_("No billing details are saved yet."))
    return found
