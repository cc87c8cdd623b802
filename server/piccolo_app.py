"""The one Piccolo app, `affnet`: every table of every domain, migrations in /migrations."""

from piccolo.conf.apps import AppConfig
from piccolo.engine.base import Engine
from piccolo.table import Table

from server.accounts.tables import Advertiser, ApiIdempotency, ApiKey, NetworkSetting, Publisher, Session, User
from server.ads.tables import AdSlot, Impression
from server.audit.tables import AuditEvent
from server.billing.tables import BillingSettings, Funding
from server.campaigns.tables import Campaign, Creative, Goal, Link, Membership
from server.conversions.tables import (
    Conversion,
    ConversionFlag,
    ConversionRuleSetting,
    PublisherHold,
    PublisherVisitor,
)
from server.core import db
from server.core.settings import ROOT
from server.earnings.tables import ClickEarning, ImpressionEarning
from server.invoicing.tables import (
    BillingProfile,
    Document,
    DocumentCounter,
    DocumentFile,
    SelfBillingAgreement,
    VatRate,
)
from server.ledger.tables import LedgerAccount, LedgerEntry, LedgerTxn
from server.mail.tables import MailOutbox, MailPreference, MailToken
from server.payouts.account_tables import PayoutAccount
from server.payouts.tables import (
    PayoutBatch,
    PayoutCarryOver,
    PayoutChange,
    PayoutLine,
    PayoutMinimum,
    PayoutSettings,
    PublisherPayoutTerms,
)
from server.reports.tables import (
    ConversionHour,
    ConvertedClick,
    RollupCursor,
    TrafficCampaignHour,
    TrafficHour,
    TrafficSliceHour,
)
from server.stripe_events.tables import StripeEvent
from server.tracking.tables import Click
from server.webhooks.tables import PostbackTemplate, WebhookAttempt, WebhookEndpoint, WebhookMessage

APP_CONFIG = AppConfig(
    app_name="affnet",
    migrations_folder_path=str(ROOT / "migrations"),
    table_classes=[
        User,
        Publisher,
        Advertiser,
        Session,
        ApiKey,
        ApiIdempotency,
        NetworkSetting,
        AuditEvent,
        MailOutbox,
        MailToken,
        MailPreference,
        # In the order rows refer to each other (the tests empty them in reverse): a click may name an ad slot.
        Campaign,
        Goal,
        Creative,
        Membership,
        AdSlot,
        Link,
        Click,
        Conversion,
        ConversionFlag,
        ConversionRuleSetting,
        PublisherVisitor,
        PublisherHold,
        ClickEarning,
        LedgerAccount,
        LedgerTxn,
        LedgerEntry,
        Funding,
        StripeEvent,
        BillingSettings,
        PayoutAccount,
        PayoutSettings,
        PayoutMinimum,
        PublisherPayoutTerms,
        PayoutBatch,
        PayoutLine,
        PayoutCarryOver,
        PayoutChange,
        Impression,
        ImpressionEarning,
        TrafficHour,
        TrafficCampaignHour,
        TrafficSliceHour,
        ConversionHour,
        RollupCursor,
        ConvertedClick,
        WebhookEndpoint,
        PostbackTemplate,
        WebhookMessage,
        WebhookAttempt,
        BillingProfile,
        SelfBillingAgreement,
        VatRate,
        DocumentCounter,
        Document,
        DocumentFile,
    ],
    migration_dependencies=[],
    commands=[],
)


def all_tables() -> list[type[Table]]:
    return list(APP_CONFIG.table_classes)


def bind(engine: Engine) -> Engine:
    """Point every affnet table at `engine`: what each process does at startup."""
    return db.bind(engine, APP_CONFIG.table_classes)
