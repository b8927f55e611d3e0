"""gapstream stream processing: the Faust app, its agents and the domain logic they wire to topics."""
