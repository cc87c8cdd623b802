"""Tracking: tracked links, the click redirect hot path, click recording."""
