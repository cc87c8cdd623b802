"""Accounts: users and their roles, publisher and advertiser profiles, sessions and API keys."""
