"""Small helpers every HTML route uses: rendering with form state, redirects, the login cookie."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.response import Redirect, Template

from server.core.errors import DomainError
from server.core.settings import Settings

SESSION_COOKIE = "affnet_session"


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def render(template: str, *, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Template:
    return Template(template, context=context, status_code=status_code, headers=headers)


def render_error(template: str, exc: DomainError, form: dict[str, Any], **context: Any) -> Template:
    """Re-render a form with the values the person typed (never passwords) and what to fix: every
    problem found (`problems`, listed at the top by base.html) and each field's beside it (`errors`,
    by partials/field.html). `error` and `error_field` are the first, for pages that show one."""
    safe_form = {k: v for k, v in form.items() if "password" not in k and k != "_csrf_token"}
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
    errors: dict[str, str] = {}
    for problem in exc.problems:
        if problem.field:
            errors.setdefault(problem.field, problem.message)
    return render(
        template,
        status_code=exc.status_code,
        headers=headers,
        form=safe_form,
        error=exc.message,
        error_field=exc.field,
        errors=errors,
        problems=[(p.message, p.field) for p in exc.problems],
        **context,
    )


def see_other(path: str) -> Redirect:
    return Redirect(path=path, status_code=303)


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    settings = settings_of(request)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


async def form_data(request: Request) -> dict[str, Any]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}
