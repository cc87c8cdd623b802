"""Finance's payout pages: batches, preparing a period or an off-cycle run, a batch's lines and
carry-overs, holding a line, approving (four eyes), the lines as CSV, and a batch's status as JSON
for its page to follow while it is paid. Finance only; every action is audited by server/payouts."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.billing import stripe_api
from server.core import clock, jobs, money
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.i18n import _, datetime_text
from server.http.pages import form_data, render, see_other, settings_of
from server.http.web import current_user, requires_role
from server.payouts import execute, four_eyes, keys, reconcile, review
from server.payouts import service as payouts


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a user


async def _batch_page(request: Request, batch_id: int, *, status_code: int = 200, **extra: object) -> Template:
    row = await review.batch(batch_id)
    # Four eyes, as the viewer sees it: what shaped the batch, whether they may approve, and who may.
    standing = await four_eyes.standing(row) if row["status"] == "prepared" else None
    return render(
        "finance/payout_batch.html",
        status_code=status_code,
        batch=row,
        lines=await review.lines(batch_id),
        carried=await review.carried(batch_id),
        editors=await four_eyes.editor_emails(batch_id),
        money=money,
        reconciliation=await reconcile.latest(batch_id),
        four_eyes=standing,
        viewer_id=_user(request).id,
        status_text=review.STATUS_TEXT,
        line_status_text=review.LINE_STATUS_TEXT,
        polls=row["status"] in review.IN_FLIGHT,  # its page follows it (static/payout_batch.js)
        checked_at=clock.now(),
        **extra,
    )


async def _index(*, status_code: int = 200, **extra: object) -> Template:
    now = clock.now()
    terms = await payouts.schedule_terms()
    return render(
        "finance/payouts.html",
        status_code=status_code,
        batches=await review.batches(),
        money=money,
        status_text=review.STATUS_TEXT,
        reasons=payouts.REASONS,
        last_period=payouts.last_cutoff(terms, now),
        next_cutoff=payouts.next_cutoff(terms, now),
        # The off-cycle run's cut-off: this moment, so a second click makes no second batch.
        moment=now.isoformat(),  # to the microsecond: money the page showed as available is in it
        **extra,
    )


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(_("The off-cycle run's moment is missing: read the page again."), field="moment") from None
    if moment.tzinfo is None:
        raise Invalid(_("The off-cycle run's moment is missing: read the page again."), field="moment")
    return moment.astimezone(UTC)


class FinancePayouts(Controller):
    path = "/finance/payouts"
    guards = [requires_role(Role.finance)]
    include_in_schema = False

    @get("")
    async def index(self) -> Template:
        return await _index()

    @post("/prepare")
    async def prepare(self, request: Request) -> Template:
        return await _index(prepared=await payouts.prepare_due(clock.now(), actor_id=_user(request).id))

    @post("/off-cycle")
    async def off_cycle(self, request: Request) -> Template:
        form = await form_data(request)
        try:
            outcome = await payouts.prepare_off_cycle(
                _moment(form.get("moment", "")), now=clock.now(), actor_id=_user(request).id
            )
        except Invalid as exc:
            return await _index(status_code=exc.status_code, error=exc.message)
        return await _index(prepared=outcome)

    @get("/{batch_id:int}/status")
    async def status(self, batch_id: FromPath[int]) -> dict[str, object]:
        """What the batch page polls while the batch is being paid (review.FINAL: it stops then)."""
        row = await review.batch(batch_id)
        now = clock.now()
        return {
            "id": row["id"],
            "status": row["status"],
            "status_text": str(review.STATUS_TEXT[row["status"]]),
            "final": row["status"] in review.FINAL,
            "lines": await review.line_counts(batch_id),
            "checked_at": now.isoformat(),
            "checked_text": _("Last checked %(time)s.", time=datetime_text(now, seconds=True)),
        }

    @get("/{batch_id:int}")
    async def show(self, request: Request, batch_id: FromPath[int]) -> Template:
        return await _batch_page(request, batch_id)

    @get("/{batch_id:int}/lines.csv")
    async def export(self, batch_id: FromPath[int]) -> Response:
        row = await review.batch(batch_id)
        return Response(
            review.lines_csv(await review.lines(batch_id)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="payout-batch-{row["id"]}.csv"'},
        )

    @post("/{batch_id:int}/lines/{line_id:int}/hold")
    async def hold(self, request: Request, batch_id: FromPath[int], line_id: FromPath[int]) -> Template | Redirect:
        form = await form_data(request)
        try:
            await review.hold_line(_user(request), batch_id, line_id, form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return await _batch_page(request, batch_id, status_code=exc.status_code, error=exc.message)
        return see_other(f"/finance/payouts/{batch_id}")

    @post("/{batch_id:int}/lines/{line_id:int}/retry")
    async def retry(self, request: Request, batch_id: FromPath[int], line_id: FromPath[int]) -> Template | Redirect:
        try:
            attempt = await review.retry_line(_user(request), batch_id, line_id)
        except (NotFound, Conflict) as exc:
            return await _batch_page(request, batch_id, status_code=exc.status_code, error=exc.message)
        # After the retry has committed: the worker pays the line (if Redis is down, its sweep does).
        job_id = keys.execution_job_id(batch_id, line_id=line_id, attempt=attempt)
        await jobs.enqueue(request.app.state.redis, execute.JOB, batch_id, job_id=job_id)
        return see_other(f"/finance/payouts/{batch_id}")

    @post("/{batch_id:int}/reconcile")
    async def check_with_stripe(self, request: Request, batch_id: FromPath[int]) -> Template | Redirect:
        settings = settings_of(request)
        row = await review.batch(batch_id)
        if row["status"] not in ("executing", "done"):
            return await _batch_page(
                request, batch_id, status_code=409, error=_("Only a batch being paid or paid is compared with Stripe.")
            )
        if not stripe_api.configured(settings):
            return await _batch_page(
                request, batch_id, status_code=409, error=_("Stripe is not set up on this affnet.")
            )
        async with stripe_api.gateway(settings) as gateway:
            await reconcile.reconcile_batch(batch_id, gateway.client, actor_id=_user(request).id)
        return see_other(f"/finance/payouts/{batch_id}")

    @post("/{batch_id:int}/approve")
    async def approve(self, request: Request, batch_id: FromPath[int]) -> Template | Redirect:
        try:
            await review.approve(_user(request), batch_id)
        except (Forbidden, Conflict) as exc:
            return await _batch_page(request, batch_id, status_code=exc.status_code, error=exc.message)
        # After the approval has committed: the worker pays the batch (if Redis is down, its sweep does).
        await jobs.enqueue(request.app.state.redis, execute.JOB, batch_id, job_id=keys.execution_job_id(batch_id))
        return see_other(f"/finance/payouts/{batch_id}")
