"""images routes (not yet implemented)."""

ROUTES = []
