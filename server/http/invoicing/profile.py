"""Billing details and self-billing, as pages and as API (server/invoicing/identity.py does the work).

Pages: /account/billing-profile (advertisers and publishers: who their documents name) and
/publisher/self-billing (the agreement, accepted or revoked). API: the same under /api/v1/advertiser
and /api/v1/publisher. There is never an id in the address: each reads and changes the caller's own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.params import JSONBody
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.core import clock
from server.core.errors import Conflict, DomainError, Invalid, NotFound
from server.core.i18n import _l
from server.http.openapi import refusals
from server.http.pages import form_data, render, render_error, see_other
from server.http.web import current_user, requires_role
from server.invoicing import identity
from server.invoicing.tables import PartyKind, VatRegime

PROFILE_PAGE = "accounts/billing_profile.html"
SELF_BILLING_PAGE = "publisher/self_billing.html"
PROFILE_PATH = "/account/billing-profile"
SELF_BILLING_PATH = "/publisher/self-billing"
NOTICES = {  # ?done=… after a change: fixed words, nothing typed is echoed back
    "saved": _l("Your billing details are saved. Documents issued from now on show them."),
    "accepted": _l("Self-billing is on: affnet issues your invoices for the commissions it pays you."),
    "revoked": _l("Self-billing is off: payments from now on come with a statement only."),
    "not_in_force": _l("Self-billing was not on: nothing changed."),
}


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted the role


def _notice(request: Request) -> str:
    found = NOTICES.get(request.query_params.get("done", ""))
    return str(found) if found else ""


# --- pages ---------------------------------------------------------------------------------------


def _form_of(profile: dict[str, Any] | None) -> dict[str, Any]:
    if profile is None:
        return {"kind": PartyKind.individual.value, "vat_regime": VatRegime.standard.value}
    return {name: profile[name] for name in identity.PROFILE_FIELDS}


def _profile_context(user: CurrentUser) -> dict[str, Any]:
    return {
        "countries": identity.country_choices(),
        "with_regime": user.role is Role.publisher,
    }


class BillingProfilePages(Controller):
    path = PROFILE_PATH
    guards = [requires_role(*identity.PROFILE_ROLES)]
    include_in_schema = False

    @get("")
    async def show(self, request: Request) -> Template:
        user = _user(request)
        profile = await identity.profile_of(user.id)
        return render(
            PROFILE_PAGE,
            form=_form_of(profile),
            saved=profile is not None,
            notice=_notice(request),
            **_profile_context(user),
        )

    @post("")
    async def save(self, request: Request) -> Template | Redirect:
        user = _user(request)
        form = await form_data(request)
        try:
            await identity.save_profile(user, form)
        except DomainError as exc:
            saved = await identity.profile_of(user.id) is not None
            return render_error(PROFILE_PAGE, exc, form, saved=saved, **_profile_context(user))
        return see_other(f"{PROFILE_PATH}?done=saved")


async def _self_billing_context(user: CurrentUser) -> dict[str, Any]:
    profile = await identity.profile_of(user.id)
    return {
        "agreement_text": identity.agreement_text(),
        "version": identity.AGREEMENT_VERSION,
        "current": await identity.agreement_in_force(user.id, clock.now()),
        "history": await identity.agreements_of(user.id),
        "profile": profile,
        "is_business": profile is not None and profile["kind"] == PartyKind.business.value,
    }


class SelfBillingPages(Controller):
    path = SELF_BILLING_PATH
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def show(self, request: Request) -> Template:
        user = _user(request)
        return render(SELF_BILLING_PAGE, notice=_notice(request), **await _self_billing_context(user))

    @post("/accept")
    async def accept(self, request: Request) -> Template | Redirect:
        user = _user(request)
        try:
            await identity.accept_agreement(user.id)
        except DomainError as exc:
            return render_error(SELF_BILLING_PAGE, exc, {}, **await _self_billing_context(user))
        return see_other(f"{SELF_BILLING_PATH}?done=accepted")

    @post("/revoke")
    async def revoke(self, request: Request) -> Redirect:
        revoked = await identity.revoke_agreement(_user(request).id)
        return see_other(f"{SELF_BILLING_PATH}?done={'revoked' if revoked else 'not_in_force'}")


# --- API -------------------------------------------------------------------------------------------


class BillingProfileIn(msgspec.Struct):
    """Who your documents name. Ids are checked (format and check digits) for your country: FR needs a
    SIRET or SIREN (`company_number`) for a business, TVA optional (`vat_number`, FR…); IT needs a
    partita IVA (`vat_number`, 11 digits, IT optional) for a business and a codice fiscale (`tax_code`)
    for a person; elsewhere in the EU `vat_number` is optional, with its country's prefix. Ids that do
    not apply to the country are ignored."""

    kind: PartyKind
    legal_name: Annotated[str, msgspec.Meta(max_length=200)]
    address: Annotated[str, msgspec.Meta(max_length=500)]  # street lines, newline-separated
    postcode: Annotated[str, msgspec.Meta(max_length=16)]
    city: Annotated[str, msgspec.Meta(max_length=100)]
    country: Annotated[str, msgspec.Meta(min_length=2, max_length=2)]  # ISO 3166-1 alpha-2
    company_number: Annotated[str, msgspec.Meta(max_length=40)] = ""
    tax_code: Annotated[str, msgspec.Meta(max_length=40)] = ""
    vat_number: Annotated[str, msgspec.Meta(max_length=40)] = ""
    # Publishers' only (advertisers' is always standard): franchise = FR franchise en base (art. 293 B
    # CGI) or IT regime forfettario, no VAT on their self-billed invoices.
    vat_regime: VatRegime = VatRegime.standard


class BillingProfileOut(msgspec.Struct):
    kind: PartyKind
    legal_name: str
    address: str
    postcode: str
    city: str
    country: str
    company_number: str  # FR SIRET or SIREN, compact; "" elsewhere
    tax_code: str  # IT codice fiscale; "" elsewhere
    vat_number: str  # with its country's prefix (FR…, IT…, EL… for Greece); "" when none
    vat_regime: VatRegime
    created_at: datetime
    updated_at: datetime


class SelfBillingIn(msgspec.Struct):
    accept: bool  # true: accept the agreement (no change when already in force); false: revoke it


class SelfBillingOut(msgspec.Struct):
    in_force: bool
    version: str  # the wording in force (or offered, when none is)
    accepted_at: datetime | None  # of the agreement in force
    text: list[str]  # the agreement's wording, paragraph by paragraph, in the key owner's language


def _profile_out(row: dict[str, Any]) -> BillingProfileOut:
    return BillingProfileOut(
        **{name: row[name] for name in identity.PROFILE_FIELDS},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _get_profile(user: CurrentUser) -> BillingProfileOut:
    return _profile_out(await identity.require_profile(user.id))


async def _put_profile(user: CurrentUser, data: BillingProfileIn) -> BillingProfileOut:
    return _profile_out(await identity.save_profile(user, msgspec.structs.asdict(data)))


_REUSED_KEY = (Conflict, "The Idempotency-Key was sent before with another request, or its request is still running.")
_NO_PROFILE = refusals((NotFound, "No billing details are saved yet: PUT them first."))
_BAD_PROFILE = refusals(
    (Invalid, "A value or id is refused: `error.field` names it, `error.message` names the id and the country."),
    _REUSED_KEY,
)
_GET_SUMMARY = "Your billing details: the legal identity your invoices and statements name"
_PUT_SUMMARY = "Save your billing details (created the first time); documents issued afterwards use them"


class AdvertiserBillingProfileApi(Controller):
    path = "/api/v1/advertiser/billing-profile"
    guards = [requires_role(Role.advertiser)]
    tags = ["advertiser: money"]
    security = [{"apiKey": []}]

    @get("", summary=_GET_SUMMARY, responses=_NO_PROFILE)
    async def billing_profile(self, request: Request) -> BillingProfileOut:
        return await _get_profile(_user(request))

    @put("", summary=_PUT_SUMMARY, responses=_BAD_PROFILE)
    async def save_billing_profile(self, request: Request, data: JSONBody[BillingProfileIn]) -> BillingProfileOut:
        """As the Billing details page. `vat_regime` is ignored: an advertiser's is standard."""
        return await _put_profile(_user(request), data)


