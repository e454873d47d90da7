"""Security test fixtures: specs built by the real profiles, and runc bundles to enforce them live."""

from __future__ import annotations

import shutil

import pytest

from pallet.kernel.drivers import SecurityContext
from tests.security.sec_helpers import RuncBundle, base_spec


@pytest.fixture(scope="session")
def plugins():
    from pallet.kernel.plugins import PluginManager

    manager = PluginManager()
    manager.load("security")
    return manager


@pytest.fixture
def secure_spec(plugins, tmp_path):
    """``secure_spec(security_opts=[...], engine=None, **SecurityContext fields) -> (spec, applied profile names)``.

    Without ``engine``, an engine over an empty root in ``tmp_path`` with the session's plugins.
    """
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.security import apply_profiles

    def build(security_opts=(), spec=None, engine=None, **ctx_fields):
        if engine is None:
            engine = Engine(Config(root=tmp_path / "root", run_root=tmp_path / "run"))
            engine.plugins = plugins  # the cached property's slot: one plugin load per session
        if spec is None:
            uid = ctx_fields.get("user", "").split(":")[0]
            spec = base_spec(uid=int(uid) if uid.isdigit() else 0)
        ctx = SecurityContext(settings=engine.config.section("security"), **ctx_fields)
        applied = apply_profiles(engine, spec, ctx, list(security_opts))
        return spec, applied

    return build


@pytest.fixture
def runc(tmp_path):
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    return RuncBundle(tmp_path)
