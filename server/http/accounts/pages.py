"""HTML pages of accounts: sign-up, login, logout, password, API keys, publisher review, and the
pages of the links account mail carries (verify, reset a password, confirm a new address, unlock)."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath
from litestar.response import Redirect, Template

from server.accounts import mailbox
from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus, Role
from server.core import validation
from server.core.errors import DomainError, Invalid, TooManyRequests
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
from server.mail.tokens import TokenProblem
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
            page = render_error("accounts/login.html", exc, form, next=next_path, email=form.get("email", ""))
            if isinstance(exc, TooManyRequests) and exc.code in ("throttled_account_network", "throttled_account"):
                # The owner gets an unlock link, once a window; after the answer, which is the same
                # whether the account exists.
                page.background = BackgroundTask(
                    mailbox.throttled,
                    request.app.state.redis,
                    form.get("email", ""),
                    exc.retry_after,
                    mailbox.reader_language(),
                )
            return page
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

    # --- links sent by mail (server/accounts/mailbox.py) ------------------------------------------

    @get("/verify-email/{token:str}", opt=PUBLIC)
    async def verify_email(self, request: Request, token: FromPath[str]) -> Template:
        try:
            await mailbox.verify_email(token, settings_of(request))
        except TokenProblem as problem:
            return _link_problem(problem, "verify")
        home = user.home if (user := current_user(request)) is not None else "/login"
        return render(
            "accounts/link.html",
            heading=_("Your address is confirmed"),
            message=_("Thank you: your e-mail address is confirmed."),
            link_href=home,
            link_label=_("Go to my dashboard") if home != "/login" else _("Log in"),
            done=True,
        )

    @get("/forgot-password", opt=PUBLIC)
    async def forgot_password_page(self) -> Template:
        return render("accounts/forgot_password.html", form={})

    @post("/forgot-password", opt=PUBLIC)
    async def forgot_password(self, request: Request) -> Template:
        form = await form_data(request)
        try:
            email = validation.email(form.get("email", ""))
        except Invalid as exc:
            return render_error("accounts/forgot_password.html", exc, form)
        # The same page, at once, for every address: the look-up and the mail come after the answer.
        return Template(
            "accounts/forgot_password.html",
            context={"form": {}, "sent": True},
            background=BackgroundTask(
                mailbox.forgotten_password,
                request.app.state.redis,
                email,
                client_ip(request),
                mailbox.reader_language(),
            ),
        )

    @get("/reset-password/{token:str}", opt=PUBLIC)
    async def reset_password_page(self, token: FromPath[str]) -> Template:
        try:
            email = await mailbox.reset_email_of(token)
        except TokenProblem as problem:
            return _link_problem(problem, "reset")
        return render("accounts/reset_password.html", form={}, email=email, token=token)

    @post("/reset-password/{token:str}", opt=PUBLIC)
    async def reset_password(self, request: Request, token: FromPath[str]) -> Template:
        form = await form_data(request)
        try:
            await mailbox.reset_password(
                request.app.state.redis,
                token,
                form.get("new_password", ""),
                form.get("confirm_password", ""),
                request.headers.get("user-agent", ""),
            )
        except TokenProblem as problem:
            return _link_problem(problem, "reset")
        except DomainError as exc:
            return render_error("accounts/reset_password.html", exc, form, email=await _reset_email(token), token=token)
        response = render(
            "accounts/link.html",
            heading=_("Your password has been changed"),
            message=_("Log in with your new password. Every session of your account was logged out."),
            link_href="/login",
            link_label=_("Log in"),
            done=True,
        )
        clear_session_cookie(response)  # this browser's session, if it had one, ended with the others
        return response

    @get("/email-change/{token:str}", opt=PUBLIC)
    async def confirm_email_page(self, token: FromPath[str]) -> Template:
        try:
            change = await mailbox.email_change_of(token)
        except TokenProblem as problem:
            return _link_problem(problem, "change")
        return render(
            "accounts/link.html",
            heading=_("Confirm your new e-mail address"),
            message=_("Make %(email)s the address of your affnet account?", email=change.email),
            action=f"/email-change/{token}",
            button=_("Yes, use this address"),
        )

    @post("/email-change/{token:str}", opt=PUBLIC)
    async def confirm_email(self, token: FromPath[str]) -> Template:
        try:
            _old, new = await mailbox.confirm_email_change(token)
        except TokenProblem as problem:
            return _link_problem(problem, "change")
        except DomainError as exc:
            return render(
                "accounts/link.html",
                status_code=exc.status_code,
                heading=_("Your address was not changed"),
                message=exc.message,
                link_href="/account",
                link_label=_("Your account"),
            )
        return render(
            "accounts/link.html",
            heading=_("Your address is changed"),
            message=_("From now on your affnet account uses %(email)s, confirmed.", email=new),
            link_href="/account",
            link_label=_("Your account"),
            done=True,
        )

    @get("/unlock/{token:str}", opt=PUBLIC)
    async def unlock_page(self, token: FromPath[str]) -> Template:
        try:
            email = await mailbox.unlock_email_of(token)
        except TokenProblem as problem:
            return _link_problem(problem, "unlock")
        return render(
            "accounts/link.html",
            heading=_("Unlock your account"),
            message=_(
                "Logins to %(email)s were paused after too many wrong passwords. Unlock it to log in again "
                "at once, from any network.",
                email=email,
            ),
            action=f"/unlock/{token}",
            button=_("Unlock my account"),
        )

    @post("/unlock/{token:str}", opt=PUBLIC)
    async def unlock(self, request: Request, token: FromPath[str]) -> Template:
        try:
            await mailbox.unlock(request.app.state.redis, token)
        except TokenProblem as problem:
            return _link_problem(problem, "unlock")
        return render(
            "accounts/link.html",
            heading=_("Your account is unlocked"),
            message=_(
                "You can log in now. If the wrong passwords were not yours, someone may know your address: "
                "choose a strong password nobody can guess."
            ),
            link_href="/login",
            link_label=_("Log in"),
            done=True,
        )


async def _reset_email(token: str) -> str:
    try:
        return await mailbox.reset_email_of(token)
    except TokenProblem:
        return ""


def _link_problem(problem: TokenProblem, kind: str) -> Template:
    """Why a link from a mail does not work, and what to do instead: 404 unknown, 410 used or expired."""
    status = 404 if problem.reason == "unknown" else 410
    if problem.reason == "unknown":
        message = _("This link is not valid. Check that you copied the whole address from the e-mail.")
    elif problem.reason == "expired":
        message = _("This link has expired. Links in our e-mails work for a limited time only.")
    else:
        message = _("This link was already used. Each link in our e-mails works once.")
    if kind == "reset":
        advice, href, label = _("You can ask for a new link."), "/forgot-password", _("Ask for a new link")
    elif kind == "verify":
        advice = _("If your address is not confirmed yet, log in and ask for a new link on your account page.")
        href, label = "/account", _("Your account")
    elif kind == "change":
        advice = _("Your address was not changed by this link. You can ask again on your account page.")
        href, label = "/account", _("Your account")
    else:
        advice = _("If you still cannot log in, reset your password.")
        href, label = "/forgot-password", _("Forgot your password?")
    return render(
        "accounts/link.html",
        status_code=status,
        heading=_("This link does not work"),
        message=message,
        advice=advice,
        link_href=href,
        link_label=label,
        problem=problem.reason,
    )


async def _logged_in(request: Request, user_id: int, home: str) -> Redirect:
    token = await accounts.create_session(user_id, settings_of(request), request.headers.get("user-agent", ""))
    response = see_other(home)
    set_session_cookie(response, request, token)
    return response


class AccountController(Controller):
    path = "/account"
    guards = [ANY_ROLE]
    include_in_schema = False

    @get("/")
    async def account_page(self, request: Request) -> Template:
        return await _account_page(request)

    @post("/verify-email")
    async def resend_verification(self, request: Request) -> Template:
        user: CurrentUser = current_user(request)  # type: ignore[assignment]
        try:
            sent = await mailbox.resend_verification(user)
        except DomainError as exc:
            return await _account_page(request, status_code=exc.status_code, error=exc.message, headers=_retry(exc))
        notice = (
            _("We sent a new link to %(email)s. It works once, for 7 days.", email=user.email)
            if sent
            else _("Your address is already confirmed.")
        )
        return await _account_page(request, notice=notice)

    @post("/email")
    async def change_email(self, request: Request) -> Template:
        user: CurrentUser = current_user(request)  # type: ignore[assignment]
        form = await form_data(request)
        try:
            new = await mailbox.request_email_change(user, form.get("new_email", ""), form.get("current_password", ""))
        except DomainError as exc:
            return render_error("accounts/account.html", exc, form, **await _account_context(user))
        return await _account_page(
            request,
            notice=_(
                "We sent a link to %(email)s. Your address changes when you open it (within a day); until then "
                "nothing changes.",
                email=new,
            ),
        )

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
                request.headers.get("user-agent", ""),
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
            key_id, full_key = await accounts.create_api_key(user, form.get("name", ""), form.get("scope", "full"))
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


def _retry(exc: DomainError) -> dict[str, str] | None:
    return {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None


async def _account_context(user: CurrentUser) -> dict:
    return {"account_email": user.email, "verified": await mailbox.is_verified(user.id)}


async def _account_page(request: Request, *, status_code: int = 200, headers=None, **context) -> Template:  # noqa: ANN001
    user: CurrentUser = current_user(request)  # type: ignore[assignment]
    return render(
        "accounts/account.html",
        status_code=status_code,
        headers=headers,
        form={},
        **await _account_context(user),
        **context,
    )


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
    async def approve(self, request: Request, publisher_id: FromPath[int]) -> Template | Redirect:
        try:
            await accounts.review_publisher(current_user(request), publisher_id, approve=True)  # type: ignore[arg-type]
        except DomainError as exc:
            if exc.status_code != 409:
                raise
            return render_error(
                "admin/publishers.html",
                exc,
                {},
                publishers=await accounts.list_publishers(PublisherStatus.pending),
                status="pending",
                statuses=[s.value for s in PublisherStatus],
            )
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
