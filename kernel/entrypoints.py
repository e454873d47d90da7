"""The entry points of pallet's plugin groups: discovered by stevedore, remembered in a cache under the run root.

Asking stevedore costs ~20 ms in every process (it imports ``importlib.metadata``, which pulls in
the ``email`` package), more than the rest of ``pallet run``'s own work. So the listing of pallet's
groups, with the distribution that declares each entry point, is kept in one small JSON file. It is
trusted under stevedore's own rule: same interpreter, same ``sys.path``, same mtimes of every path
entry and of every ``entry_points.txt`` on it (a ``pip install`` or a new ``PYTHONPATH`` changes
one of them). Anything else rebuilds it through stevedore. It lives under the run root, so
``--root`` keeps a pallet self-contained and a reboot clears it.

Once a group has been loaded, the cache also remembers which drivers each entry point
registered and which of the other hooks (``pallet_container_started``, …) it implements, so that
checking a driver name (``pallet --storage-driver NAME images``) needs no plugin import, and a
command imports only the plugins it uses (``PluginManager.engage``). That part is a hint: a name it
does not know is looked up by loading the group.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CACHE_FILE = "plugin-entrypoints.json"
FORMAT = 2


class Listing:
    """Entry points per group and the distribution of each, as one ``sys.path`` shows them."""

    def __init__(self, groups: dict[str, list[tuple[str, str]]], distributions: dict[tuple[str, str], tuple[str, str]],
                 registered: dict[str, dict[str, list[str]]] | None = None,
                 hooks: dict[str, list[str]] | None = None):
        self.groups = groups                # group -> [(name, value)] in discovery order
        self.distributions = distributions  # (group, name) -> (distribution, version)
        self.registered = registered or {}  # "group:name" -> {driver kind: [driver names]}, once loaded
        self.hooks = hooks or {}            # "group:name" -> [hooks it implements but pallet_register_*]
        self.saved_as: tuple[Path, list] | None = None  # (cache file, stamp) when it came from or went to one

    def entry_points(self, group: str) -> list[tuple[str, str]]:
        return self.groups.get(group, [])

    def remember(self, registered: dict[str, dict[str, list[str]]], hooks: dict[str, list[str]]) -> None:
        """Record the drivers entry points registered and the hooks they implement; rewrite the cache
        file when that changed it."""
        merged, merged_hooks = {**self.registered, **registered}, {**self.hooks, **hooks}
        if merged == self.registered and merged_hooks == self.hooks:
            return
        self.registered, self.hooks = merged, merged_hooks
        if self.saved_as is not None:
            _write(*self.saved_as, self)


def disabled_names() -> set[str]:
    """Entry-point names ``PALLET_DISABLE_PLUGINS`` keeps from being imported."""
    raw = os.environ.get("PALLET_DISABLE_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def declares(cache_dir: Path, group: str, kind: str, name: str) -> bool:
    """Whether an enabled entry point of ``group`` registered driver ``name`` of ``kind``, by the cache alone.

    Imports no plugin (nor pluggy). False means "not known without loading the group", which
    :meth:`pallet.kernel.plugins.PluginManager.driver` then does; it also fills the cache.
    """
    found = _read(Path(cache_dir) / CACHE_FILE, install_stamp(), None)
    if found is None:
        return False
    disabled = disabled_names()
    return any(name in found.registered.get(f"{group}:{entry_point}", {}).get(kind, [])
               for entry_point, _value in found.entry_points(group) if entry_point not in disabled)


def listing(groups: list[str], cache_dir: Path | None) -> Listing:
    """The listing of ``groups``: from the cache in ``cache_dir`` when it is still valid, else from stevedore."""
    if cache_dir is None:
        return _discover(groups)
    path = Path(cache_dir) / CACHE_FILE
    stamp = install_stamp()
    found = _read(path, stamp, groups)
    if found is None:
        found = _discover(groups)
        _write(path, stamp, found)
    found.saved_as = (path, stamp)
    return found


def install_stamp() -> list:
    """What the cache's validity depends on (stevedore hashes the same facts for its own cache)."""
    stamp: list = [sys.executable, sys.prefix]
    for entry in sys.path:
        stamp.append([entry, _mtime(entry or ".")])
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # a zip file, or an entry that does not exist
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                declared = os.path.join(entry, name, "entry_points.txt")
                stamp.append([declared, _mtime(declared)])
    return stamp


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _read(path: Path, stamp: list, groups: list[str] | None) -> Listing | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("stamp") != stamp:
        return None
    if groups is not None and sorted(data.get("groups", {})) != sorted(groups):
        return None
    return Listing(
        {group: [tuple(ep) for ep in eps] for group, eps in data["groups"].items()},
        {(group, name): (dist, version) for group, name, dist, version in data["distributions"]},
        data.get("registered") if isinstance(data.get("registered"), dict) else None,
        data.get("hooks") if isinstance(data.get("hooks"), dict) else None,
    )


def _write(path: Path, stamp: list, found: Listing) -> None:
    from pallet.kernel.fsutil import atomic_write

    data = {
        "format": FORMAT,
        "stamp": stamp,
        "groups": found.groups,
        "distributions": [[*key, *value] for key, value in found.distributions.items()],
        "registered": found.registered,
        "hooks": found.hooks,
    }
    try:  # durable=False: losing the cache only costs one rebuild
        atomic_write(path, json.dumps(data).encode(), durable=False)
    except OSError:
        pass  # a read-only run root: every command asks stevedore, as without a cache


def _discover(groups: list[str]) -> Listing:
    import importlib.metadata as md

    from stevedore import NamedExtensionManager

    found = {}
    for group in groups:
        # An empty name list imports nothing but gives stevedore's (cached) entry-point listing.
        manager = NamedExtensionManager(group, names=[])
        found[group] = [(ep.name, ep.value) for ep in manager.list_entry_points()]
    distributions: dict[tuple[str, str], tuple[str, str]] = {}
    for dist in md.distributions():
        ours = [ep for ep in dist.entry_points if ep.group in found]
        if not ours:
            continue
        # Parsed once per distribution that has some (each parse is an email-header parse of METADATA).
        origin = (dist.metadata["Name"], dist.version)
        for ep in ours:
            distributions.setdefault((ep.group, ep.name), origin)
    return Listing(found, distributions)
