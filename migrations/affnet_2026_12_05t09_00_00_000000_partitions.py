"""Clicks and impressions range-partitioned by UTC day on PostgreSQL (issue 16). SQLite is unchanged.

Each table becomes a declarative partitioned table with the same name, columns, defaults, sequence,
foreign keys and indexes, one partition per UTC day that holds rows (and yesterday to a week
ahead), and a DEFAULT partition, so an insert never fails for want of a partition. The worker
creates the days ahead from then on (server/core/partitions.py) and drops days past retention.

A unique key of a partitioned table must hold its partition key: the primary keys become
(id, clicked_at) and (id, viewed_at), and a click id is unique with its time, UNIQUE (click_id,
clicked_at), which is exact: a click's id carries its second and a replayed click its very row.
A view's time is when the beacon came, so two beacons of one offer differ in viewed_at: each
partition keeps its own UNIQUE (offer) index instead (an offer is viewed within the hour after
it is made, in one day's partition but across midnight).

`converted_click` (both engines) keeps what the conversion rollup reads of a click that converted
(sub1, slot, country) once retention drops the raw click.

Written by hand and self-contained. Steps per table, in the migration's one transaction: the old
table and its index names step aside, the partitioned table is made LIKE it, the rows are copied
(routed to their day), the old table goes. Going backwards makes plain tables again."""

from datetime import UTC, datetime, timedelta

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-05T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "partitions: click and impression range-partitioned by UTC day on PostgreSQL; converted_click"

AHEAD_DAYS = 7
_FK = "ON UPDATE CASCADE ON DELETE RESTRICT"


def _fks(table: str, columns: dict[str, str]) -> list[str]:
    return [
        f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey FOREIGN KEY ({column}) REFERENCES {target}(id) {_FK}"
        for column, target in columns.items()
    ]


# What each table is partitioned by, and what the partitioned table declares (names as before).
TABLES = {
    "click": {
        "key": "clicked_at",
        "keys": [
            "ALTER TABLE click ADD CONSTRAINT click_pkey PRIMARY KEY (id, clicked_at)",
            "ALTER TABLE click ADD CONSTRAINT click_click_id_key UNIQUE (click_id, clicked_at)",
        ],
        "fks": _fks("click", {"link": "link", "campaign": "campaign", "publisher": "app_user", "slot": "ad_slot"}),
        "indexes": [
            "CREATE INDEX click_campaign_time ON click (campaign, clicked_at)",
            "CREATE INDEX click_publisher_time ON click (publisher, clicked_at)",
            "CREATE INDEX click_slot_time ON click (slot, clicked_at) WHERE slot IS NOT NULL",
            "CREATE INDEX click_time ON click USING brin (clicked_at)",
        ],
        "per_partition": [],
        # The plain table's keys, for going backwards.
        "plain_keys": [
            "ALTER TABLE click ADD CONSTRAINT click_pkey PRIMARY KEY (id)",
            "ALTER TABLE click ADD CONSTRAINT click_click_id_key UNIQUE (click_id)",
        ],
        # The constraints whose index names must step aside: of the plain table, of the partitioned one.
        "constraints": ["click_pkey", "click_click_id_key"],
        "partitioned_constraints": ["click_pkey", "click_click_id_key"],
    },
    "impression": {
        "key": "viewed_at",
        "keys": ["ALTER TABLE impression ADD CONSTRAINT impression_pkey PRIMARY KEY (id, viewed_at)"],
        "fks": _fks(
            "impression", {"slot": "ad_slot", "creative": "creative", "campaign": "campaign", "publisher": "app_user"}
        ),
        "indexes": [
            "CREATE INDEX impression_campaign_time ON impression (campaign, viewed_at)",
            "CREATE INDEX impression_slot_time ON impression (slot, viewed_at)",
            "CREATE INDEX impression_time ON impression USING brin (viewed_at)",
        ],
        "per_partition": ["CREATE UNIQUE INDEX IF NOT EXISTS {partition}_offer ON {partition} (offer)"],
        "plain_keys": [
            "ALTER TABLE impression ADD CONSTRAINT impression_pkey PRIMARY KEY (id)",
            "ALTER TABLE impression ADD CONSTRAINT impression_offer_key UNIQUE (offer)",
        ],
        "constraints": ["impression_pkey", "impression_offer_key"],
        "partitioned_constraints": ["impression_pkey"],
    },
}
_INDEX_NAMES = {
    "click": ["click_campaign_time", "click_publisher_time", "click_slot_time", "click_time"],
    "impression": ["impression_campaign_time", "impression_slot_time", "impression_time"],
}


