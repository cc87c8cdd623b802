"""The audit log, readable by finance and admin."""

from __future__ import annotations

from litestar import get
from litestar.response import Template

from server.accounts.tables import Role
from server.audit import service as audit
from server.http.pages import render
from server.http.web import requires_role


@get(["/finance/audit", "/admin/audit"], guards=[requires_role(Role.finance, Role.admin)], include_in_schema=False)
async def audit_log() -> Template:
    return render("audit.html", events=await audit.recent(200))
