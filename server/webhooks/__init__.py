"""Outbound deliveries: signed webhooks (Standard Webhooks) and publisher postbacks."""
