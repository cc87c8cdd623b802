"""Every kind of message affnet sends: who receives it, and whether they may turn it off.

Account messages (a link to verify an address, to reset a password, a security notice) always go:
they answer something the person did or protect their account. Notifications are on by default and
each can be turned off on the notifications page or by the one-click unsubscribe link in the mail."""

from __future__ import annotations

from dataclasses import dataclass

from server.core.i18n import _l


@dataclass(frozen=True)
class Kind:
    name: str
    roles: frozenset[str]  # who may receive it (and sees it on their settings page)
    optional: bool  # may be turned off (and carries List-Unsubscribe)
    label: object  # a lazy translation: what the settings page calls it


def _kind(name: str, roles: str, optional: bool, label: object) -> Kind:
    return Kind(name, frozenset(roles.split()), optional, label)


ALL = "publisher advertiser finance admin"

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        # account: always sent
        _kind("verify_email", ALL, False, _l("Verify your e-mail address")),
        _kind("reset_password", ALL, False, _l("Reset your password")),
        _kind("email_change_confirm", ALL, False, _l("Confirm a new e-mail address")),
        _kind("email_change_notice", ALL, False, _l("Your e-mail address was changed")),
        _kind("password_changed", ALL, False, _l("Your password was changed")),
        _kind("account_unlock", ALL, False, _l("Unlock your account")),
        # an integration that stopped: always sent, as a broken integration is silent otherwise
        _kind(
            "webhook_disabled",
            "publisher advertiser",
            False,
            _l("A webhook endpoint of mine was disabled after a day of failures"),
        ),
        # publisher
        _kind("publisher_reviewed", "publisher", True, _l("My publisher account was approved or rejected")),
        _kind("application_decided", "publisher", True, _l("An advertiser accepted or declined my application")),
        _kind("campaign_invitation", "publisher", True, _l("An advertiser invited me to a private campaign")),
        _kind(
            "conversions_digest",
            "publisher",
            True,
            _l("Daily digest of my approved, rejected and reversed conversions"),
        ),
        _kind("payout_sent", "publisher", True, _l("A payout was sent to me")),
        _kind("payout_problem", "publisher", True, _l("A payout failed or my payout account needs attention")),
        # advertiser
        _kind("publisher_applied", "advertiser", True, _l("A publisher applied to one of my campaigns")),
        _kind("balance_low", "advertiser", True, _l("My balance is low or a campaign was paused for funds")),
        _kind("review_digest", "advertiser", True, _l("Daily digest of conversions waiting for my review")),
        _kind("invoice_issued", "advertiser", True, _l("An invoice or a credit note was issued to me")),
        # finance
        _kind("batch_awaiting_approval", "finance", True, _l("A payout batch waits for approval")),
        _kind("transfer_failed", "finance", True, _l("A payout transfer failed")),
        _kind("ledger_check_failed", "finance", True, _l("The nightly ledger check found a problem")),
        _kind("stripe_event_failed", "finance", True, _l("A Stripe event could not be applied")),
    )
}


# Their links carry a token's secret: the outbox keeps the text only until it is delivered.
WITH_SECRETS = frozenset(
    {"verify_email", "reset_password", "email_change_confirm", "email_change_notice", "account_unlock"}
)  # the notice carries a link that puts the old address back


def kind(name: str) -> Kind:
    return KINDS[name]


def for_role(role: str) -> list[Kind]:
    """The notifications a person of this role may choose to receive, in the page's order."""
    return [k for k in KINDS.values() if k.optional and role in k.roles]
