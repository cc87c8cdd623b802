"""Conversions' indexes Piccolo cannot declare, and intake secrets for existing campaigns.

Written by hand: a composite UNIQUE constraint cannot be added to an existing SQLite table (a
unique index works on both engines), and campaigns made before conversion intake need a postback
secret and a pixel key before their pixel key can be unique."""

import secrets

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns import Varchar
from piccolo.engine.finder import engine_finder
from piccolo.table import Table

ID = "2026-11-23T11:51:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "conversions: one per campaign and txn id, indexes for listing and caps; campaign intake secrets"

INDEXES = {
    # I7: a conversion counts once. The intake inserts and, on a violation, answers with the first.
    "conversion_campaign_txn": "CREATE UNIQUE INDEX IF NOT EXISTS conversion_campaign_txn "
    "ON conversion (campaign, txn_id)",
    # Advertisers list a campaign's conversions by status; the approval job finds pending ones.
    "conversion_campaign_status": "CREATE INDEX IF NOT EXISTS conversion_campaign_status "
    "ON conversion (campaign, status)",
    # Caps count a campaign's (and a publisher's) conversions since midnight or the 1st.
    "conversion_campaign_time": "CREATE INDEX IF NOT EXISTS conversion_campaign_time "
    "ON conversion (campaign, converted_at)",
    "conversion_publisher_time": "CREATE INDEX IF NOT EXISTS conversion_publisher_time "
    "ON conversion (publisher, converted_at)",
    "campaign_public_key": "CREATE UNIQUE INDEX IF NOT EXISTS campaign_public_key ON campaign (public_key)",
}


class Campaign(Table, tablename="campaign"):
    """The columns this step fills, as they are at this migration."""

    postback_secret = Varchar(length=64, default="")
    public_key = Varchar(length=24, default="")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)

    async def fill_and_index():
        Campaign._meta.db = engine_finder()
        rows = await Campaign.select(Campaign.id).where((Campaign.public_key == "") | (Campaign.postback_secret == ""))
        for row in rows:
            await Campaign.update(
                {Campaign.postback_secret: secrets.token_urlsafe(24), Campaign.public_key: secrets.token_urlsafe(9)}
            ).where(Campaign.id == row["id"])
        for ddl in INDEXES.values():
            await engine_finder().run_ddl(ddl)

    async def drop_indexes():
        for name in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(fill_and_index)
    manager.add_raw_backwards(drop_indexes)
    return manager
