"""The webhook pages of publishers and advertisers (/account/webhooks: endpoints, their secrets,
their delivery log, "send again") and the publisher's postback page (/publisher/postbacks). Every
object is the signed-in owner's: another user's is 404 (checked in server/webhooks/service.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns.tables import MembershipStatus
from server.core.errors import DomainError, Invalid
from server.core.i18n import _l
from server.http.pages import form_data, render, render_error, see_other, settings_of
from server.http.web import current_user, requires_role
from server.tracking import service as tracking
from server.webhooks import delivery, outbox, service

EVENT_LABELS = {
    "conversion.recorded": _l("A conversion was recorded"),
    "conversion.approved": _l("A conversion was approved"),
    "conversion.rejected": _l("A conversion was rejected"),
    "conversion.reversed": _l("A conversion was reversed"),
    "payout.paid": _l("A payout was paid"),
    "payout.failed": _l("A payout failed"),
    "campaign.paused_for_funds": _l("A campaign was paused for lack of funds"),
    "application.decided": _l("An application to a campaign was decided"),
}
MACRO_LABELS = {
    "click_id": _l("the click's id"),
    "sub1": _l("sub-ID 1 of the click"),
    "sub2": _l("sub-ID 2 of the click"),
    "sub3": _l("sub-ID 3 of the click"),
    "sub4": _l("sub-ID 4 of the click"),
    "sub5": _l("sub-ID 5 of the click"),
    "txn_id": _l("the advertiser's transaction id"),
    "payout": _l("your payout for the conversion, e.g. 12.50"),
    "currency": _l("the payout's currency, e.g. EUR"),
    "status": _l("the conversion's status: pending or approved"),
    "campaign_id": _l("the campaign's id"),
}
NOTICES = {
    "test_delivered": _l("The test event was delivered: your endpoint answered with a 2xx status."),
    "test_failed": _l("The test event was not delivered: see its attempt in the log below. It will be retried."),
    "enabled": _l("The endpoint is enabled: events are sent to it again."),
    "disabled": _l("The endpoint is disabled: no events are sent to it until you enable it."),
    "resent": _l("Sent again: your endpoint answered with a 2xx status."),
    "resend_failed": _l("Sent again, but your endpoint did not answer with a 2xx status: see the attempt below."),
    "saved": _l("Your postback is saved."),
    "removed": _l("The postback is turned off."),
}
WEBHOOK_ROLES = requires_role(Role.publisher, Role.advertiser)


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]


def _notice(request: Request) -> str:
    found = NOTICES.get(request.query_params.get("done", ""))
    return str(found) if found else ""


def _loopback(request: Request) -> bool:
    return settings_of(request).webhooks_allow_loopback


def _events() -> list[tuple[str, str]]:
    return [(name, str(EVENT_LABELS[name])) for name in outbox.EVENT_TYPES]


class WebhookPages(Controller):
    path = "/account/webhooks"
    guards = [WEBHOOK_ROLES]
    include_in_schema = False

    async def _list(self, request: Request, **context: Any) -> dict[str, Any]:
        return {"endpoints": await service.endpoints(_user(request).id), "events": _events(), **context}

    @get("")
    async def index(self, request: Request) -> Template:
        return render("webhooks/endpoints.html", form={}, **await self._list(request))

    @post("", status_code=201)
    async def create(self, request: Request) -> Template:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != "event_types"}
        chosen = [v for v in form.getall("event_types", []) if isinstance(v, str)]
        try:
            endpoint_id, secret = await service.create_endpoint(
                _user(request).id,
                values.get("url", ""),
                event_types=chosen,
                description=values.get("description", ""),
                allow_loopback=_loopback(request),
            )
        except DomainError as exc:
            return render_error("webhooks/endpoints.html", exc, values, chosen=chosen, **await self._list(request))
        # The only time the secret is shown.
        return render(
            "webhooks/endpoints.html",
            status_code=201,
            form={},
            new_secret=secret,
            new_endpoint_id=endpoint_id,
            **await self._list(request),
        )

    async def _endpoint_page(self, request: Request, endpoint_id: int, **context: Any) -> Template:
        user = _user(request)
        return render(
            "webhooks/endpoint.html",
            endpoint=await service.endpoint(user.id, endpoint_id),
            log=await service.endpoint_log(user.id, endpoint_id),
            labels={k: str(v) for k, v in EVENT_LABELS.items()},
            notice=_notice(request),
            **context,
        )

    @get("/{endpoint_id:int}")
    async def show(self, request: Request, endpoint_id: FromPath[int]) -> Template:
        return await self._endpoint_page(request, endpoint_id)

    @post("/{endpoint_id:int}/rotate", status_code=200)
    async def rotate(self, request: Request, endpoint_id: FromPath[int]) -> Template:
        secret = await service.rotate_secret(_user(request).id, endpoint_id)
        return await self._endpoint_page(request, endpoint_id, new_secret=secret)

    @post("/{endpoint_id:int}/enable")
    async def enable(self, request: Request, endpoint_id: FromPath[int]) -> Redirect:
        await service.set_enabled(_user(request).id, endpoint_id, True)
        return see_other(f"/account/webhooks/{endpoint_id}?done=enabled")

    @post("/{endpoint_id:int}/disable")
    async def disable(self, request: Request, endpoint_id: FromPath[int]) -> Redirect:
        await service.set_enabled(_user(request).id, endpoint_id, False)
        return see_other(f"/account/webhooks/{endpoint_id}?done=disabled")

    @post("/{endpoint_id:int}/delete")
    async def delete(self, request: Request, endpoint_id: FromPath[int]) -> Redirect:
        await service.delete_endpoint(_user(request).id, endpoint_id)
        return see_other("/account/webhooks")

    @post("/{endpoint_id:int}/test")
    async def send_test(self, request: Request, endpoint_id: FromPath[int]) -> Redirect | Template:
        try:
            message_id = await service.queue_test(_user(request).id, endpoint_id)
        except Invalid as exc:
            return await self._endpoint_page(request, endpoint_id, error=exc.message)
        delivered = await delivery.deliver_now(message_id, allow_loopback=_loopback(request))
        return see_other(f"/account/webhooks/{endpoint_id}?done={'test_delivered' if delivered else 'test_failed'}")

    @get("/messages/{message_id:int}")
    async def message(self, request: Request, message_id: FromPath[int]) -> Template:
        row, attempts = await service.message(_user(request).id, message_id)
        return render(
            "webhooks/message.html", message=row, attempts=attempts, notice=_notice(request), payload=row["payload"]
        )

    @post("/messages/{message_id:int}/resend")
    async def resend(self, request: Request, message_id: FromPath[int]) -> Redirect | Template:
        user = _user(request)
        await service.owned_message(user.id, message_id)
        try:
            delivered = await delivery.deliver_now(message_id, allow_loopback=_loopback(request))
        except DomainError as exc:
            row, attempts = await service.message(user.id, message_id)
            return render(
                "webhooks/message.html",
                status_code=exc.status_code,
                message=row,
                attempts=attempts,
                payload=row["payload"],
                error=exc.message,
            )
        return see_other(f"/account/webhooks/messages/{message_id}?done={'resent' if delivered else 'resend_failed'}")


async def _member_campaigns(publisher_id: int) -> dict[int, str]:
    """The campaigns the publisher is an approved member of (id → name), from their links."""
    return {
        link.campaign_id: link.campaign_name
        for link in await tracking.links_of(publisher_id)
        if link.membership_status == MembershipStatus.approved.value
    }


class PublisherPostbacks(Controller):
    path = "/publisher/postbacks"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    async def _context(self, request: Request) -> dict[str, Any]:
        user = _user(request)
        campaigns = await _member_campaigns(user.id)
        templates = await service.templates(user.id)
        return {
            "campaigns": sorted(campaigns.items(), key=lambda c: c[1].lower()),
            "campaign_names": campaigns,
            "global_template": next((t for t in templates if t.campaign_id is None), None),
            "campaign_templates": [t for t in templates if t.campaign_id is not None],
            "macros": [(name, str(MACRO_LABELS[name])) for name in outbox.MACROS],
            "log": await service.postback_log(user.id),
            "notice": _notice(request),
        }

    @get("")
    async def index(self, request: Request) -> Template:
        return render("webhooks/postbacks.html", form={}, **await self._context(request))

    @post("")
    async def save(self, request: Request) -> Redirect | Template:
        user = _user(request)
        form = await form_data(request)
        raw_campaign = form.get("campaign_id", "").strip()
        try:
            campaign_id = int(raw_campaign) if raw_campaign else None
        except ValueError:
            campaign_id = -1  # no such campaign: refused below like another publisher's
        try:
            await service.save_template(
                user.id,
                campaign_id,
                form.get("url_template", ""),
                on_recorded=form.get("on_recorded") == "on",
                on_approved=form.get("on_approved") == "on",
                member_of=set(await _member_campaigns(user.id)),
                allow_loopback=_loopback(request),
            )
        except DomainError as exc:
            return render_error("webhooks/postbacks.html", exc, form, **await self._context(request))
        return see_other("/publisher/postbacks?done=saved")

    @post("/{template_id:int}/remove")
    async def remove(self, request: Request, template_id: FromPath[int]) -> Redirect:
        await service.remove_template(_user(request).id, template_id)
        return see_other("/publisher/postbacks?done=removed")
