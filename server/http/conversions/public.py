"""Where advertisers report conversions without a session: the server-to-server postback
(GET or POST /postback) and the image pixel (GET /px/{public_key}.gif). Both are public routes
that authenticate themselves: the postback by the campaign's token or an advertiser API key,
the pixel by nothing more than its campaign's public key and a signed click id."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, route
from litestar._parsers import parse_query_string
from litestar.enums import MediaType, RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.types import Scope, Send

from server.accounts import service as accounts
from server.accounts.tables import Role
from server.conversions import service as conversions
from server.conversions.tables import ConversionSource
from server.core.errors import DomainError, ServiceUnavailable, Unauthorized
from server.http.conversions.api import REFUSED, ConversionResult, intake, result_of
from server.http.web import (
    PUBLIC,
    ErrorBody,
    ErrorDetail,
    FastPath,
    SecurityHeadersMiddleware,
    header,
    respond,
)

PARAMS = ("click_id", "goal", "txn_id", "amount", "currency", "token")
# The smallest transparent GIF: 1×1, one transparent colour.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"cache-control": "no-store, private"}

# The postback's parameters, declared for its OpenAPI document: _params reads them itself, from the
# query or a form body, so that one parser serves both.
ClickId = Annotated[str | None, QueryParameter(description="The click id your landing page received")]
TxnId = Annotated[str | None, QueryParameter(description="Your order id: a txn_id reported twice counts once")]
Goal = Annotated[str | None, QueryParameter(description="The goal's key (default: the campaign's first goal)")]
Amount = Annotated[str | None, QueryParameter(description="The sale amount in minor units (RevShare goals)")]
Currency = Annotated[str | None, QueryParameter(description="ISO 4217 code (default: the campaign's)")]
Token = Annotated[str | None, QueryParameter(description="The campaign's postback token (or send an API key)")]


def _params(query: Any, form: Any = None) -> dict[str, str]:
    """The intake parameters from the query string, overridden by a form body; the first value of each."""
    values: dict[str, str] = {}
    for source in (query, form):
        if source is None:
            continue
        for name in PARAMS:
            value = source.get(name)
            if isinstance(value, str):
                values[name] = value
    return values


async def _advertiser_from_bearer(auth: str | None) -> int | None:
    """The advertiser behind an `Authorization: Bearer` API key, None without one; refused when invalid."""
    if not auth:
        return None
    scheme, _, credential = auth.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("Send your API key as 'Authorization: Bearer <key>'.", code="bad_token")
    try:
        user = await accounts.authenticate_api_key(credential)
    except Unauthorized as exc:
        raise Unauthorized(exc.message, code="bad_token") from None
    if user.role is not Role.advertiser:
        raise Unauthorized("Only an advertiser's API key can report conversions.", code="bad_token")
    return user.id


@route(
    "/postback",
    http_method=["GET", "POST"],
    opt=PUBLIC,
    tags=["conversions"],
    status_code=200,
    responses={
        status: ResponseSpec(
            data_container=ConversionResult, generate_examples=False, description=f"Refused: {why}; `code` says why."
        )
        for status, why in REFUSED.items()
    },
    summary="Report a conversion server to server",
    description="Parameters click_id, txn_id, goal, amount (sale amount in minor units), currency and token "
    "(the campaign's postback token), in the query string or a form body; or "
    "'Authorization: Bearer <advertiser API key>' instead of token.",
)
async def postback(
    request: Request,
    click_id: ClickId = None,
    txn_id: TxnId = None,
    goal: Goal = None,
    amount: Amount = None,
    currency: Currency = None,
    token: Token = None,
) -> Response[ConversionResult]:
    form = None
    if request.method == "POST" and request.content_type[0] in (
        RequestEncodingType.URL_ENCODED.value,
        RequestEncodingType.MULTI_PART.value,
    ):
        form = await request.form()
    params = _params(request.query_params, form)
    result = await _postback(request.app.state, params, request.headers.get("authorization"))
    return Response(result, status_code=result.http_status, media_type=MediaType.JSON, headers=NO_STORE)


async def _postback(state: Any, params: dict[str, str], authorization: str | None) -> ConversionResult:
    """The postback's answer, for the route above and its fast path below alike."""
    try:
        advertiser_id = await _advertiser_from_bearer(authorization)
    except Unauthorized as exc:
        return result_of(exc)
    credentials = (
        conversions.Credentials(advertiser_id=advertiser_id)
        if advertiser_id is not None
        else conversions.Credentials(token=params.get("token", ""))
    )
    return await intake(state, params, credentials, ConversionSource.postback)


@get("/px/{pixel:str}", opt=PUBLIC, include_in_schema=False)
async def conversion_pixel(request: Request, pixel: FromPath[str]) -> Response[bytes]:
    """/px/{public_key}.gif: always a transparent GIF; the status and X-Affnet-Result say what happened."""
    public_key = pixel.removesuffix(".gif") if pixel.endswith(".gif") else ""
    result = await intake(
        request.app.state,
        _params(request.query_params),
        conversions.Credentials(public_key=public_key),
        ConversionSource.pixel,
    )
    return Response(
        PIXEL_GIF,
        status_code=result.http_status,
        media_type="image/gif",
        headers={**NO_STORE, "x-affnet-result": result.code or result.status},
    )


# --- the fast path ---------------------------------------------------------------------------------------

_JSON = (b"content-type", b"application/json")
# What SecurityHeadersMiddleware adds to every answer Litestar gives.
_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", SecurityHeadersMiddleware.CSP.encode()),
]
_ANSWER = [_JSON, *((k.encode(), v.encode()) for k, v in NO_STORE.items()), *_SECURITY]
_NUL = DomainError("The address contains a NUL character (%00), which nothing here accepts.")  # as check_address


def _error(exc: DomainError) -> bytes:
    return msgspec.json.encode(ErrorBody(ErrorDetail(code=exc.code, message=exc.message, field=exc.field)))


class PostbackFastPath(FastPath):
    """GET /postback straight to the intake (server/http/web.py: FastPaths), before Litestar's router
    and middleware, which cost a postback more than its own work. The answers are the route's, byte
    for byte (tests/conversions/test_postback_batches.py compares them); POST (a form body) and
    every other method still go to the route, which also declares the postback in the OpenAPI
    document."""

    prefix = "/postback"
    methods = frozenset({"GET"})
    log = logging.getLogger("affnet.conversions")
    what = "postback"

    async def handle(self, state: Any, scope: Scope, send: Send) -> None:
        query_string: bytes = scope["query_string"]
        if b"%00" in query_string or b"\x00" in query_string:
            await respond(send, _NUL.status_code, [_JSON, *_SECURITY], _error(_NUL))
            return
        first: dict[str, str] = {}
        for name, value in parse_query_string(query_string):
            first.setdefault(name, value)  # the first value of each name, as the route's MultiDict.get
        result = await _postback(state, _params(first), header(scope, b"authorization"))
        await respond(send, result.http_status, _ANSWER, msgspec.json.encode(result))

    async def fail(self, send: Send) -> None:
        # The answer of the app's handler of unexpected errors (server/app.py), for a JSON path.
        await respond(
            send,
            500,
            [_JSON, *_SECURITY],
            _error(DomainError("Something went wrong on our side. Please try again.", code="internal_error")),
        )

    async def unavailable(self, send: Send, exc: ServiceUnavailable) -> None:
        await respond(
            send, exc.status_code, [_JSON, (b"retry-after", str(exc.retry_after).encode()), *_SECURITY], _error(exc)
        )
