"""The engine a command works with: config, plugins and the selected storage driver, each made on first use."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pallet.kernel.config import Config
from pallet.kernel.errors import Conflict, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write

# Autodetect order when nothing chooses a driver (moby and containers/storage use the same idea).
STORAGE_PRIORITY = ("overlay2", "btrfs", "zfs", "devicemapper", "vfs")
DRIVER_RECORD = "storage-driver"


class Engine:
    """Built once per CLI invocation; every property is lazy so ``--help`` loads nothing."""

    def __init__(self, config: Config, cluster_store: str | None = None):
        self.config = config
        self.cluster_store = cluster_store  # --cluster-store; NetworkStore falls back to env and config

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def run_root(self) -> Path:
        return self.config.run_root

    @cached_property
    def plugins(self):
        from pallet.kernel.plugins import for_command
        return for_command(self.run_root)

    # --- drivers ------------------------------------------------------------------------
    def driver_home(self, kind: str, name: str) -> Path:
        """Where driver ``name`` of ``kind`` keeps its state (the kinds' base classes document it)."""
        if kind == "storage":
            return self.storage_home(name)
        homes = {
            "volume": self.root / "volumes",        # shared: the volume store keeps its records there too
            "network": self.root / "network" / name,
            "ipam": self.root / "network" / f"ipam-{name}",
            "runtime": self.run_root / "runtime" / name,
            "security": self.root / name,
            "registry": self.root / "transports" / name,
            "logging": self.root / "containers",    # each container's log driver is opened on its own directory
        }
        return homes[kind]

    def driver_context(self, kind: str, name: str, options: dict | None = None):
        """The context driver ``name`` of ``kind`` is opened with; storage options default to the config's."""
        from pallet.kernel.drivers import DriverContext

        if options is None:
            options = self.config.storage_options(name) if kind == "storage" else {}
        return DriverContext(home=self.driver_home(kind, name), options=options, root=self.root,
                             run_root=self.run_root, config=self.config)

    def open_driver(self, kind: str, name: str, options: dict | None = None):
        """Driver ``name`` of ``kind``, checked usable on this host and made in its context."""
        driver = self.plugins.open(kind, name, self.driver_context(kind, name, options))
        return self.with_remap(driver) if kind == "storage" else driver

    # --- storage ------------------------------------------------------------------------
    @cached_property
    def storage_remap(self):
        """The host-wide ID mapping a security profile gives containers (``SecurityProfile.storage_mapping``), or None."""
        settings = self.config.section("security")
        if not settings:
            return None
        from pallet.kernel.security import storage_mapping

        return storage_mapping(self.plugins, settings)

    def storage_home(self, name: str) -> Path:
        """``<root>/<driver>``, or ``<root>/<uid>.<gid>/<driver>`` for a remapped engine (as Docker's userns-remap)."""
        remap = self.storage_remap
        return self.root / name if remap is None else self.root / remap.home_name / name

    def with_remap(self, driver):
        """``driver`` (made on ``storage_home``) given the ID shifts its remapped home's layers are kept in."""
        if self.storage_remap is not None:
            driver.id_shift, driver.id_unshift = self.storage_remap.shift, self.storage_remap.unshift
        return driver

    def check_storage_choice(self) -> None:
        """Refuse an unknown ``--storage-driver`` (or ``[storage] driver``) before any command runs: exit 2.

        A name the entry-point cache knows costs no plugin import (``entrypoints.declares``); any
        other loads the storage plugins, to find it among their drivers or list the available ones.
        A known but broken or disabled driver is left to the command that opens storage, which
        reports it with its own exit code (125 for ``run``).
        """
        name = self.config.storage_driver_flag or self.config.storage_driver_configured
        if not name:
            return
        from pallet.kernel.entrypoints import declares

        if not declares(self.run_root, "pallet.storage", "storage", name):
            try:
                self.plugins.driver("storage", name)
            except UsageError:
                raise
            except PalletError:
                pass

    def recorded_storage_driver(self) -> str | None:
        try:
            return (self.root / DRIVER_RECORD).read_text().strip() or None
        except FileNotFoundError:
            return None

    def storage_data_present(self) -> list[str]:
        """Names of drivers whose home under the root holds data."""
        candidates = set(self.plugins.names("storage")) | set(STORAGE_PRIORITY)
        recorded = self.recorded_storage_driver()
        if recorded:
            candidates.add(recorded)
        from pallet.kernel.storage.migrate import kept_drivers

        kept = set(kept_drivers(self.root))  # backups left by "storage migrate --keep-old"
        return sorted(name for name in candidates if name not in kept and _has_data(self.storage_home(name)))

    def select_storage_driver(self) -> tuple[str, str]:
        """Return ``(driver name, how it was chosen)`` following the documented precedence."""
        cfg = self.config
        for name, source in (
            (cfg.storage_driver_flag, "flag or PALLET_STORAGE_DRIVER"),
            (cfg.storage_driver_configured, f"config {cfg.config_path}"),
        ):
            if name:
                self.plugins.driver("storage", name)  # unknown / broken -> clear error
                self._refuse_foreign_data(name)
                return name, source
        recorded = self.recorded_storage_driver()
        if recorded:
            return recorded, f"recorded in {self.root / DRIVER_RECORD}"
        present = self.storage_data_present()
        if len(present) == 1:
            return present[0], "data found on disk"
        if len(present) > 1:
            raise Conflict(
                f"{self.root} holds data of several storage drivers ({', '.join(present)}); "
                "choose one with --storage-driver"
            )
        return self._autodetect(), "autodetected"

    def _refuse_foreign_data(self, wanted: str) -> None:
        others = [name for name in self.storage_data_present() if name != wanted]
        if len(others) == 1:
            raise Conflict(
                f'storage driver "{wanted}" requested, but {self.root} holds data of "{others[0]}"; '
                f'run "pallet storage migrate --to {wanted}" or choose --storage-driver {others[0]}'
            )
        if others:
            listed = ", ".join(f'"{name}"' for name in others)
            raise Conflict(
                f'storage driver "{wanted}" requested, but {self.root} holds data of {listed}; '
                "migrate or remove all but one first"
            )

    def _autodetect(self) -> str:
        names = self.plugins.names("storage")
        ordered = [n for n in STORAGE_PRIORITY if n in names] + sorted(set(names) - set(STORAGE_PRIORITY))
        reasons = []
        for name in ordered:
            record = self.plugins.drivers["storage"][name]
            availability = record.availability(self.storage_home(name), self.config.storage_options(name))
            if availability.available:
                return name
            reasons.append(f"{name}: {availability}")
        raise PalletError("no usable storage driver on this host (" + "; ".join(reasons) + ")")

    @cached_property
    def storage_driver_name(self) -> str:
        return self.select_storage_driver()[0]

    @cached_property
    def storage(self):
        """The selected storage driver instance; records the choice in the root."""
        from pallet.kernel.storage import MIGRATION_JOURNAL

        name = self.storage_driver_name
        if (self.root / MIGRATION_JOURNAL).exists():  # the migrate module is imported only then
            from pallet.kernel.storage.migrate import in_progress

            journal = in_progress(self.root)
            if journal is not None:
                raise Conflict(f'a storage migration from "{journal.source}" to "{journal.target}" is in progress '
                               f'or was interrupted; run "pallet storage migrate --to {journal.target}" to finish '
                               'it (or "pallet storage migrate --abort")')
        try:
            driver = self.open_driver("storage", name)
        except UsageError:
            if self.recorded_storage_driver() != name:
                raise
            raise PalletError(f'{self.root} holds layers of storage driver "{name}", which is not installed: '
                              "reinstall the package that provides it (to leave a driver, run "
                              '"pallet storage migrate --to DRIVER" before uninstalling it)') from None
        if self.recorded_storage_driver() != name:
            atomic_write(self.root / DRIVER_RECORD, (name + "\n").encode())
        return driver

    def sweep_killed_builds(self) -> None:
        """Every command, first: remove what a ``kill -9``'d builder left (its containers, layers, dirs).
        Costs one ``listdir`` when no build journal is there."""
        journals = self.run_root / "build"
        try:
            if not any(name.endswith(".json") for name in os.listdir(journals)):
                return
        except FileNotFoundError:
            return
        from pallet.kernel.build.executor import clean_stale

        clean_stale(self)


def _has_data(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False
