"""The plugin page: every hook is documented, implemented or observed, and validated by pluggy."""

import inspect
import re

import pytest

from pallet.kernel import hookimpl, hookspecs
from pallet.kernel.plugins import DRIVER_KINDS, PluginManager
from tests.conftest import REPO

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("pallet_"))


def test_there_are_registration_and_broadcast_hooks():
    assert {hook for _, hook in DRIVER_KINDS.values()} <= set(HOOKS)
    assert "pallet_spec_amend" in HOOKS and "pallet_container_started" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_docstring_saying_what_to_return(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 40
    assert "Return" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_described_in_the_plugin_guide(name):
    guide = (REPO / "docs" / "plugins.md").read_text()
    assert re.search(rf"`{name}\b", guide), f"{name} is missing from docs/plugins.md"


@pytest.mark.parametrize("kind", sorted(DRIVER_KINDS))
def test_every_registration_hook_has_a_builtin_implementation(kind):
    manager = PluginManager(warn=pytest.fail)
    assert manager.names(kind), f"no built-in registers a {kind} driver"
    for record in manager.drivers[kind].values():
        assert record.plugin.distribution == "pallet" or record.plugin.origin == "third-party"


class Observer:
    """An in-process plugin observing lifecycle events."""

    def __init__(self):
        self.events = []

    @hookimpl
    def pallet_container_stopped(self, container, exit_code):
        self.events.append(("stopped", container, exit_code))

    @hookimpl
    def pallet_image_removed(self, image_id):
        raise RuntimeError("observer bug")


def test_broadcast_reaches_observers_and_isolates_their_failures():
    warnings = []
    manager = PluginManager(warn=warnings.append)
    observer = Observer()
    manager.pm.register(observer, name="observer")
    manager.broadcast("pallet_container_stopped", container="c1", exit_code=3)
    manager.broadcast("pallet_image_removed", image_id="sha256:abc")
    assert observer.events == [("stopped", "c1", 3)]
    assert len(warnings) == 1 and "observer bug" in warnings[0] and "pallet_image_removed" in warnings[0]


def test_pluggy_rejects_an_implementation_with_arguments_not_in_the_spec():
    import pluggy

    class Bad:
        @hookimpl
        def pallet_container_started(self, container, extra):
            pass

    manager = PluginManager()
    with pytest.raises(pluggy.PluginValidationError):
        manager.pm.register(Bad(), name="bad")
