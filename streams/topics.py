"""Topic names. One place, so that producers outside the worker (MLLP ingress, loaders, the CLI)
and the Faust app agree."""
ADT_RAW = "adt.raw"
ADT_EVENTS = "adt.events"
ALERTS = "alerts"
ROSTER = "roster"
VISIT_EXPIRY = "visits.expiry"
DLQ = "dlq"

# Topics written from outside the worker: they must exist before the first write.
INGRESS_TOPICS = [ADT_RAW, ROSTER, DLQ]
