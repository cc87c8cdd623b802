"""DDL the ledger needs beyond Piccolo's tables: one account per (owner, kind, currency), and
triggers that refuse any UPDATE or DELETE of ledger entries and transactions (MONEY.md I2)."""

from __future__ import annotations

UNIQUE_ACCOUNT = ("CREATE UNIQUE INDEX IF NOT EXISTS ledger_account_one_per_owner_kind_currency "
                  "ON ledger_account (COALESCE(owner, 0), kind, currency)")

_APPEND_ONLY_TABLES = ("ledger_entry", "ledger_txn")


def append_only_ddl(sqlite: bool) -> list[str]:
    if sqlite:
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: post a reversing transaction'); END"
            for table in _APPEND_ONLY_TABLES for op in ("UPDATE", "DELETE")
        ]
    return [
        "CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only: post a reversing transaction', TG_TABLE_NAME; END $$ LANGUAGE plpgsql",
        *(f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
          "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()" for table in _APPEND_ONLY_TABLES),
    ]


def drop_append_only_ddl(sqlite: bool) -> list[str]:
    """Only for emptying a test database (PostgreSQL's TRUNCATE does not fire row triggers)."""
    if sqlite:
        return [f"DROP TRIGGER IF EXISTS {table}_no_{op.lower()}" for table in _APPEND_ONLY_TABLES
                for op in ("UPDATE", "DELETE")]
    return [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}" for table in _APPEND_ONLY_TABLES]
