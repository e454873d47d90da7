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
def secure_spec(plugins):
    """``secure_spec(security_opts=[...], **SecurityContext fields) -> (spec, applied profile names)``."""
    from pallet.kernel.security import apply_profiles

    def build(security_opts=(), spec=None, **ctx_fields):
        if spec is None:
            uid = ctx_fields.get("user", "").split(":")[0]
            spec = base_spec(uid=int(uid) if uid.isdigit() else 0)
        applied = apply_profiles(plugins, spec, SecurityContext(**ctx_fields), list(security_opts))
        return spec, applied

    return build


@pytest.fixture
def runc(tmp_path):
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    return RuncBundle(tmp_path)
