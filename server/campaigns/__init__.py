"""Campaigns: what advertisers offer (goals, budgets, caps, creatives) and who may promote it."""
