"""JSON API of conversions under /api/v1 (advertiser API keys), and the result every intake
endpoint answers with (the postback's JSON, each item of the API, the pixel's header)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import JSONBody, KwargDefinition

from server.accounts.tables import Role
from server.conversions import service as conversions
from server.conversions.tables import ConversionSource
from server.core.errors import DomainError
from server.core.i18n import _
from server.http.web import ErrorBody, current_user, requires_role

MAX_BATCH = 500


class Payout(msgspec.Struct):
    """What the conversion is worth, in minor units of `currency`: price = publisher + network."""

    currency: str
    price_minor: int  # what the advertiser pays
    publisher_minor: int  # what the publisher earns
    network_minor: int  # the network's margin
    sale_amount_minor: int | None = None  # the reported sale, any goal (RevShare is priced by it); None: none sent


class ConversionResult(msgspec.Struct):
    status: Literal["accepted", "duplicate", "refused"]
    duplicate: bool
    http_status: int
    message: str
    code: str | None = None  # why it was refused: a stable machine-readable reason
    field: str | None = None
    conversion_id: int | None = None
    conversion_status: str | None = None  # "pending" until approved or rejected
    txn_id: str | None = None
    goal: str | None = None
    payout: Payout | None = None
    hold_until: datetime | None = None


def result_of(outcome: conversions.Recorded | DomainError) -> ConversionResult:
    if isinstance(outcome, DomainError):
        return ConversionResult(
            status="refused",
            duplicate=False,
            http_status=outcome.status_code,
            message=outcome.message,
            code=outcome.code,
            field=outcome.field,
        )
    row = outcome.conversion
    return ConversionResult(
        status="duplicate" if outcome.duplicate else "accepted",
        duplicate=outcome.duplicate,
        http_status=200,
        message=(
            _("This txn_id was reported before: this is the first report's conversion, counted once.")
            if outcome.duplicate
            else _("Conversion recorded; it stays pending until its hold period ends.")
        ),
        conversion_id=row["id"],
        conversion_status=row["status"],
        txn_id=row["txn_id"],
        goal=outcome.goal,
        payout=Payout(
            currency=row["currency"],
            price_minor=row["advertiser_amount_minor"],
            publisher_minor=row["publisher_amount_minor"],
            network_minor=row["network_amount_minor"],
            sale_amount_minor=row["sale_amount_minor"],
        ),
        hold_until=row["hold_until"],
    )


async def intake(
    state: Any, params: Any, credentials: conversions.Credentials, source: ConversionSource
) -> ConversionResult:
    """One report through the service, its refusal included in the result rather than raised.
    `state` is the app's: campaign terms come from the server's cache, the click-id key from the
    redirector, and the row is stored through the server's group commit."""
    report = params if isinstance(params, conversions.Report) else conversions.Report.from_params(params)
    try:
        outcome: conversions.Recorded | DomainError = await conversions.record_conversion(
            state.redirector.token_key,
            report,
            credentials,
            source,
            terms_of=state.terms_cache.get,
            writer=state.conversion_writer,
            rule_state=state.conversion_rules,
        )
    except DomainError as exc:
        outcome = exc
    return result_of(outcome)


class ConversionIn(msgspec.Struct):
    """One conversion. `amount` is the sale amount in minor units (1250 for 12.50), needed by
    RevShare goals; `goal` defaults to the campaign's first conversion goal; `currency` to the
    campaign's."""

    click_id: str | None = None
    txn_id: str | None = None
    goal: str | None = None
    # A number or a string; any number, so that 12.5 gets the service's "whole minor units" answer
    # (422 bad_amount) rather than a type error. anyOf, not Litestar's oneOf: 1250 is both an
    # integer and a number, which oneOf would call invalid.
    amount: Annotated[
        int | float | str | None,
        KwargDefinition(
            schema_extra={"one_of": None, "type": [OpenAPIType.NUMBER, OpenAPIType.STRING, OpenAPIType.NULL]}
        ),
    ] = None
    currency: str | None = None

    def report(self) -> conversions.Report:
        return conversions.Report.from_params(msgspec.structs.asdict(self))


class ConversionRequest(ConversionIn):
    """Either one conversion (the fields at the top level) or several under `conversions`."""

    conversions: Annotated[list[ConversionIn], msgspec.Meta(max_length=MAX_BATCH)] | None = None


class ConversionResults(msgspec.Struct):
    results: list[ConversionResult]
    accepted: int
    duplicates: int
    refused: int


# A single conversion refused answers with its result's status; `results[0].code` is the stable
# reason (server/conversions/service.py defines them) and `results[0].message` what to do.
REFUSED = {
    401: "the campaign token or API key does not cover this conversion",
    404: "no such click or campaign",
    409: "the campaign takes no more conversions (ended, or a cap reached)",
    422: "a value was refused (goal, amount, currency, txn_id, or timing)",
}
_REFUSALS = {
    status: ResponseSpec(
        data_container=ConversionResults,
        generate_examples=False,
        description=f"A single conversion refused: {why}; `results[0].code` says why.",
    )
    for status, why in REFUSED.items()
}
# A reused Idempotency-Key (server/http/apikit.py) answers before any conversion is read.
_REFUSALS[409] = ResponseSpec(
    data_container=Union[ConversionResults, ErrorBody],  # noqa: UP007
    generate_examples=False,
    description=f"{_REFUSALS[409].description} Or an Idempotency-Key used for another request, or whose first "
    "request still runs: an ErrorBody.",
)
# Without an API key (or with one of another role) the guard answers before any conversion is read.
_REFUSALS[401] = ResponseSpec(
    data_container=Union[ConversionResults, ErrorBody],  # noqa: UP007
    generate_examples=False,
    description=f"{_REFUSALS[401].description} Or no API key, or one that is unknown or revoked: an ErrorBody.",
)


class ConversionsApi(Controller):
    path = "/api/v1"
    guards = [requires_role(Role.advertiser)]
    tags = ["conversions"]
    security = [{"apiKey": []}]

    @post(
        "/conversions",
        status_code=200,
        responses=_REFUSALS,
        summary="Report conversions (one, or up to 500 under 'conversions')",
        description="Each conversion is attributed to the publisher of its click and created pending. "
        "A txn_id reported before answers with the first conversion (status 'duplicate'). "
        "A single conversion answers with its own HTTP status (200, 401, 404, 409 or 422); "
        "a list answers 200 with a result per item, in order.",
    )
    async def report(self, request: Request, data: JSONBody[ConversionRequest]) -> Response[ConversionResults]:
        user = current_user(request)
        assert user is not None
        credentials = conversions.Credentials(advertiser_id=user.id)
        items = data.conversions if data.conversions is not None else [data]
        state = request.app.state
        results = [await intake(state, item.report(), credentials, ConversionSource.api) for item in items]
        body = ConversionResults(
            results=results,
            accepted=sum(r.status == "accepted" for r in results),
            duplicates=sum(r.duplicate for r in results),
            refused=sum(r.status == "refused" for r in results),
        )
        status = results[0].http_status if data.conversions is None else 200
        return Response(body, status_code=status)
