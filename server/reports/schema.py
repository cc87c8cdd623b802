"""DDL the reports need beyond Piccolo's tables: the rollups' unique keys and dashboard indexes,
time indexes on the raw events for rebuilding an hour, and the trigger that stamps a
conversion's `changed_at` whoever writes it (so no writer can forget to)."""

from __future__ import annotations

INDEXES = {
    "traffic_hour_key": "CREATE UNIQUE INDEX IF NOT EXISTS traffic_hour_key "
    "ON traffic_hour (hour, publisher, campaign, sub1, slot, country, reason)",
    "traffic_hour_publisher": "CREATE INDEX IF NOT EXISTS traffic_hour_publisher ON traffic_hour (publisher, hour)",
    "traffic_hour_campaign": "CREATE INDEX IF NOT EXISTS traffic_hour_campaign ON traffic_hour (campaign, hour)",
    "conversion_hour_key": "CREATE UNIQUE INDEX IF NOT EXISTS conversion_hour_key "
    "ON conversion_hour (hour, publisher, campaign, goal, sub1, slot, country, status)",
    "conversion_hour_publisher": "CREATE INDEX IF NOT EXISTS conversion_hour_publisher "
    "ON conversion_hour (publisher, hour)",
    "conversion_hour_campaign": "CREATE INDEX IF NOT EXISTS conversion_hour_campaign "
    "ON conversion_hour (campaign, hour)",
    "conversion_changed": "CREATE INDEX IF NOT EXISTS conversion_changed ON conversion (changed_at)",
    "conversion_converted": "CREATE INDEX IF NOT EXISTS conversion_converted ON conversion (converted_at)",
}

# The narrow traffic rollups (a later migration than INDEXES): their unique keys lead with what
# the dashboards filter on, so each key is also the index a report reads. On PostgreSQL the key
# carries the counts too (INCLUDE), so a report is an index-only scan: a big publisher's rows of
# a month are spread over every page of the table, as each hour is written for everyone at once
# (bench/report_dashboard.py: 28,000 pages read for 48,000 rows without it).
_NARROW_KEYS = {
    "traffic_campaign_hour_key": (
        "traffic_campaign_hour",
        "publisher, hour, campaign, reason",
        "currency, impressions, clicks",
    ),
    "traffic_slice_hour_key": (
        "traffic_slice_hour",
        "publisher, dim, hour, key, currency",
        "clicks, invalid_clicks, impressions, invalid_impressions",
    ),
}
NARROW_INDEXES = {
    "traffic_campaign_hour_campaign": "CREATE INDEX IF NOT EXISTS traffic_campaign_hour_campaign "
    "ON traffic_campaign_hour (campaign, hour)",
    # A rebuild deletes an hour range of every publisher: by hour.
    "traffic_campaign_hour_hour": "CREATE INDEX IF NOT EXISTS traffic_campaign_hour_hour "
    "ON traffic_campaign_hour (hour)",
    "traffic_slice_hour_hour": "CREATE INDEX IF NOT EXISTS traffic_slice_hour_hour ON traffic_slice_hour (hour)",
}


def narrow_ddl(sqlite: bool) -> list[str]:
    keys = [
        f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {table} ({key})" + ("" if sqlite else f" INCLUDE ({more})")
        for name, (table, key, more) in _NARROW_KEYS.items()
    ]
    return [*keys, *NARROW_INDEXES.values()]


def drop_narrow_ddl() -> list[str]:
    return [f"DROP INDEX IF EXISTS {name}" for name in [*_NARROW_KEYS, *NARROW_INDEXES]]


# Clicks and impressions are appended in time order: on PostgreSQL a BRIN index finds an hour's
# rows for a few kilobytes and almost nothing per insert; SQLite has only B-trees.
_EVENT_TIMES = {"click_time": ("click", "clicked_at"), "impression_time": ("impression", "viewed_at")}

# Only the columns a report shows: a write to anything else leaves `changed_at` alone.
_WATCHED = (
    "status",
    "released_at",
    "approved_at",
    "converted_at",
    "publisher",
    "campaign",
    "goal",
    "click_id",
    "sale_amount_minor",
    "advertiser_amount_minor",
    "publisher_amount_minor",
    "network_amount_minor",
)
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"  # the text Piccolo stores a UTC datetime as


def create_ddl(sqlite: bool) -> list[str]:
    ddl = list(INDEXES.values())
    for name, (table, column) in _EVENT_TIMES.items():
        using = "" if sqlite else " USING brin"
        ddl.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table}{using} ({column})")
    if sqlite:
        # Constants of this module only: nothing from input reaches these statements.
        stamp = f"UPDATE conversion SET changed_at = {_SQLITE_NOW} WHERE id = NEW.id"  # noqa: S608
        ddl += [
            f"CREATE TRIGGER IF NOT EXISTS conversion_changed_insert AFTER INSERT ON conversion BEGIN {stamp}; END",
            f"CREATE TRIGGER IF NOT EXISTS conversion_changed_update AFTER UPDATE OF {', '.join(_WATCHED)} "
            f"ON conversion BEGIN {stamp}; END",
        ]
    else:
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED)
        ddl += [
            # clock_timestamp(), not now(): a long transaction's rows carry the time they changed.
            "CREATE OR REPLACE FUNCTION conversion_changed() RETURNS trigger AS $$ BEGIN "
            f"IF TG_OP = 'INSERT' OR {changed} THEN NEW.changed_at := clock_timestamp(); END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            "DROP TRIGGER IF EXISTS conversion_changed ON conversion",
            "CREATE TRIGGER conversion_changed BEFORE INSERT OR UPDATE ON conversion "
            "FOR EACH ROW EXECUTE FUNCTION conversion_changed()",
        ]
    ddl.append("UPDATE conversion SET changed_at = created_at WHERE changed_at IS NULL")
    return ddl


def drop_ddl(sqlite: bool) -> list[str]:
    ddl = [f"DROP INDEX IF EXISTS {name}" for name in [*INDEXES, *_EVENT_TIMES]]
    if sqlite:
        ddl += ["DROP TRIGGER IF EXISTS conversion_changed_insert", "DROP TRIGGER IF EXISTS conversion_changed_update"]
    else:
        ddl += [
            "DROP TRIGGER IF EXISTS conversion_changed ON conversion",
            "DROP FUNCTION IF EXISTS conversion_changed()",
        ]
    return ddl
