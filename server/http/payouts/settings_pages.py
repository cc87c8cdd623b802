"""Finance's payout settings page, /finance/payouts/settings: the schedule (weekly or monthly, the cut-off,
the large-change flag), the network's minimum payout per currency, and one publisher's own terms (a
minimum in one currency, a hold with its reason). Finance only.

Forms are parsed and checked here, completely, before anything is saved: a bad value answers 400 with
the form as it was typed and a message saying what to fix, and changes nothing. Saving goes through
server/payouts/service.py (save_schedule, set_minimum, set_publisher_terms), which audits every change;
the next preparation reads what was saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from babel.dates import format_date
from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role, User
from server.core import clock, i18n, money
from server.core import locale as locales
from server.core.errors import DomainError
from server.core.i18n import _, _l
from server.http.pages import form_data, render, see_other
from server.http.web import current_user, requires_role
from server.ledger.tables import AccountKind, LedgerAccount
from server.payouts import service as payouts
from server.payouts.service import ScheduleTerms
from server.payouts.tables import PayoutMinimum, PublisherPayoutTerms, Schedule

PAGE = "finance/payout_settings.html"
PATH = "/finance/payouts/settings"
WEEKDAYS = (_l("Monday"), _l("Tuesday"), _l("Wednesday"), _l("Thursday"), _l("Friday"), _l("Saturday"), _l("Sunday"))
MAX_LARGE_CHANGE_PERCENT = 1_000
HOLD_REASON_MAX = 500
SAVED = {  # ?saved=… after a save: fixed words, nothing typed is echoed back
    "schedule": _l("Schedule saved. The next preparation uses it."),
    "minimum": _l("Minimum payout saved."),
    "publisher": _l("Publisher's payout terms saved."),
}


class BadSetting(DomainError):
    """A value finance typed that cannot be saved (the page answers 400, nothing changed)."""

    status_code = 400
    code = "bad_setting"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted finance


# --- parsing what was typed -----------------------------------------------------------------------


def _whole(form: dict[str, Any], name: str, label: str, low: int, high: int) -> int:
    raw = (form.get(name) or "").strip()
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise BadSetting(
            _("%(label)s must be a whole number from %(low)s to %(high)s.", label=label, low=low, high=high), field=name
        )
    return int(raw)


def parse_schedule(form: dict[str, Any]) -> ScheduleTerms:
    raw = (form.get("schedule") or "").strip()
    if raw not in Schedule.__members__:
        raise BadSetting(_("Choose a weekly or a monthly schedule."), field="schedule")
    return ScheduleTerms(
        schedule=Schedule(raw),
        cutoff_weekday=_whole(form, "cutoff_weekday", _("The weekday of the cut-off"), 0, 6),
        cutoff_day=_whole(form, "cutoff_day", _("The day of the month of the cut-off"), 1, 28),
        cutoff_hour=_whole(form, "cutoff_hour", _("The hour of the cut-off (UTC)"), 0, 23),
        large_change_percent=_whole(
            form, "large_change_percent", _("The large-change threshold (%)"), 1, MAX_LARGE_CHANGE_PERCENT
        ),
    )


def _currency(form: dict[str, Any], name: str) -> str:
    try:
        return money.currency(form.get(name) or "", field=name)
    except DomainError as exc:
        raise BadSetting(exc.message, field=name) from None


def _amount(form: dict[str, Any], name: str, currency: str, label: str) -> int:
    try:
        return money.parse_amount(form.get(name) or "", currency, field=name, label=label, allow_zero=False)
    except DomainError as exc:
        raise BadSetting(exc.message, field=name) from None


def parse_minimum(form: dict[str, Any]) -> tuple[str, int]:
    currency = _currency(form, "currency")
    if not (form.get("minimum") or "").strip():
        raise BadSetting(_("Enter the minimum payout, such as 50.00."), field="minimum")
    return currency, _amount(form, "minimum", currency, _("The minimum payout"))


async def parse_publisher_terms(form: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of set_publisher_terms, from the publisher form."""
    email = (form.get("email") or "").strip().lower()
    if not email:
        raise BadSetting(_("Enter the publisher's email address."), field="email")
    publisher_id = await publisher_by_email(email)
    if publisher_id is None:
        raise BadSetting(_("No publisher has the email address %(email)s.", email=email[:254]), field="email")
    minimum_minor, minimum_currency = None, ""
    if (form.get("publisher_minimum") or "").strip():
        minimum_currency = _currency(form, "publisher_currency")
        minimum_minor = _amount(form, "publisher_minimum", minimum_currency, _("The publisher's minimum payout"))
    on_hold = form.get("on_hold") == "on"
    reason = (form.get("hold_reason") or "").strip()
    if on_hold and not reason:
        raise BadSetting(_("Say why the publisher's payouts are on hold."), field="hold_reason")
    if len(reason) > HOLD_REASON_MAX:
        raise BadSetting(_("The reason is limited to %(num)s characters.", num=HOLD_REASON_MAX), field="hold_reason")
    return {
        "publisher_id": publisher_id,
        "minimum_minor": minimum_minor,
        "minimum_currency": minimum_currency,
        "on_hold": on_hold,
        "hold_reason": reason if on_hold else "",
    }


