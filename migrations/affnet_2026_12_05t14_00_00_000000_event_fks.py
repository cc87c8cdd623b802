"""event_fks: clicks and impressions keep no foreign keys on PostgreSQL.

Each of their foreign keys is a trigger that looks the parent row up for every inserted row: four
per click and four per impression. Measured on the click writer's COPY (bench/component_costs.py,
production durability): 17-20 µs of PostgreSQL CPU per click with them, 6 µs without: two thirds
of the database's work per click, at the volume where PostgreSQL is what limits the network
(docs/scaling.md). The rows they guard cannot break them: every id in a click or a view comes from
the link, campaign, slot and creative rows the server read to answer it, and affnet deletes none of
those (they are kept for the records that name them). SQLite keeps its foreign keys: there they
cost under half a microsecond a row, and dropping one means rebuilding the table.

Backwards puts the constraints back (checked against the rows then present)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-05T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "event_fks: no foreign keys on click and impression (PostgreSQL)"

FKS = {
    "click": {"link": "link", "campaign": "campaign", "publisher": "app_user", "slot": "ad_slot"},
    "impression": {"slot": "ad_slot", "creative": "creative", "campaign": "campaign", "publisher": "app_user"},
}


async def _forwards() -> None:
    engine = engine_finder()
    if isinstance(engine, SQLiteEngine):
        return
    for table, columns in FKS.items():
        for column in columns:
            await engine.run_ddl(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_{column}_fkey")


async def _backwards() -> None:
    engine = engine_finder()
    if isinstance(engine, SQLiteEngine):
        return
    for table, columns in FKS.items():
        for column, target in columns.items():
            await engine.run_ddl(
                f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey FOREIGN KEY ({column}) "
                f"REFERENCES {target}(id) ON UPDATE CASCADE ON DELETE RESTRICT"
            )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    manager.add_raw(_forwards)
    manager.add_raw_backwards(_backwards)
    return manager
