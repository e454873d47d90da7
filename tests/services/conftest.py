"""Fixtures for the service tests: the container tests' ``bb`` root (busybox, leak check) and helpers."""

from __future__ import annotations

import json
import time

from tests.containers.conftest import bb, record  # noqa: F401  (fixtures shared with the container tests)


def eventually(predicate, timeout: float = 30.0, step: float = 0.1):
    """Poll ``predicate`` until it returns something true (the value) or the generous timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def state(pallet, name: str) -> dict:
    result = pallet("inspect", name, check=True)
    data = json.loads(result.stdout)[0]
    return {**data["State"], "RestartCount": data["RestartCount"]}
