"""Four eyes on scheduled batches (issue 14): `payout_change`, one row per finance change that shapes
payout batches (settings saves, publisher minimums and holds, held lines), which replaces the
comma-separated `payout_batch.editors`. Each id found there becomes a `line_held` row of its batch
(who held which line was never stored, so the row names the batch only), then the column goes.

Written by hand and self-contained. Piccolo creates new tables after running raw steps and drops
columns after creating tables, so the copy runs right after the table exists (`_run_add_tables`
below), in the same transaction. Going backwards restores an empty `editors` column."""

from enum import Enum

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder
from piccolo.table import Table

ID = "2026-12-04T17:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "foureyes: payout_change (finance changes that shape batches) replaces payout_batch.editors"

SUMMARY = "held a line of this batch"
KINDS = {k: k for k in ("schedule", "network_minimum", "publisher_minimum", "publisher_hold", "line_held")}


class User(Table, tablename="app_user", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


class PayoutBatch(Table, tablename="payout_batch", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
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


def _fk(references: type[Table], *, null: bool) -> dict:
    return {
        "references": references,
        "on_delete": OnDelete.restrict,
        "on_update": OnUpdate.cascade,
        "target_column": None,
        **_PARAMS,
        "null": null,
        "index": True,
    }


COLUMNS = [
    ("actor", ForeignKey, _fk(User, null=False)),
    ("kind", Varchar, {"length": 20, "default": "", "choices": Enum("ChangeKind", KINDS)}),
    ("currency", Varchar, {"length": 3, "default": ""}),
    ("publisher", ForeignKey, _fk(User, null=True)),
    ("batch", ForeignKey, _fk(PayoutBatch, null=True)),
    ("summary", Text, {"default": ""}),
    ("created_at", Timestamptz, {"default": TimestamptzNow()}),
]


async def _copy_editors() -> None:
    engine = engine_finder()
    rows = await engine.run_ddl("SELECT id, editors FROM payout_batch WHERE editors <> ''")
    for row in rows or []:
        batch_id = int(row["id"])
        for part in str(row["editors"]).split(","):
            if not (part.isascii() and part.isdigit()):  # only whole ids reach the statement below
                continue
            await engine.run_ddl(
                "INSERT INTO payout_change (actor, kind, currency, publisher, batch, summary, created_at) "  # noqa: S608
                f"SELECT u.id, 'line_held', b.currency, NULL, b.id, '{SUMMARY}', b.prepared_at "
                f"FROM payout_batch b, app_user u WHERE b.id = {batch_id} AND u.id = {int(part)}"
            )


class _Manager(MigrationManager):
    async def _run_add_tables(self, backwards: bool = False) -> None:
        await super()._run_add_tables(backwards=backwards)
        if not backwards and not self.preview:
            await _copy_editors()


async def forwards():
    manager = _Manager(migration_id=ID, app_name="affnet", description=DESCRIPTION)
    manager.add_table(class_name="PayoutChange", tablename="payout_change", schema=None, columns=None)
    for column, column_class, params in COLUMNS:
        manager.add_column(
            table_class_name="PayoutChange",
            tablename="payout_change",
            column_name=column,
            db_column_name=column,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={**_PARAMS, **params},
            schema=None,
        )
    manager.drop_column(
        table_class_name="PayoutBatch",
        tablename="payout_batch",
        column_name="editors",
        db_column_name="editors",
        schema=None,
    )
    return manager
