"""Ledger: double-entry accounts, transactions and entries; the only place money moves."""
