"""Webhook delivery: Standard Webhooks signing and a dispatcher working from the SQL outbox."""
