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
    assert warnings == ['plugin "observer" failed in pallet_image_removed: RuntimeError: observer bug']


def _recorder(calls, label, raises=False, **marks):
    class Recorder:
        @hookimpl(**marks)
        def pallet_image_removed(self, image_id):
            calls.append(label)
            if raises:
                raise RuntimeError(f"{label} broke")

    return Recorder()


def test_broadcast_follows_pluggy_order_last_registered_first_and_tryfirst():
    calls, warnings = [], []
    manager = PluginManager(warn=warnings.append)
    manager.pm.register(_recorder(calls, "first-registered", tryfirst=True), name="a")
    manager.pm.register(_recorder(calls, "second"), name="b")
    manager.pm.register(_recorder(calls, "third", raises=True), name="c")
    manager.pm.register(_recorder(calls, "last-registered", trylast=True), name="d")
    manager.broadcast("pallet_image_removed", image_id="sha256:abc")
    manager.broadcast("pallet_image_removed", image_id="sha256:abc")
    assert calls == ["first-registered", "third", "second", "last-registered"] * 2
    assert warnings == ['plugin "c" failed in pallet_image_removed: RuntimeError: third broke'] * 2


def test_a_wrapper_sees_the_broadcast_around_every_observer():
    calls = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def pallet_image_removed(self, image_id):
            calls.append("before")
            result = yield
            calls.append("after")
            return result

    manager = PluginManager(warn=calls.append)
    manager.pm.register(_recorder(calls, "observer", raises=True), name="observer")
    manager.pm.register(Wrapper(), name="wrapper")
    manager.broadcast("pallet_image_removed", image_id="sha256:abc")
    assert calls == ["before", "observer", 'plugin "observer" failed in pallet_image_removed: RuntimeError: observer broke',
                     "after"]


BROADCAST = [name for name in HOOKS if not name.startswith("pallet_register_")]
# The core's code: where hooks are called (plugins/ only implements them).
CODE = "\n".join(p.read_text() for p in (REPO / "kernel").rglob("*.py") if p.name != "hookspecs.py")


@pytest.mark.parametrize("name", BROADCAST)
def test_every_broadcast_hook_is_called_by_the_core(name):
    assert re.search(rf"""broadcast\(\s*["']{name}["']""", CODE), f"nothing in kernel/ calls {name}"


@pytest.mark.parametrize("name", sorted(set(HOOKS) - set(BROADCAST)))
def test_every_registration_hook_is_called_by_the_core(name):
    # Driver registration hooks are called through DRIVER_KINDS (each proven by the built-in test above).
    assert re.search(rf"\b{name}\b", CODE), f"nothing in kernel/ calls {name}"


def test_pluggy_rejects_an_implementation_with_arguments_not_in_the_spec():
    import pluggy

    class Bad:
        @hookimpl
        def pallet_container_started(self, container, extra):
            pass

    manager = PluginManager()
    with pytest.raises(pluggy.PluginValidationError):
        manager.pm.register(Bad(), name="bad")