# --- what the page reads --------------------------------------------------------------------------


async def publisher_by_email(email: str) -> int | None:
    row = (
        await User.select(User.id).where(User.email == email.strip().lower(), User.role == Role.publisher.value).first()
    )
    return row["id"] if row else None


async def minimums() -> list[dict[str, Any]]:
    """Every currency with a minimum set or with publisher money, and the minimum that applies."""
    rows = {
        r["currency"]: {**r, "is_default": False}
        for r in await PayoutMinimum.select(
            PayoutMinimum.currency,
            PayoutMinimum.minimum_minor,
            PayoutMinimum.updated_at,
            PayoutMinimum.updated_by.email.as_alias("updated_by_email"),
        )
    }
    in_use = (
        await LedgerAccount.select(LedgerAccount.currency)
        .where(LedgerAccount.kind == AccountKind.publisher_available.value)
        .distinct()
        .output(as_list=True)
    )
    for currency in in_use:
        rows.setdefault(
            currency,
            {
                "currency": currency,
                "minimum_minor": payouts.DEFAULT_MINIMUM_MINOR,
                "updated_at": None,
                "updated_by_email": None,
                "is_default": True,
            },
        )
    return [rows[c] for c in sorted(rows)]


async def publisher_terms(limit: int = 500) -> list[dict[str, Any]]:
    """Publishers with terms of their own (a minimum or a hold), by email."""
    return (
        await PublisherPayoutTerms.select(
            PublisherPayoutTerms.all_columns(),
            PublisherPayoutTerms.publisher.email.as_alias("email"),
            PublisherPayoutTerms.updated_by.email.as_alias("updated_by_email"),
        )
        .where(PublisherPayoutTerms.minimum_minor.is_not_null() | PublisherPayoutTerms.on_hold.eq(True))
        .order_by(PublisherPayoutTerms.publisher.email)
        .limit(limit)
    )


async def _form_defaults(edit_email: str) -> dict[str, str]:
    """The forms as they stand: the schedule saved, and a publisher's terms when one is being edited."""
    terms = await payouts.schedule_terms()
    values = {
        "schedule": terms.schedule.value,
        "cutoff_weekday": str(terms.cutoff_weekday),
        "cutoff_day": str(terms.cutoff_day),
        "cutoff_hour": str(terms.cutoff_hour),
        "large_change_percent": str(terms.large_change_percent),
    }
    email = edit_email.strip().lower()[:254]
    publisher_id = await publisher_by_email(email) if email else None
    if publisher_id is not None:
        values["email"] = email
        row = await PublisherPayoutTerms.select().where(PublisherPayoutTerms.publisher == publisher_id).first()
        if row:
            if row["minimum_minor"] is not None:
                values["publisher_minimum"] = money.form_text(row["minimum_minor"], row["minimum_currency"])
                values["publisher_currency"] = row["minimum_currency"]
            if row["on_hold"]:
                values["on_hold"] = "on"
                values["hold_reason"] = row["hold_reason"]
    return values


