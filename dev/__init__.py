"""Development, demo and test helpers: the local Stripe stand-in, `make run`, demo data. The product
(server/, workers/) never imports this package (an import-linter contract checks it)."""
