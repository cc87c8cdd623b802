"""Tests of tracking: click ids, deep-link safety, traffic classification, visitor hashing, event buffering."""
