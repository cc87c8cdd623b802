"""The audit log, readable by finance and admin; the mail affnet sent, readable by admins."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit import service as audit
from server.core import db
from server.http.pages import render, see_other
from server.http.web import current_user, requires_role
from server.mail import outbox
from server.mail.tables import OutboxStatus


@get(["/finance/audit", "/admin/audit"], guards=[requires_role(Role.finance, Role.admin)], include_in_schema=False)
async def audit_log() -> Template:
    return render("audit.html", events=await audit.recent(200))


@get("/admin/mail", guards=[requires_role(Role.admin)], include_in_schema=False)
async def mail_log(request: Request) -> Template:
    """What affnet sent, is sending and could not send, newest first: kinds, addresses, subjects and
    the SMTP server's last answer, never the bodies (some held single-use links)."""
    status = request.query_params.get("status", "")
    if status not in {s.value for s in OutboxStatus}:
        status = ""
    return render(
        "admin/mail.html",
        messages=await outbox.recent(status or None, 200),
        status=status,
        statuses=[s.value for s in OutboxStatus],
        backlog=await outbox.backlog(),
    )


@post("/admin/mail/{message_id:int}/retry", guards=[requires_role(Role.admin)], include_in_schema=False)
async def retry_mail(request: Request, message_id: FromPath[int]) -> Redirect:
    admin: CurrentUser = current_user(request)  # type: ignore[assignment]
    async with db.transaction():
        await outbox.retry(message_id)
        await audit.record("mail.retried", actor_id=admin.id, object_type="mail", object_id=message_id)
    return see_other("/admin/mail?status=pending")
