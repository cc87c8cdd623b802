"""Intake limits against forged reports (issue 14, the pixel): conversions allowed per click and
a maximum sale per goal, a per-campaign pixel switch, each conversion's ordinal within its click
(unique, so racing reports cannot both take a click's last conversion), and a count of pixel
conversions in the hourly conversion rollup.

Written by hand and self-contained. Piccolo runs raw steps before adding columns, so the filling
and the unique index run right after the columns are added, in the same transaction
(`_run_add_columns` below), instead of in a second migration."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Boolean, Integer
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder

ID = "2026-12-04T17:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "pixel: conversions per click, max sale per goal, pixel switch, click ordinal, pixel count"

# Existing RevShare goals get this largest sale, in major units of their campaign's currency
# (10,000.00 EUR), at least a million minor units (¥1,000,000), or the goal's largest approved sale
# if that is more (advertisers accepted it): a report above it is refused, never charged.
# Advertisers change it on the goal form. The same rule as server/campaigns/service.py, copied.
DEFAULT_MAX_SALE_MAJOR = 10_000
DEFAULT_MAX_SALE_MINOR_AT_LEAST = 1_000_000
# Digits of the minor unit where it is not a hundredth, as Babel 2.19 (CLDR) gave them when this migration
# ran (copied here so that the migration imports no library); every other code has two.
MINOR_DIGITS = {
    "ADP": 0,
    "AFN": 0,
    "ALL": 0,
    "BHD": 3,
    "BIF": 0,
    "BYR": 0,
    "CLF": 4,
    "CLP": 0,
    "COP": 0,
    "DJF": 0,
    "ESP": 0,
    "GNF": 0,
    "HUF": 0,
    "IDR": 0,
    "IQD": 0,
    "IRR": 0,
    "ISK": 0,
    "ITL": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KPW": 0,
    "KRW": 0,
    "KWD": 3,
    "LAK": 0,
    "LBP": 0,
    "LUF": 0,
    "LYD": 3,
    "MGA": 0,
    "MGF": 0,
    "MMK": 0,
    "MRO": 0,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "SLL": 0,
    "SOS": 0,
    "STD": 0,
    "SYP": 0,
    "TMM": 0,
    "TND": 3,
    "TRL": 0,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "YER": 0,
    "ZMK": 0,
    "ZWD": 0,
}
UNIQUE_ORDINAL = (
    "CREATE UNIQUE INDEX IF NOT EXISTS conversion_click_goal_ordinal ON conversion (click_id, goal, click_ordinal)"
)
# Existing conversions are numbered within their click and goal in id order, so a click that
# already brought conversions has used its allowance. Only rows with an earlier sibling change.
NUMBER_EXISTING = (
    "UPDATE conversion SET click_ordinal = (SELECT COUNT(*) FROM conversion c2 WHERE c2.click_id = "
    "conversion.click_id AND c2.goal = conversion.goal AND c2.id <= conversion.id) WHERE EXISTS (SELECT 1 FROM "
    "conversion c3 WHERE c3.click_id = conversion.click_id AND c3.goal = conversion.goal AND c3.id < conversion.id)"
)
_PARAMS = {
    "null": False,
    "primary_key": False,
    "unique": False,
    "index": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}
COLUMNS = [
    ("Goal", "goal", "conversions_per_click", Integer, {"default": 1}),
    ("Goal", "goal", "max_sale_minor", BigInt, {"default": None, "null": True}),
    ("Campaign", "campaign", "pixel_enabled", Boolean, {"default": True}),
    ("Conversion", "conversion", "click_ordinal", Integer, {"default": 1}),
    ("ConversionHour", "conversion_hour", "pixel_conversions", BigInt, {"default": 0}),
]


async def _fill_and_index() -> None:
    engine = engine_finder()
    await engine.run_ddl("CREATE INDEX IF NOT EXISTS conversion_click_goal_tmp ON conversion (click_id, goal)")
    await engine.run_ddl(NUMBER_EXISTING)
    await engine.run_ddl("DROP INDEX IF EXISTS conversion_click_goal_tmp")
    await engine.run_ddl(UNIQUE_ORDINAL)
    rows = await engine.run_ddl(
        "SELECT g.id AS id, k.currency AS currency, (SELECT MAX(v.sale_amount_minor) FROM conversion v "
        "WHERE v.goal = g.id AND v.status = 'approved') AS approved_max FROM goal g JOIN campaign k "
        "ON k.id = g.campaign WHERE g.payout_model = 'revshare' AND g.max_sale_minor IS NULL"
    )
    for row in rows or []:
        default = DEFAULT_MAX_SALE_MAJOR * 10 ** MINOR_DIGITS.get(str(row["currency"]), 2)
        minor = max(default, DEFAULT_MAX_SALE_MINOR_AT_LEAST, int(row["approved_max"] or 0))
        # Integers only reach the statement (no text from the database).
        await engine.run_ddl(f"UPDATE goal SET max_sale_minor = {int(minor)} WHERE id = {int(row['id'])}")  # noqa: S608


class _Manager(MigrationManager):
    async def _run_add_columns(self, backwards: bool = False) -> None:
        await super()._run_add_columns(backwards=backwards)
        if not backwards and not self.preview:
            await _fill_and_index()


async def forwards():
    manager = _Manager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    for class_name, tablename, column, column_class, params in COLUMNS:
        manager.add_column(
            table_class_name=class_name,
            tablename=tablename,
            column_name=column,
            db_column_name=column,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={**_PARAMS, **params},
            schema=None,
        )

    async def drop_index():
        await engine_finder().run_ddl("DROP INDEX IF EXISTS conversion_click_goal_ordinal")

    manager.add_raw_backwards(drop_index)
    return manager
