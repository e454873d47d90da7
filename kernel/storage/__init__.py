"""Storage support shared by drivers: safe tar handling, the naive diff fallback, the conformance kit."""

# The journal of an unfinished "storage migrate", in the root. Named here so that every command
# can look for it without importing kernel.storage.migrate.
MIGRATION_JOURNAL = "storage-migration.json"
