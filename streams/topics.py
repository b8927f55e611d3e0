"""Topic names. One place, so that producers outside the worker (MLLP ingress, loaders, the CLI)
and the Faust app agree."""
ADT_RAW = "adt.raw"
ADT_EVENTS = "adt.events"
ALERTS = "alerts"
# Gap transitions, routed like ADT alerts but by an agent of their own: a burst of them (coverage
# loaded for a population opens a screening gap per member) must not queue ahead of ED visits.
GAP_ALERTS = "alerts.gaps"
ENCOUNTERS = "encounters"
CLAIMS_MEDICAL = "claims.medical"
CLAIMS_PHARMACY = "claims.pharmacy"
ELIGIBILITY = "eligibility"
PROVIDERS = "providers"
ATTRIBUTION_OVERRIDES = "attribution.overrides"
ATTRIBUTION_CHANGES = "attribution.changes"
COHORTS = "cohorts"
VISIT_EXPIRY = "visits.expiry"
DLQ = "dlq"

# Topics written from outside the worker: they must exist before the first write.
INGRESS_TOPICS = [ADT_RAW, DLQ, CLAIMS_MEDICAL, CLAIMS_PHARMACY, ELIGIBILITY, PROVIDERS, ATTRIBUTION_OVERRIDES]
