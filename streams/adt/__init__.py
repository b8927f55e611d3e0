"""HL7 v2 ADT: MLLP ingress, parsing to normalized events, and per-visit state."""
