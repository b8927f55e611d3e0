"""Claims, pharmacy fills and eligibility as kept per member: validation and corrections."""
