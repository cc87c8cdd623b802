"""The notifications page (which notices a person receives) and the one-click unsubscribe link of
every notification (RFC 8058).

The unsubscribe link works without logging in: its signed token names the person and the kind
(server/mail/unsubscribe.py). A GET only shows what the button would do, so a link scanner that
follows every link in a mail unsubscribes nobody; the button, or a mail client's one-click POST
(`List-Unsubscribe=One-Click`, no cookie, no CSRF token), turns the kind off."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.core.i18n import _
from server.http.pages import render
from server.http.web import PUBLIC, current_user, requires_role
from server.mail import kinds, unsubscribe

ANY_ROLE = requires_role(*Role)


async def _settings_page(user: CurrentUser, *, notice: str = "") -> Template:
    choices = [
        {"name": kind.name, "label": str(kind.label), "enabled": enabled}
        for kind, enabled in await unsubscribe.preferences(user.id, user.role.value)
    ]
    return render("accounts/notifications.html", choices=choices, notice=notice)


class NotificationSettings(Controller):
    path = "/account/notifications"
    guards = [ANY_ROLE]
    include_in_schema = False

    @get("")
    async def page(self, request: Request) -> Template:
        return await _settings_page(current_user(request))  # type: ignore[arg-type]

    @post("")
    async def save(self, request: Request) -> Template:
        """Every notice of the person's role is on exactly when its box is ticked (an unticked box
        sends nothing, so the page lists the kinds it showed, and only those of their role count)."""
        user: CurrentUser = current_user(request)  # type: ignore[assignment]
        form = await request.form()
        ticked = set(form.getall("kind", []))
        for kind, enabled in await unsubscribe.preferences(user.id, user.role.value):
            wanted = kind.name in ticked
            if wanted != enabled:
                await unsubscribe.set_preference(user.id, kind.name, wanted)
        return await _settings_page(user, notice=_("Your notification settings are saved."))


def _not_ours() -> Template:
    return render(
        "error.html",
        status_code=404,
        status=404,
        message=_(
            "This unsubscribe link is not valid: it may have been cut short when it was copied. "
            "Nothing was changed. You can choose your e-mails on the notifications page of your account."
        ),
    )


def _kind_page(kind_name: str, *, done: bool, status_code: int = 200) -> Template:
    return render(
        "accounts/unsubscribe.html",
        status_code=status_code,
        label=str(kinds.kind(kind_name).label),
        done=done,
    )


@get("/unsubscribe/{token:str}", opt=PUBLIC, include_in_schema=False)
async def unsubscribe_page(token: FromPath[str]) -> Template:
    """What the link would turn off, and a button to confirm: nothing changes on a GET."""
    found = unsubscribe.read(token)
    if found is None:
        return _not_ours()
    return _kind_page(found[1], done=False)


@post("/unsubscribe/{token:str}", opt=PUBLIC, include_in_schema=False, status_code=200)
async def unsubscribe_now(token: FromPath[str]) -> Template:
    """Turn the kind off: the page's button, or a mail client's RFC 8058 one-click POST (no cookie,
    no CSRF token: the signed token is the authority, and it can do nothing but this)."""
    found = unsubscribe.read(token)
    if found is None:
        return _not_ours()
    user_id, kind_name = found
    await unsubscribe.set_preference(user_id, kind_name, False)
    return _kind_page(kind_name, done=True)
