"""HTML pages of accounts: sign-up, login, logout, password, API keys, publisher review."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus, Role
from server.core.errors import DomainError, Invalid
from server.core.i18n import _
from server.core.locale import LANGUAGE_COOKIE
from server.core.validation import safe_next
from server.http.pages import (
    clear_session_cookie,
    form_data,
    render,
    render_error,
    see_other,
    set_session_cookie,
    settings_of,
)
from server.http.web import PUBLIC, SESSION_COOKIE, client_ip, current_user, requires_role
from server.tracking import datacenter

ANY_ROLE = requires_role(*Role)


class AuthController(Controller):
    include_in_schema = False

    @get("/", opt=PUBLIC)
    async def home(self, request: Request) -> Template | Redirect:
        user = current_user(request)
        if user is not None:
            return see_other(user.home)
        return render("home.html")

    @get("/login", opt=PUBLIC)
    async def login_page(self, request: Request) -> Template | Redirect:
        user = current_user(request)
        if user is not None:
            return see_other(user.home)
        return render("accounts/login.html", next=safe_next(request.query_params.get("next"), ""), email="")

    @post("/language", opt=PUBLIC)
    async def set_language(self, request: Request) -> Redirect:
        """The footer's language switcher: saved on the account when logged in, and in a cookie
        (a year) for the pages before login; then back to the page it was on (a local path only)."""
        form = await form_data(request)
        code = await accounts.set_language(current_user(request), form.get("language", ""))
        response = see_other(safe_next(form.get("next"), "/"))
        response.set_cookie(
            LANGUAGE_COOKIE,
            code,
            max_age=365 * 24 * 3600,
            path="/",
            httponly=True,
            samesite="lax",
            secure=settings_of(request).secure_cookies or request.url.scheme == "https",
        )
        return response

    @post("/login", opt=PUBLIC)
    async def login(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        next_path = safe_next(form.get("next"), "")
        try:
            user = await accounts.authenticate(
                request.app.state.redis,
                settings_of(request),
                form.get("email", ""),
                form.get("password", ""),
                client_ip(request),
            )
        except DomainError as exc:
            return render_error("accounts/login.html", exc, form, next=next_path, email=form.get("email", ""))
        old = request.cookies.get(SESSION_COOKIE)
        if old:  # a fresh token at every login: no session fixation
            await accounts.end_session(old)
        token = await accounts.create_session(user.id, settings_of(request), request.headers.get("user-agent", ""))
        response = see_other(next_path or user.home)
        set_session_cookie(response, request, token)
        return response

    @post("/logout", guards=[ANY_ROLE])
    async def logout(self, request: Request) -> Redirect:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await accounts.end_session(token)
        response = see_other("/login")
        clear_session_cookie(response)
        return response

    @get("/signup", opt=PUBLIC)
    async def signup_choice(self) -> Template:
        return render("accounts/signup.html")

    @get("/signup/publisher", opt=PUBLIC)
    async def signup_publisher_page(self) -> Template:
        return render("accounts/signup_publisher.html", form={})

    @post("/signup/publisher", opt=PUBLIC)
    async def signup_publisher(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            user_id = await accounts.signup_publisher(form, settings_of(request))
        except DomainError as exc:
            return render_error("accounts/signup_publisher.html", exc, form)
        return await _logged_in(request, user_id, "/publisher")

    @get("/signup/advertiser", opt=PUBLIC)
    async def signup_advertiser_page(self) -> Template:
        return render("accounts/signup_advertiser.html", form={})

    @post("/signup/advertiser", opt=PUBLIC)
    async def signup_advertiser(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            user_id = await accounts.signup_advertiser(form)
        except DomainError as exc:
            return render_error("accounts/signup_advertiser.html", exc, form)
        return await _logged_in(request, user_id, "/advertiser")


async def _logged_in(request: Request, user_id: int, home: str) -> Redirect:
    token = await accounts.create_session(user_id, settings_of(request), request.headers.get("user-agent", ""))
    response = see_other(home)
    set_session_cookie(response, request, token)
    return response


class AccountController(Controller):
    path = "/account"
    guards = [ANY_ROLE]
    include_in_schema = False

    @get("/password")
    async def password_page(self) -> Template:
        return render("accounts/password.html", form={})

    @post("/password")
    async def change_password(self, request: Request) -> Template:
        form = await form_data(request)
        user: CurrentUser = current_user(request)  # type: ignore[assignment]
        try:
            await accounts.change_password(
                user,
                form.get("current_password", ""),
                form.get("new_password", ""),
                form.get("confirm_password", ""),
            )
        except DomainError as exc:
            return render_error("accounts/password.html", exc, form)
        return render(
            "accounts/password.html",
            form={},
            notice=_("Your password has been changed. Every other session of yours has been logged out."),
        )

    @post("/time-zone")
    async def set_time_zone(self, request: Request) -> Redirect:
        """Save the zone reports are shown in, then go back to the report (a local path only)."""
        form = await form_data(request)
        await accounts.set_time_zone(current_user(request), form.get("tz", ""))  # type: ignore[arg-type]
        return see_other(safe_next(form.get("next"), "/"))

    @get("/api-keys", guards=[requires_role(*accounts.API_KEY_ROLES)])
    async def api_keys(self, request: Request) -> Template:
        user: CurrentUser = current_user(request)  # type: ignore[assignment]
        return render("accounts/api_keys.html", keys=await accounts.list_api_keys(user.id), form={})

    @post("/api-keys", guards=[requires_role(*accounts.API_KEY_ROLES)], status_code=201)
    async def create_api_key(self, request: Request) -> Template:
        user: CurrentUser = current_user(request)  # type: ignore[assignment]
        form = await form_data(request)
        try:
            key_id, full_key = await accounts.create_api_key(user, form.get("name", ""))
        except DomainError as exc:
            return render_error("accounts/api_keys.html", exc, form, keys=await accounts.list_api_keys(user.id))
        # The only time the full key is ever shown.
        return render(
            "accounts/api_keys.html",
            status_code=201,
            keys=await accounts.list_api_keys(user.id),
            form={},
            new_key=full_key,
            new_key_id=key_id,
        )

    @post("/api-keys/{key_id:int}/revoke", guards=[requires_role(*accounts.API_KEY_ROLES)])
    async def revoke_api_key(self, request: Request, key_id: FromPath[int]) -> Redirect:
        await accounts.revoke_api_key(current_user(request), key_id)  # type: ignore[arg-type]
        return see_other("/account/api-keys")


class AdminPublishersController(Controller):
    path = "/admin"
    guards = [requires_role(Role.admin)]
    include_in_schema = False

    @get("/publishers")
    async def publishers(self, request: Request) -> Template:
        status_name = request.query_params.get("status", "pending")
        status = PublisherStatus(status_name) if status_name in PublisherStatus.__members__ else None
        return render(
            "admin/publishers.html",
            publishers=await accounts.list_publishers(status),
            status=status.value if status else "all",
            statuses=[s.value for s in PublisherStatus],
        )

    @post("/publishers/{publisher_id:int}/approve")
    async def approve(self, request: Request, publisher_id: FromPath[int]) -> Redirect:
        await accounts.review_publisher(current_user(request), publisher_id, approve=True)  # type: ignore[arg-type]
        return see_other("/admin/publishers")

    @post("/publishers/{publisher_id:int}/reject")
    async def reject(self, request: Request, publisher_id: FromPath[int]) -> Template | Redirect:
        form = await form_data(request)
        try:
            await accounts.review_publisher(
                current_user(request),
                publisher_id,
                approve=False,
                reason=form.get("reason", ""),  # type: ignore[arg-type]
            )
        except Invalid as exc:
            return render_error(
                "admin/publishers.html",
                exc,
                form,
                publishers=await accounts.list_publishers(PublisherStatus.pending),
                status="pending",
                statuses=[s.value for s in PublisherStatus],
            )
        return see_other("/admin/publishers")

    @get("/settings")
    async def settings_page(self, request: Request) -> Template:
        return render(
            "admin/settings.html",
            auto_approve=await accounts.publisher_auto_approve(settings_of(request)),
            **_traffic_quality(request),
        )

    @post("/settings")
    async def save_settings(self, request: Request) -> Template:
        form = await form_data(request)
        await accounts.set_publisher_auto_approve(current_user(request), form.get("auto_approve") == "on")  # type: ignore[arg-type]
        return render(
            "admin/settings.html",
            auto_approve=await accounts.publisher_auto_approve(settings_of(request)),
            notice=_("Settings saved."),
            **_traffic_quality(request),
        )


def _traffic_quality(request: Request) -> dict:
    """The click-quality switch and the data-centre snapshot in use, for the settings page."""
    return {"click_quality": settings_of(request).click_quality_checks, "datacenter": datacenter.snapshot()}
