"""Storage support shared by drivers: safe tar handling, the naive diff fallback, the conformance kit."""
