"""The HTTP API for organizations: subscriptions, delivery recovery, disclosures."""
