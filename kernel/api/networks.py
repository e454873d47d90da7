"""networks routes (not yet implemented)."""

ROUTES = []