async def _page(
    *, status_code: int = 200, typed: dict[str, Any] | None = None, edit_email: str = "", **extra: Any
) -> Template:
    terms = await payouts.schedule_terms()
    form = await _form_defaults(edit_email)
    # What was typed wins over what is saved, so a refused form comes back as it was sent.
    form.update({k: v for k, v in (typed or {}).items() if k != "_csrf_token"})
    if typed is not None and "on_hold" not in typed and "email" in typed:
        form.pop("on_hold", None)  # an unticked box is absent from the form
    return render(
        PAGE,
        status_code=status_code,
        terms=terms,
        next_cutoff=cutoff_text(payouts.next_cutoff(terms, clock.now())),
        weekdays=WEEKDAYS,
        minimums=await minimums(),
        publisher_terms=await publisher_terms(),
        default_minimum=payouts.DEFAULT_MINIMUM_MINOR,
        form=form,
        money=money,
        **extra,
    )


def cutoff_text(moment: datetime) -> str:
    """ "Wednesday December 9, 2026 6:00 AM", "mercredi 9 décembre 2026 06:00": a weekly cut-off's day matters."""
    weekday = format_date(i18n.local(moment), "EEEE", locale=locales.current() or "en_US")
    return f"{weekday} {i18n.long_datetime_text(moment)}"


async def _saved_amount(notice: str, saved: str, currency: str, publisher: str) -> str:
    """The saved notice with the amount as stored (read back, not what the URL says), in the reader's
    locale: "Minimum payout saved: 12,50 €." Anything else in the URL only picks which row."""
    if saved == "minimum":
        row = (
            await PayoutMinimum.select(PayoutMinimum.minimum_minor)
            .where(PayoutMinimum.currency == currency[:3].upper())
            .first()
        )
        if row is None:
            return notice
        return _(
            "Minimum payout saved: %(amount)s.",
            amount=money.display_local(row["minimum_minor"], currency[:3].upper()),
        )
    if not (publisher.isascii() and publisher.isdigit() and len(publisher) < 19):
        return notice
    row = await PublisherPayoutTerms.select().where(PublisherPayoutTerms.publisher == int(publisher)).first()
    if row is None or row["minimum_minor"] is None:
        return notice
    return _(
        "Publisher's payout terms saved: own minimum %(amount)s.",
        amount=money.display_local(row["minimum_minor"], row["minimum_currency"]),
    )


async def _refused(exc: DomainError, form: dict[str, Any]) -> Template:
    # Always 400: the service's own checks (422 there) are about what was typed here too.
    return await _page(status_code=400, typed=form, error=exc.message, error_field=exc.field)


class FinancePayoutSettings(Controller):
    path = PATH
    guards = [requires_role(Role.finance)]
    include_in_schema = False

    @get("")
    async def show(self, request: Request) -> Template:
        saved = request.query_params.get("saved", "")
        edit_email = request.query_params.get("publisher", "") or ""
        notice = str(SAVED[saved]) if saved in SAVED else None
        if notice and saved in ("minimum", "publisher"):
            notice = await _saved_amount(
                notice, saved, request.query_params.get("currency", ""), request.query_params.get("terms", "")
            )
        return await _page(edit_email=edit_email, notice=notice)

    @post("/schedule")
    async def save_schedule(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            await payouts.save_schedule(parse_schedule(form), actor_id=_user(request).id)
        except DomainError as exc:
            return await _refused(exc, form)
        return see_other(f"{PATH}?saved=schedule")

    @post("/minimum")
    async def save_minimum(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            currency, minimum_minor = parse_minimum(form)
            await payouts.set_minimum(currency, minimum_minor, actor_id=_user(request).id)
        except DomainError as exc:
            return await _refused(exc, form)
        return see_other(f"{PATH}?saved=minimum&currency={currency}")

    @post("/publisher")
    async def save_publisher_terms(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            terms = await parse_publisher_terms(form)
            publisher_id = terms.pop("publisher_id")
            await payouts.set_publisher_terms(publisher_id, actor_id=_user(request).id, **terms)
        except DomainError as exc:
            return await _refused(exc, form)
        return see_other(f"{PATH}?saved=publisher&terms={publisher_id}")
