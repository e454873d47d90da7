"""Fixtures for the image store tests: a pallet root on the vfs driver and a store snapshot helper."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import Pallet


@pytest.fixture
def vpallet(tmp_path) -> Pallet:
    """``pallet`` on a private root with the vfs storage driver (works on any filesystem)."""
    return Pallet(tmp_path / "root", tmp_path / "run", env={"PALLET_STORAGE_DRIVER": "vfs"})


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (except lock files) with a hash of its content or its link target."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if name == "lock":
                continue
            if path.is_symlink():
                result[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                result[rel] = "dir"
    return result
