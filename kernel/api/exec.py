"""exec routes (not yet implemented)."""

ROUTES = []
