"""Care gaps: measure definitions as data, their evaluation, and the lifecycle of each member's gaps."""
