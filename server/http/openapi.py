"""The OpenAPI document tells the truth about errors: one error body (web.ErrorBody, sent by
web.error_response) for every 4xx an operation can answer.

The statuses every route shares are derived from what the route declares, so a new route is
documented without anyone remembering to: a role guard answers 401 (no key, or a bad one) and
403 (another role's key); parameters Litestar validates answer 400; a path id answers 404. What a
route adds of its own (a domain refusal) it declares on its decorator with `refusals(...)`,
naming the DomainError classes it raises, so the status comes from the class that sends it."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Parameter, Schema

from server.accounts.tables import Role
from server.core.errors import DomainError
from server.http.apikit import SAFE_METHODS
from server.http.web import API_PREFIX, ROLE_LABELS, ErrorBody

_DESCRIPTIONS = {
    400: "The request could not be read: `error.message` says which parameter or field and what it must be.",
    401: "No API key, or one that is unknown or revoked: send 'Authorization: Bearer <key>'.",
    404: "Nothing at this address, or nothing this key's account may see.",
    409: "Refused in the state the object is in now.",
    422: "A value was read but refused: `error.field` names it and `error.message` says why.",
    429: "Too many requests: wait for the seconds in `Retry-After`.",
}


def error_spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


def refusals(*errors: type[DomainError] | tuple[type[DomainError], str]) -> dict[int, ResponseSpec]:
    """`responses=` for a route's own refusals: each DomainError class (or (class, why)) it raises."""
    specs: dict[int, ResponseSpec] = {}
    for item in errors:
        error, why = item if isinstance(item, tuple) else (item, _DESCRIPTIONS.get(item.status_code, ""))
        status = error.status_code
        previous = specs.get(status)
        specs[status] = error_spec(f"{previous.description} {why}".strip() if previous else why)
    return specs


def _roles(handler: HTTPRouteHandler) -> frozenset[Role] | None:
    """Roles every role guard of the handler admits; None when it has no role guard (public)."""
    admitted: frozenset[Role] | None = None
    for guard in handler.resolve_guards():
        roles = getattr(getattr(guard, "func", guard), "affnet_roles", None)
        if roles is not None:
            admitted = roles if admitted is None else admitted & roles
    return admitted


def _validates_input(handler: HTTPRouteHandler) -> bool:
    """Whether Litestar parses a parameter or body for this handler (and may answer 400 itself)."""
    names = set(handler.parsed_fn_signature.parameters) - {"self", "request", "state", "scope"}
    return bool(names)


def shared_responses(handler: HTTPRouteHandler, path_has_ids: bool) -> dict[int, ResponseSpec]:
    specs: dict[int, ResponseSpec] = {}
    if _validates_input(handler):
        specs[400] = error_spec(_DESCRIPTIONS[400])
    roles = _roles(handler)
    if roles is not None:
        specs[401] = error_spec(_DESCRIPTIONS[401])
        wanted = " or ".join(ROLE_LABELS[r] for r in Role if r in roles)
        specs[403] = error_spec(f"The key belongs to an account that is not for {wanted}.")
    if path_has_ids:
        specs[404] = error_spec(_DESCRIPTIONS[404])
    if roles is not None and any(p.startswith(API_PREFIX) for p in handler.paths):
        # Every API key's request (server/http/apikit.py): its rate limit, and for a change its
        # scope and the Idempotency-Key rules.
        specs[429] = error_spec(f"{_DESCRIPTIONS[429]} Each API key has its own limit per minute.")
        if not handler.http_methods <= SAFE_METHODS:
            specs[400] = error_spec(
                f"{_DESCRIPTIONS[400]} Or an Idempotency-Key that is not 1-255 printable characters."
            )
            specs[403] = error_spec(f"{specs[403].description} Or the key is read-only (code `read_only_key`).")
            specs[409] = error_spec(
                "The Idempotency-Key was used for another request (`idempotency_key_reused`), or its first "
                "request is still running (`idempotency_key_in_use`)."
            )
    return specs


def document_errors(app: Litestar) -> None:
    """Give every documented operation the error responses it can send, as ErrorBody. What a
    route declares itself wins (the conversions API documents its own result body, for one)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", None) or []:
            if not isinstance(handler, HTTPRouteHandler) or not handler.resolve_include_in_schema():
                continue
            own: dict[int, Any] = dict(handler.responses or {})
            handler.responses = {**shared_responses(handler, bool(route.path_parameters)), **own}


IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key",
    param_in=ParamType.HEADER,
    required=False,
    schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=255, pattern=r"^[ -~]{1,255}$"),
    description="Send the same key to retry this request safely: for 24 hours the same key with the same "
    "request is answered as the first time (with `Idempotent-Replayed: true`), without running again.",
)


def document_idempotency(app: Litestar) -> None:
    """Name the Idempotency-Key header on every API operation that changes something."""
    openapi = app.openapi_schema
    for path, item in (openapi.paths or {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for method in ("post", "put", "patch", "delete"):
            operation = getattr(item, method, None)
            if operation is None or not operation.security:
                continue
            operation.parameters = [*(operation.parameters or []), IDEMPOTENCY_KEY]
