"""Tests of campaigns: terms, memberships, the marketplace, creatives."""
