"""The audit log: rows are only ever inserted."""

from __future__ import annotations

from piccolo.columns import JSON, BigInt, ForeignKey, Timestamptz, Varchar
from piccolo.table import Table

from server.accounts.tables import User


class AuditEvent(Table):
    actor = ForeignKey(User, null=True, index=True)
    action = Varchar(length=64, index=True)
    object_type = Varchar(length=32)
    object_id = BigInt(null=True, default=None)
    detail = JSON(default="{}")
    created_at = Timestamptz(index=True)
