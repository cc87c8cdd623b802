"""Every key a payout line leaves behind, in one place. Each is derived from a stored id and is itself
stored (a ledger transaction's idempotency key, a Stripe request's idempotency key, a transfer group,
a job id), so its text never changes: a changed key would post or pay a second time (MONEY.md I8).

ledger                                   Stripe                                   worker
payout-line:{line}:reserved[:retry-{n}]  payout-line:{line}:attempt:{attempt}     payout-batch:{batch}
payout-line:{line}:released[:retry-{n}]  (transfer idempotency key)               payout-batch:{batch}:line:
payout-line:{line}:returned[:retry-{n}]  batch-{batch} (transfer group)             {line}:attempt:{attempt}
payout-line:{line}:settled
transfer-reversal:{reversal id}
"""

from __future__ import annotations


def reserved_key(line_id: int, retry: int = 0) -> str:
    """The key of a line's reservation: its first, or the one made by its `retry`-th retry."""
    return f"payout-line:{line_id}:reserved" + (f":retry-{retry}" if retry else "")


def undo_key(line_id: int, undone: str, retry: int = 0) -> str:
    """The key that gives back a line's reservation: `released` (held) or `returned` (the transfer
    failed), for its first reservation or the one made by its `retry`-th retry."""
    return f"payout-line:{line_id}:{undone}" + (f":retry-{retry}" if retry else "")


def released_key(line_id: int) -> str:
    """The key giving back a held line's first reservation."""
    return undo_key(line_id, "released")


def returned_key(line_id: int) -> str:
    """The key returning the line's first reservation after a failed transfer."""
    return undo_key(line_id, "returned")


def settled_key(line_id: int) -> str:
    return f"payout-line:{line_id}:settled"


def reversal_key(reversal_id: str) -> str:
    """A transfer reversal at Stripe, returned to the publisher once."""
    return f"transfer-reversal:{reversal_id}"


def idempotency_key(line_id: int, attempt: int) -> str:
    """The Stripe idempotency key of a line's transfer, per attempt."""
    return f"payout-line:{line_id}:attempt:{attempt}"


def transfer_group(batch_id: int) -> str:
    """The Stripe transfer group of a batch's transfers (how reconcile and recovery find them)."""
    return f"batch-{batch_id}"


def execution_job_id(batch_id: int, *, line_id: int | None = None, attempt: int | None = None) -> str:
    """The worker job paying a batch: one per batch after approval, one per retried line's attempt."""
    if line_id is None:
        return f"payout-batch:{batch_id}"
    return f"payout-batch:{batch_id}:line:{line_id}:attempt:{attempt}"
