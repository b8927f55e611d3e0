"""Outputs: SQL (alerts, subscriptions, the delivery audit) and webhooks."""
