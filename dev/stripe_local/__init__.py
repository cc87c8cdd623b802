"""A small local stand-in for the Stripe API (Checkout, refunds, disputes, Connect), for development and tests.

It is a separate ASGI app (`affnet-dev stripe-local`); affnet's own app never imports it."""
