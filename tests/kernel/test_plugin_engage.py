"""A container command imports only the plugins it uses (``PluginManager.engage``), and a plugin of an
engaged group that implements a lifecycle hook still sees every container, whether or not the cache
knows it yet. Two third-party plugins in the storage group, pip-installed: ``markerfs`` registers a
driver the command does not use; ``watcher`` registers nothing and observes the hooks. Both log each
import of their module, so the test reads what each process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pallet.kernel.entrypoints import CACHE_FILE, FORMAT
from tests.kernel.conftest import pip_install_target

def storage_plugin(driver: str, import_takes: float = 0.0) -> str:
    """A storage plugin module registering an unavailable driver ``driver``; its import logs itself to
    $PALLET_TEST_EVENTS when that is set, and sleeps ``import_takes`` seconds."""
    return f'''
import os
import time
from pallet import hookimpl
from pallet.drivers import Availability, StorageDriver

if "PALLET_TEST_EVENTS" in os.environ:
    with open(os.environ["PALLET_TEST_EVENTS"], "a") as handle:
        handle.write("imported {driver}\\n")
time.sleep({import_takes})


class TestDriver(StorageDriver):
    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.no("a test driver")


@hookimpl
def pallet_register_storage_drivers(register):
    register("{driver}", TestDriver)
'''

WATCHER = '''
import os
from pallet import hookimpl


def _log(line):
    with open(os.environ["PALLET_TEST_EVENTS"], "a") as handle:
        handle.write(line + "\\n")


_log("imported watcher")


@hookimpl
def pallet_container_created(container):
    _log(f"created {container.name}")


@hookimpl
def pallet_container_removed(container):
    _log(f"removed {container.name}")
'''


@pytest.fixture(scope="module")
def engage_site(tmp_path_factory):
    source = tmp_path_factory.mktemp("engage-src")
    (source / "pallet_engage_test_markerfs.py").write_text(storage_plugin("markerfs"))
    (source / "pallet_engage_test_watcher.py").write_text(WATCHER)
    (source / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "pallet-engage-test"
        version = "0.1"
        [project.entry-points."pallet.storage"]
        markerfs = "pallet_engage_test_markerfs"
        watcher = "pallet_engage_test_watcher"
        [tool.setuptools]
        py-modules = ["pallet_engage_test_markerfs", "pallet_engage_test_watcher"]
    '''))
    target = tmp_path_factory.mktemp("engage-site")
    pip_install_target(source, target)
    return target


def test_run_imports_only_the_driver_it_uses_and_still_reaches_every_observer(pallet, engage_site, tmp_path):
    events = tmp_path / "events"
    env = {"PYTHONPATH": str(engage_site), "PALLET_TEST_EVENTS": str(events)}
    pallet("image", "build-busybox", check=True)

    def run(name):
        if events.exists():
            events.unlink()
        result = pallet("run", "--rm", "--network", "none", "--name", name, "busybox", "true", env=env)
        assert result.returncode == 0, result.stderr
        return events.read_text().splitlines()

    # the first command with this sys.path lists the group by loading it whole: both are imported
    first = run("one")
    assert sorted(line for line in first if line.startswith("imported")) == ["imported markerfs", "imported watcher"]
    assert [line for line in first if not line.startswith("imported")] == ["created one", "removed one"]
    cache = json.loads((pallet.run_root / CACHE_FILE).read_text())
    assert cache["format"] == FORMAT
    assert cache["hooks"]["pallet.storage:watcher"] == ["pallet_container_created", "pallet_container_removed"]
    assert cache["registered"]["pallet.storage:markerfs"] == {"storage": ["markerfs"]}
    # from then on: the observer still sees the container, the unused driver is not imported at all
    assert run("two") == ["imported watcher", "created two", "removed two"]
    # a command that lists drivers still sees it
    listed = pallet("plugins", "ls", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "markerfs" in {row["Name"] for row in json.loads(listed.stdout)}
    assert "imported markerfs" in events.read_text().splitlines()
    # naming it imports it, and only then (it is unavailable here: the one-line error says so)
    events.unlink()
    named = pallet("--storage-driver", "markerfs", "run", "--rm", "busybox", "true", env=env)
    assert named.returncode != 0 and "markerfs" in named.stderr
    assert "imported markerfs" in events.read_text().splitlines()


def test_an_observer_the_cache_does_not_know_yet_is_reached(pallet, engage_site, tmp_path):
    """The listing cached for a sys.path without the watcher is not the one used once it is installed:
    an entry point the cache knows nothing of loads its group whole, so the observer is reached."""
    events = tmp_path / "events"
    pallet("image", "build-busybox", check=True)
    assert pallet("run", "--rm", "--network", "none", "busybox", "true").returncode == 0   # cache without it
    env = {"PYTHONPATH": str(engage_site), "PALLET_TEST_EVENTS": str(events)}
    result = pallet("run", "--rm", "--network", "none", "--name", "late", "busybox", "true", env=env)
    assert result.returncode == 0, result.stderr
    assert [line for line in events.read_text().splitlines() if not line.startswith("imported")] == \
        ["created late", "removed late"]


THREADS = '''
import json, sys, threading
from pallet.kernel.plugins import PluginManager

warnings = []
manager = PluginManager(warn=warnings.append, cache_dir=sys.argv[1])
if sys.argv[2] == "engaged":
    manager.engage("storage")
barrier, found, failed = threading.Barrier(6), [], []

def ask(name):
    barrier.wait()
    try:
        found.append(manager.driver("storage", name).name)
    except Exception as exc:
        failed.append(f"{name}: {exc}")

threads = [threading.Thread(target=ask, args=(name,)) for name in ["slowfs", "overlay2", "vfs"] * 2]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps([sorted(found), failed, warnings]))
'''


@pytest.mark.parametrize("mode", ["loaded", "engaged"])
def test_threads_asking_for_drivers_at_once_all_find_them(tmp_path, mode):
    """The builder's parallel stages open drivers from threads: one thread must not see the group half
    imported by another (CI: "unknown logging driver", and a plugin registered twice, "broken")."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "pallet_engage_test_slowfs.py").write_text(storage_plugin("slowfs", import_takes=0.3))  # another thread asks meanwhile
    dist = site / "pallet_engage_test_slowfs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pallet-engage-test-slowfs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pallet.storage]\nslowfs = pallet_engage_test_slowfs\n")
    cache = tmp_path / "run"
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    for _ in range(2):   # the second time, from the cache the first one filled (engage imports by name)
        proc = subprocess.run([sys.executable, "-P", "-c", THREADS, str(cache), mode], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [["overlay2", "overlay2", "slowfs", "slowfs", "vfs", "vfs"], [], []]
