"""Publisher payouts: Stripe Connect accounts, payout periods and batches, transfers."""
