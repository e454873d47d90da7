"""Moved to :mod:`pallet.kernel.conformance.pytest_plugin`; kept for an install whose ``pytest11``
entry point still names this module (its hooks add the options only once)."""

from pallet.kernel.conformance.pytest_plugin import pytest_addoption, pytest_configure  # noqa: F401
