"""The audit log: rows are only ever inserted.

Every domain records here, accounts included, so audit sits at the bottom of the domain order;
its actor points at the user table by name (a foreign key in the database, not an import)."""

from __future__ import annotations

from piccolo.columns import JSON, BigInt, ForeignKey, Timestamptz, Varchar
from piccolo.columns.reference import LazyTableReference
from piccolo.table import Table

USER = LazyTableReference("User", module_path="server.accounts.tables")


class AuditEvent(Table):
    actor = ForeignKey(USER, null=True, index=True)
    action = Varchar(length=64, index=True)
    object_type = Varchar(length=32)
    object_id = BigInt(null=True, default=None)
    detail = JSON(default="{}")
    created_at = Timestamptz(index=True)