class PublisherBillingProfileApi(Controller):
    path = "/api/v1/publisher/billing-profile"
    guards = [requires_role(Role.publisher)]
    tags = ["publisher: billing"]
    security = [{"apiKey": []}]

    @get("", summary=_GET_SUMMARY, responses=_NO_PROFILE)
    async def billing_profile(self, request: Request) -> BillingProfileOut:
        return await _get_profile(_user(request))

    @put("", summary=_PUT_SUMMARY, responses=_BAD_PROFILE)
    async def save_billing_profile(self, request: Request, data: JSONBody[BillingProfileIn]) -> BillingProfileOut:
        """As the Billing details page. `vat_regime` counts for a business only."""
        return await _put_profile(_user(request), data)


async def _self_billing(user: CurrentUser) -> SelfBillingOut:
    current = await identity.agreement_in_force(user.id, clock.now())
    return SelfBillingOut(
        in_force=current is not None,
        version=current["version"] if current else identity.AGREEMENT_VERSION,
        accepted_at=current["accepted_at"] if current else None,
        text=identity.agreement_text(),
    )


class PublisherSelfBillingApi(Controller):
    path = "/api/v1/publisher/self-billing"
    guards = [requires_role(Role.publisher)]
    tags = ["publisher: billing"]
    security = [{"apiKey": []}]

    @get("", summary="Whether affnet issues your invoices for its payments to you (self-billing), and its wording")
    async def self_billing(self, request: Request) -> SelfBillingOut:
        return await _self_billing(_user(request))

    @post(
        "",
        status_code=200,
        summary="Accept or revoke the self-billing agreement, as the Self-billing page's buttons",
        responses=refusals(
            (Invalid, "Accepting needs saved billing details of a business (`error.field`: billing_profile)."),
            _REUSED_KEY,
        ),
    )
    async def set_self_billing(self, request: Request, data: JSONBody[SelfBillingIn]) -> SelfBillingOut:
        """`{"accept": true}` accepts the agreement from now (nothing changes when it is already in
        force); `{"accept": false}` revokes it from now. Each acceptance is kept, dated."""
        user = _user(request)
        if data.accept:
            await identity.accept_agreement(user.id)
        else:
            await identity.revoke_agreement(user.id)
        return await _self_billing(user)


PROFILE_ROUTES = [
    BillingProfilePages,
    SelfBillingPages,
    AdvertiserBillingProfileApi,
    PublisherBillingProfileApi,
    PublisherSelfBillingApi,
]