def _day_partition(table: str, day: datetime) -> list[str]:
    name = f"{table}_p{day:%Y%m%d}"
    start, end = day.strftime("%Y-%m-%d"), (day + timedelta(days=1)).strftime("%Y-%m-%d")
    return [
        f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')",
        *(ddl.format(partition=name) for ddl in TABLES[table]["per_partition"]),
    ]


async def _run(statements: list[str]) -> None:
    engine = engine_finder()
    for ddl in statements:
        await engine.run_ddl(ddl)


async def _partition(table: str) -> None:
    spec, key, old = TABLES[table], TABLES[table]["key"], f"{table}_unpartitioned"
    await _run(
        [
            *(f"DROP INDEX {index}" for index in _INDEX_NAMES[table]),
            f"ALTER TABLE {table} RENAME TO {old}",
            *(
                f"ALTER TABLE {old} RENAME CONSTRAINT {c} TO {old}_{c.removeprefix(table + '_')}"
                for c in spec["constraints"]
            ),
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE ({key})",
            *spec["keys"],
            *spec["fks"],
            *spec["indexes"],
            f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id",
            f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT",
            *(ddl.format(partition=f"{table}_default") for ddl in spec["per_partition"]),
        ]
    )
    rows = await engine_finder().run_ddl(
        f"SELECT DISTINCT to_char({key} AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day FROM {old}"  # noqa: S608
    )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    days = {datetime.strptime(r["day"], "%Y-%m-%d") for r in rows or []}  # noqa: DTZ007 - UTC days
    days |= {today + timedelta(days=n) for n in range(-1, AHEAD_DAYS + 1)}
    for day in sorted(days):
        await _run(_day_partition(table, day))
    await _run([f"INSERT INTO {table} SELECT * FROM {old}", f"DROP TABLE {old}"])  # noqa: S608


async def _unpartition(table: str) -> None:
    spec, partitioned = TABLES[table], f"{table}_partitioned"
    await _run(
        [
            *(f"DROP INDEX {index}" for index in _INDEX_NAMES[table]),
            f"ALTER TABLE {table} RENAME TO {partitioned}",
            *(
                f"ALTER TABLE {partitioned} RENAME CONSTRAINT {c} TO {partitioned}_{c.removeprefix(table + '_')}"
                for c in spec["partitioned_constraints"]
            ),
            f"CREATE TABLE {table} (LIKE {partitioned} INCLUDING DEFAULTS)",
            *spec["plain_keys"],
            *spec["fks"],
            *spec["indexes"],
            f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id",
            f"INSERT INTO {table} SELECT * FROM {partitioned}",  # noqa: S608
            f"DROP TABLE {partitioned} CASCADE",
        ]
    )


async def _forwards() -> None:
    if not isinstance(engine_finder(), SQLiteEngine):
        for table in TABLES:
            await _partition(table)


async def _backwards() -> None:
    if not isinstance(engine_finder(), SQLiteEngine):
        for table in TABLES:
            await _unpartition(table)


_PARAMS = {
    "default": "",
    "null": False,
    "primary_key": False,
    "unique": False,
    "index": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}
CONVERTED_CLICK = [
    ("click_id", Varchar, {"length": 48, "unique": True}),
    ("sub1", Varchar, {"length": 100}),
    ("slot", Integer, {"default": 0}),
    ("country", Varchar, {"length": 2}),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    manager.add_raw(_forwards)
    manager.add_raw_backwards(_backwards)
    manager.add_table(class_name="ConvertedClick", tablename="converted_click", schema=None, columns=None)
    for column, column_class, params in CONVERTED_CLICK:
        manager.add_column(
            table_class_name="ConvertedClick",
            tablename="converted_click",
            column_name=column,
            db_column_name=column,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={**_PARAMS, **params},
            schema=None,
        )
    return manager
