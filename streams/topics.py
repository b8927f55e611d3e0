"""Topic names. One place, so that producers outside the worker (MLLP ingress, loaders, the CLI)
and the Faust app agree."""
ADT_RAW = "adt.raw"
ADT_EVENTS = "adt.events"
ALERTS = "alerts"
ENCOUNTERS = "encounters"
CLAIMS_MEDICAL = "claims.medical"
CLAIMS_PHARMACY = "claims.pharmacy"
ELIGIBILITY = "eligibility"
PROVIDERS = "providers"
ATTRIBUTION_OVERRIDES = "attribution.overrides"
ATTRIBUTION_CHANGES = "attribution.changes"
VISIT_EXPIRY = "visits.expiry"
DLQ = "dlq"

# Topics written from outside the worker: they must exist before the first write.
INGRESS_TOPICS = [ADT_RAW, DLQ, CLAIMS_MEDICAL, CLAIMS_PHARMACY, ELIGIBILITY, PROVIDERS, ATTRIBUTION_OVERRIDES]
