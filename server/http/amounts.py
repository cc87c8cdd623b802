"""GET /amount/preview: the server's own reading of an amount as typed, for the "= 12,50 €" shown
beside every amount field (static/amounts.js). The page asks the same parser that will store the
amount, in the same request locale, so the echo cannot disagree with what is saved."""

from __future__ import annotations

from litestar import Response, get
from litestar.params import FromQuery

from server.accounts.tables import Role
from server.core import locale as locales
from server.core import money
from server.core.errors import Invalid
from server.core.i18n import _
from server.http.web import requires_role

MAX_TEXT = 100


@get("/amount/preview", guards=[requires_role(*Role)], include_in_schema=False)
async def amount_preview(text: FromQuery[str] = "", currency: FromQuery[str] = "") -> Response:
    """200 {minor, currency, display, locale} for an amount read; 422 {error: {code, message}} for
    one that would be refused on saving; 200 with nothing read when nothing was typed. Changes nothing."""
    if not text.strip():
        return Response(
            {"minor": None, "currency": currency[:8], "display": "", "locale": locales.tag(locales.current())},
            headers={"Cache-Control": "no-store"},
        )
    try:
        code = money.currency(currency[:8])
        minor = money.parse_amount(text[:MAX_TEXT], code, field="amount", label=_("The amount"))
    except Invalid as exc:
        return Response(
            {"error": {"code": exc.code, "message": exc.message}},
            status_code=422,
            headers={"Cache-Control": "no-store"},
        )
    return Response(
        {
            "minor": minor,
            "currency": code,
            "display": money.display_local(minor, code),
            "locale": locales.tag(locales.current()),
        },
        headers={"Cache-Control": "no-store"},
    )
