"""The entry points of pallet's plugin groups: discovered by stevedore, remembered in a cache under the run root.

Asking stevedore costs ~20 ms in every process (it imports ``importlib.metadata``, which pulls in
the ``email`` package), more than the rest of ``pallet run``'s own work. So the listing of pallet's
groups, with the distribution that declares each entry point, is kept in one small JSON file. It is
trusted under stevedore's own rule: same interpreter, same ``sys.path``, same mtimes of every path
entry and of every ``entry_points.txt`` on it (a ``pip install`` or a new ``PYTHONPATH`` changes
one of them). Anything else rebuilds it through stevedore. It lives under the run root, so
``--root`` keeps a pallet self-contained and a reboot clears it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CACHE_FILE = "plugin-entrypoints.json"
FORMAT = 1


class Listing:
    """Entry points per group and the distribution of each, as one ``sys.path`` shows them."""

    def __init__(self, groups: dict[str, list[tuple[str, str]]], distributions: dict[tuple[str, str], tuple[str, str]]):
        self.groups = groups                # group -> [(name, value)] in discovery order
        self.distributions = distributions  # (group, name) -> (distribution, version)

    def entry_points(self, group: str) -> list[tuple[str, str]]:
        return self.groups.get(group, [])


def listing(groups: list[str], cache_dir: Path | None) -> Listing:
    """The listing of ``groups``: from the cache in ``cache_dir`` when it is still valid, else from stevedore."""
    if cache_dir is None:
        return _discover(groups)
    path = Path(cache_dir) / CACHE_FILE
    stamp = _stamp()
    cached = _read(path, stamp, groups)
    if cached is not None:
        return cached
    found = _discover(groups)
    _write(path, stamp, found)
    return found


def _stamp() -> list:
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


def _read(path: Path, stamp: list, groups: list[str]) -> Listing | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("stamp") != stamp:
        return None
    if sorted(data.get("groups", {})) != sorted(groups):
        return None
    return Listing(
        {group: [tuple(ep) for ep in eps] for group, eps in data["groups"].items()},
        {(group, name): (dist, version) for group, name, dist, version in data["distributions"]},
    )


def _write(path: Path, stamp: list, found: Listing) -> None:
    from pallet.kernel.fsutil import atomic_write

    data = {
        "format": FORMAT,
        "stamp": stamp,
        "groups": found.groups,
        "distributions": [[*key, *value] for key, value in found.distributions.items()],
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
        for ep in dist.entry_points:
            if ep.group in found:
                distributions.setdefault((ep.group, ep.name), (dist.metadata["Name"], dist.version))
    return Listing(found, distributions)
