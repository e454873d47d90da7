"""The storage driver conformance kit, as a pytest plugin (entry point ``pytest11``).

Importing this module must stay cheap: pytest loads it in every test session.
"""
