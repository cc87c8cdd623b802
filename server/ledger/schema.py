"""DDL the ledger needs beyond Piccolo's tables: one account per (owner, kind, currency), and
triggers that refuse any UPDATE or DELETE of ledger entries and transactions (MONEY.md I2), and
any DELETE of an account (its balance changes; the account itself stays for ever).

On PostgreSQL, ledger entries carry no foreign-key constraints (ENTRY_FOREIGN_KEYS is dropped by
a migration): checking two keys per entry row cost three quarters of bulk posting time (COPY of
3 million entries: 89k rows/s with the keys, 358k without). What they guarded is kept otherwise:
the columns are NOT NULL; the one posting function writes entries only for transaction ids it
has just inserted and for accounts it has just locked; transactions and accounts can never be
deleted (these triggers); and `affnet ledger check` reports any entry whose transaction or account
is missing (MONEY.md I6: "an orphan query returns 0 rows"). SQLite keeps its keys: they cost it
little, and it cannot drop a constraint without rebuilding the table."""

from __future__ import annotations

UNIQUE_ACCOUNT = (
    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_account_one_per_owner_kind_currency "
    "ON ledger_account (COALESCE(owner, 0), kind, currency)"
)

# Issued documents are kept as the ledger is (server/invoicing/tables.py): a correction is a credit note.
_APPEND_ONLY_TABLES = ("ledger_entry", "ledger_txn", "document", "document_file")
_NEVER_DELETED = ("ledger_account",)

ENTRY_FOREIGN_KEYS = {
    "ledger_entry_txn_fkey": "FOREIGN KEY (txn) REFERENCES ledger_txn(id) ON DELETE RESTRICT",
    "ledger_entry_account_fkey": "FOREIGN KEY (account) REFERENCES ledger_account(id) ON DELETE RESTRICT",
}


def _guarded(sqlite: bool) -> list[tuple[str, str]]:
    ops = ("UPDATE", "DELETE") if sqlite else ("UPDATE OR DELETE",)
    return [(t, op) for t in _APPEND_ONLY_TABLES for op in ops] + [(t, "DELETE") for t in _NEVER_DELETED]


def append_only_ddl(sqlite: bool) -> list[str]:
    if sqlite:
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: post a reversing transaction'); END"
            for table, op in _guarded(sqlite)
        ]
    return [
        "CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only: post a reversing transaction', TG_TABLE_NAME; END $$ LANGUAGE plpgsql",
        *(
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE {op} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
            for table, op in _guarded(sqlite)
        ),
    ]


def drop_append_only_ddl(sqlite: bool) -> list[str]:
    """Only for emptying a test database (PostgreSQL's TRUNCATE does not fire row triggers)."""
    if sqlite:
        return [f"DROP TRIGGER IF EXISTS {table}_no_{op.lower()}" for table, op in _guarded(sqlite)]
    return [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}" for table, _ in _guarded(sqlite)]
