"""E-mail: messages written to an outbox in the transaction of the event that causes them, and
delivered over SMTP by the worker (exactly one Message-ID per row, retried with backoff)."""
