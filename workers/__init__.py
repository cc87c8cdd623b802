"""Background workers (arq on Redis): periodic jobs that call the domains' services."""
