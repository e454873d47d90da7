"""One way to open a driver: every kind takes the same typed context, through one function."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pallet.kernel.config import Config
from pallet.kernel.drivers import Availability, DriverContext, StorageDriver, Transport
from pallet.kernel.engine import Engine
from pallet.kernel.errors import Unavailable
from pallet.kernel.plugins import open_driver

REPO = Path(__file__).resolve().parents[2]
SOURCES = [p for folder in ("kernel", "plugins", "contrib", "bench") for p in (REPO / folder).rglob("*.py")]
# the open function (kernel/drivers/base.py: no pluggy, so the log pump can open a driver) and the
# plugin manager's records, which probe once per process
OPEN_FUNCTION = (REPO / "kernel" / "drivers" / "base.py", REPO / "kernel" / "plugins.py")


def _hits(pattern: str, skip=()) -> list[str]:
    regex = re.compile(pattern)
    return [f"{p.relative_to(REPO)}:{n}: {line.strip()}" for p in SOURCES if p not in skip
            for n, line in enumerate(p.read_text().splitlines(), 1) if regex.search(line)]


def test_drivers_are_constructed_only_by_the_open_function():
    assert _hits(r"\.cls\(", skip=OPEN_FUNCTION) == []
    assert _hits(r"\bcls\.probe\(", skip=OPEN_FUNCTION) == []


def test_the_old_open_patterns_are_gone():
    assert _hits(r"\bimplemented\s*=|\.implemented\b|not_implemented|NotImplementedYet") == []
    # (an "engine": (module, function, help) row of the CLI's command table is not a driver option)
    assert _hits(r"""["']engine["']\s*:(?!\s*\()|ctx\.engine|options\.get\(["']engine""") == []
    assert _hits(r"""getattr\([^)]*release_cluster""") == []


@pytest.fixture
def engine(tmp_path):
    return Engine(Config(root=tmp_path / "root", run_root=tmp_path / "run"))


@pytest.mark.parametrize("kind, name", [
    ("storage", "vfs"), ("volume", "local"), ("network", "bridge"), ("ipam", "default"),
    ("runtime", "pallet"), ("security", "capabilities"), ("registry", "dir"), ("logging", "none"),
])
def test_every_kind_is_opened_with_the_same_context(engine, kind, name):
    driver = engine.open_driver(kind, name, {"example": "1"})
    context = driver.context
    assert isinstance(context, DriverContext)
    assert (context.root, context.run_root, context.config) == (engine.root, engine.run_root, engine.config)
    assert driver.home == context.home == engine.driver_home(kind, name)
    assert driver.options == {"example": "1"}


def test_the_context_is_frozen(tmp_path):
    context = DriverContext(tmp_path, {"a": "1"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.home = tmp_path / "other"
    with pytest.raises(TypeError):
        context.options["a"] = "2"


def test_an_unavailable_driver_is_refused_naming_it_and_the_reason(tmp_path):
    class Absent(StorageDriver):
        @classmethod
        def probe(cls, home=None, options=None):
            return Availability.no("needs a widget")

    with pytest.raises(Unavailable, match='storage driver "absent" is unavailable on this host: needs a widget'):
        open_driver(Absent, "storage", "absent", DriverContext(tmp_path))


def test_an_unavailable_transport_is_named_as_one(tmp_path):
    class Offline(Transport):
        @classmethod
        def probe(cls, home=None, options=None):
            return Availability.no("offline")

    with pytest.raises(Unavailable, match='^transport "x" is unavailable'):
        open_driver(Offline, "registry", "x", DriverContext(tmp_path))
