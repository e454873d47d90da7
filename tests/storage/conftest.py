"""Fixtures for the storage tests: a scratch directory per test on the host filesystem (not overlay)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def scratch():
    """A fresh directory under /tmp, removed afterwards even when the test fails."""
    path = Path(tempfile.mkdtemp(prefix="pallet-storage-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
