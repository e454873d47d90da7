"""Find plugins with stevedore, validate and call them with pluggy, and keep the table of drivers.

Only the entry-point groups a command needs are loaded, and a container command imports of them only
the plugins it uses (:meth:`PluginManager.engage`). The listing comes from
``pallet.kernel.entrypoints`` (stevedore's discovery, cached under the run root); each entry point is
imported here, as stevedore would, so a plugin that fails to import, or whose hooks do not match
``kernel/hookspecs.py``, becomes a *broken* row with the reason: one warning on stderr, and the
rest of the engine keeps working.
"""

from __future__ import annotations

import _thread
import importlib
import sys
from dataclasses import dataclass, field

import pluggy

from pallet.kernel import hookspecs
from pallet.kernel.drivers import Availability, Driver, DriverContext
from pallet.kernel.drivers.base import KIND_LABELS, open_driver  # noqa: F401  (the old home of open_driver)
from pallet.kernel.entrypoints import disabled_names
from pallet.kernel.errors import PalletError, Unavailable, UsageError

GROUPS = {
    "storage": "pallet.storage",
    "network": "pallet.network",
    "security": "pallet.security",
    "registry": "pallet.registry",
    "runtime": "pallet.runtime",
    "logging": "pallet.logging",
}

# Driver kind -> (entry-point group whose plugins provide it, registration hook).
DRIVER_KINDS = {
    "storage": ("storage", "pallet_register_storage_drivers"),
    "volume": ("storage", "pallet_register_volume_drivers"),
    "network": ("network", "pallet_register_network_drivers"),
    "ipam": ("network", "pallet_register_ipam_drivers"),
    "security": ("security", "pallet_register_security_profiles"),
    "registry": ("registry", "pallet_register_transports"),
    "runtime": ("runtime", "pallet_register_runtimes"),
    "logging": ("logging", "pallet_register_log_drivers"),
}

# How messages name a driver of each kind ("storage driver "zfs" is unavailable …").

BUILTIN_DISTRIBUTION = "pallet"


@dataclass
class PluginRecord:
    """One entry point: where it came from and whether it loaded."""

    name: str
    group: str
    target: str
    state: str = "loaded"          # loaded | broken | disabled, or pending (listed, not imported yet)
    error: str = ""
    module: object = None
    distribution: str = ""
    version: str = ""

    @property
    def origin(self) -> str:
        return "built-in" if self.distribution == BUILTIN_DISTRIBUTION else "third-party"

    def describe(self) -> str:
        dist = f"{self.distribution} {self.version}".strip() or "unknown distribution"
        return f'plugin "{self.name}" ({self.group}, from {dist})'


@dataclass
class DriverRecord:
    """One driver registered by a plugin."""

    name: str
    kind: str
    cls: type[Driver]
    plugin: PluginRecord
    _probed: dict = field(default_factory=dict, repr=False)

    def availability(self, home=None, options=None) -> Availability:
        """The driver's probe for ``home`` and ``options``, asked once per process for each pair."""
        key = (str(home) if home is not None else None, repr(sorted((options or {}).items())))
        if key not in self._probed:
            try:
                self._probed[key] = self.cls.probe(home, dict(options or {}))
            except Exception as exc:  # a vendor's probe must not take the listing down
                self._probed[key] = Availability.no(f"probe failed: {type(exc).__name__}: {exc}")
        return self._probed[key]


class PluginManager:
    """Loads plugin groups on demand and answers "which driver is called NAME"."""

    def __init__(self, warn=None, cache_dir=None):
        self.pm = pluggy.PluginManager("pallet")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[tuple[str, str], PluginRecord] = {}
        self.drivers: dict[str, dict[str, DriverRecord]] = {kind: {} for kind in DRIVER_KINDS}
        self._loaded_groups: set[str] = set()
        self._engaged: set[str] = set()       # groups whose plugins import as they are used (engage)
        # Held while plugins are imported and registered: the builder's parallel stages open drivers from
        # threads, and a second thread must not see a group half imported (CI: "unknown logging driver").
        # ``_thread``'s lock: ``threading`` is not imported by a command that does not need it.
        self._loading = _thread.RLock()
        self._warn = warn or _warn_stderr
        self._cache_dir = cache_dir  # where the entry-point listing is cached; None: ask stevedore
        self._listing = None
        self._commands_registered: set[str] = set()  # plugins whose pallet_register_commands was called

    # --- loading ------------------------------------------------------------------------
    def load(self, *groups: str) -> None:
        """Import and register every enabled plugin of ``groups`` (default: all), then collect drivers."""
        for group in groups or tuple(GROUPS):
            if group not in self._loaded_groups:
                with self._loading:
                    if group not in self._loaded_groups:
                        self._import([record for record in self._records(group) if record.state == "pending"])
                        self._loaded_groups.add(group)

    def engage(self, *groups: str) -> None:
        """Let ``groups`` take part in this command, importing only the plugins it uses.

        Like :meth:`load` for what the command sees: a driver of these groups is found by name, and a
        broadcast hook reaches every plugin of them that implements it. But a plugin is imported only
        when its driver is asked for by name or a hook it implements is broadcast, as far as the
        listing's cache knows which entry point does what (it learns that whenever a group is loaded).
        An entry point it knows nothing of — new, or broken the last time — makes the group load whole,
        with the warnings that gives. Until ``names`` or ``load`` lists such a group (both import it
        whole), :attr:`drivers` holds only what was imported of it.
        """
        self._engaged.update(group for group in groups or tuple(GROUPS) if group not in self._loaded_groups)

    def _records(self, group: str) -> list[PluginRecord]:
        """The entry points of ``group`` as records, made once each (``pending`` until imported)."""
        namespace = GROUPS[group]
        disabled = disabled_names()
        records = []
        for name, value in self._entry_points().entry_points(namespace):
            record = self.plugins.get((namespace, name))
            if record is None:
                record = self.plugins[(namespace, name)] = PluginRecord(name, namespace, value, state="pending")
                if name in disabled:
                    record.state, record.error = "disabled", "disabled by PALLET_DISABLE_PLUGINS"
            records.append(record)
        return records

    def _import(self, records: list[PluginRecord]) -> None:
        new = []
        for record in records:
            record.state = "loaded"
            try:
                record.module = _import_target(record.target)
            except (KeyboardInterrupt, AssertionError):  # what stevedore lets through, too
                raise
            except Exception as err:
                self._mark_broken(record, f"{type(err).__name__}: {err}")
                continue
            if self._register(record):
                new.append(record)
        for record in new:
            self._collect_drivers(record)
        # So that a later process can check a driver name, or import only what it uses, without importing.
        loaded = [record for record in new if record.state == "loaded"]
        self._entry_points().remember({f"{r.group}:{r.name}": self._registered_by(r) for r in loaded},
                                      {f"{r.group}:{r.name}": self._hooks_of(r) for r in loaded})

    def _hooks_of(self, record: PluginRecord) -> list[str]:
        return sorted(caller.name for caller in self.pm.get_hookcallers(record.module) or ()
                      if not caller.name.startswith("pallet_register_"))

    def _known(self, group: str) -> list[PluginRecord] | None:
        """The pending entry points of engaged ``group`` when the cache knows what each does, else None."""
        listing = self._entry_points()
        pending = [record for record in self._records(group) if record.state == "pending"]
        for record in pending:
            key = f"{record.group}:{record.name}"
            if key not in listing.registered or key not in listing.hooks:
                return None
        return pending

    def _import_declaring(self, group: str, kind: str, name: str) -> None:
        """Import the one pending entry point of engaged ``group`` that the cache says registers ``name``,
        or load the group whole when the cache cannot tell."""
        pending = self._known(group)
        registered = self._entry_points().registered
        claims = [record for record in pending or ()
                  if name in registered[f"{record.group}:{record.name}"].get(kind, ())]
        if pending is None or len(claims) > 1:  # unknown entry points, or a clash only the load reports
            self.load(group)
        elif claims:
            self._import(claims)

    def _import_implementers(self, hook_name: str) -> None:
        """Before a broadcast: import the engaged groups' pending plugins that implement ``hook_name``."""
        if not self._engaged - self._loaded_groups:
            return
        with self._loading:
            for group in sorted(self._engaged - self._loaded_groups):
                pending = self._known(group)
                if pending is None:
                    self.load(group)
                    continue
                hooks = self._entry_points().hooks
                self._import([record for record in pending if hook_name in hooks[f"{record.group}:{record.name}"]])

    def _entry_points(self):
        if self._listing is None:
            from pallet.kernel.entrypoints import listing

            self._listing = listing(list(GROUPS.values()), self._cache_dir)
        return self._listing

    def _register(self, record: PluginRecord) -> bool:
        from pallet.kernel.apiversion import mismatch

        reason = mismatch(record.module)
        if reason:
            self._mark_broken(record, reason)
            return False
        plugin_name = f"{record.group}:{record.name}"
        try:
            self.pm.register(record.module, name=plugin_name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(record.module):
                self.pm.unregister(record.module)
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            self._mark_broken(record, f"does not match the hook specs: {detail}")
            return False
        except ValueError as exc:  # the same module registered twice under two entry points
            self._mark_broken(record, str(exc))
            return False
        return True

    def _collect_drivers(self, record: PluginRecord) -> None:
        for kind, (_group, hook_name) in DRIVER_KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin is not record.module:
                    continue
                try:
                    impl.function(register=self._registrar(kind, record))
                except Exception as exc:
                    self._mark_broken(record, f"{hook_name} failed: {type(exc).__name__}: {exc}")

    def _registered_by(self, record: PluginRecord) -> dict[str, list[str]]:
        """``{kind: [driver names]}`` that ``record``'s plugin registered."""
        found: dict[str, list[str]] = {}
        for kind, drivers in self.drivers.items():
            names = sorted(name for name, driver in drivers.items() if driver.plugin is record)
            if names:
                found[kind] = names
        return found

    def _registrar(self, kind: str, record: PluginRecord):
        def register(name: str, cls: type) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Driver)):
                raise TypeError(f"{name!r} is not a pallet driver class")
            existing = self.drivers[kind].get(name)
            if existing is not None and existing.plugin is not record:
                self._warn(
                    f'{record.describe()} registers {kind} driver "{name}", already provided by '
                    f"{existing.plugin.describe()}; keeping the first"
                )
                return
            self.drivers[kind][name] = DriverRecord(name, kind, cls, record)
        return register

    def _mark_broken(self, record: PluginRecord, error: str) -> None:
        record.state, record.error = "broken", error
        self._fill_distribution(record)
        self._warn(f"{record.describe()} is broken and was skipped: {error}")

    # --- metadata -----------------------------------------------------------------------
    def _fill_distribution(self, record: PluginRecord) -> None:
        """Name the distribution that declares this entry point (shown only for some messages)."""
        if not record.distribution:
            found = self._entry_points().distributions.get((record.group, record.name), ("", ""))
            record.distribution, record.version = found

    def last_registered(self, record: PluginRecord) -> dict[str, list[str]]:
        """``{kind: [driver names]}`` the entry point registered when it last loaded (the listing's cache), or {}."""
        return self._entry_points().registered.get(f"{record.group}:{record.name}", {})

    def all_plugins(self) -> list[PluginRecord]:
        for record in self.plugins.values():
            self._fill_distribution(record)
        return list(self.plugins.values())

    # --- lookup -------------------------------------------------------------------------
    def driver(self, kind: str, name: str) -> DriverRecord:
        """The driver ``name`` of ``kind``, or a clear error: unknown (exit 2), broken, disabled."""
        group = DRIVER_KINDS[kind][0]
        if name not in self.drivers[kind] and group in self._engaged and group not in self._loaded_groups:
            with self._loading:
                if name not in self.drivers[kind] and group not in self._loaded_groups:
                    self._import_declaring(group, kind, name)
        if name not in self.drivers[kind]:  # not engaged, or the cache's hint was stale
            self.load(group)
        found = self.drivers[kind].get(name)
        if found is not None:
            return found
        namespace = GROUPS[group]
        record = self.plugins.get((namespace, name))
        if record is not None and record.state != "loaded":
            self._fill_distribution(record)
            raise PalletError(f'{kind} driver "{name}" cannot be used: {record.describe()} is {record.state}: {record.error}')
        names = ", ".join(self.names(kind)) or "none"
        raise UsageError(f'unknown {kind} driver "{name}" (available: {names})')

    def open(self, kind: str, name: str, context: DriverContext) -> Driver:
        """The driver ``name`` of ``kind`` made in ``context``: look up, probe, construct (every caller's way)."""
        record = self.driver(kind, name)
        return open_driver(record.cls, kind, name, context, record.availability(context.home, context.options))

    def declared(self, group: str) -> bool:
        """Whether an enabled entry point of ``group`` is installed (nothing is imported to tell)."""
        disabled = disabled_names()
        return any(name not in disabled for name, _value in self._entry_points().entry_points(GROUPS[group]))

    def names(self, kind: str) -> list[str]:
        self.load(DRIVER_KINDS[kind][0])
        return list(self.drivers[kind])

    def broadcast(self, hook_name: str, **kwargs) -> list:
        """Call broadcast hook ``hook_name`` through pluggy; return the implementations' non-None results.

        pluggy's order applies (last registered first, ``tryfirst``/``trylast``) and wrappers
        see the call. An implementation's exception is reported as one warning naming its
        plugin, and the others still run.
        """
        self._import_implementers(hook_name)
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            if not (impl.wrapper or impl.hookwrapper or getattr(impl.function, "_pallet_isolated", False)):
                impl.function = self._isolated(hook_name, impl)
        try:
            return hook(**kwargs)
        except Exception as exc:  # raised by a wrapper, around every implementation
            self._warn(f"a wrapper of {hook_name} failed: {type(exc).__name__}: {exc}")
            return []

    def _isolated(self, hook_name: str, impl):
        # pluggy stops a hook call at the first exception; an observer's bug must not stop the others.
        function = impl.function

        def isolated(*args):
            try:
                return function(*args)
            except Exception as exc:
                self._warn(f'plugin "{impl.plugin_name}" failed in {hook_name}: {type(exc).__name__}: {exc}')
                return None

        isolated._pallet_isolated = True
        return isolated

    def register_commands(self, cli, *groups: str) -> None:
        """Load ``groups`` (default: all) and call ``pallet_register_commands(cli)`` once on each plugin that has it."""
        self.load(*groups)
        for impl in self.pm.hook.pallet_register_commands.get_hookimpls():
            if impl.plugin_name in self._commands_registered:
                continue
            self._commands_registered.add(impl.plugin_name)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self._warn(f'plugin "{impl.plugin_name}" failed in pallet_register_commands: '
                           f"{type(exc).__name__}: {exc}")


# A resident engine's manager with every group loaded (see preload); a worker forked from it adopts it once.
_preloaded: dict = {}


def preload(cache_dir) -> None:
    """In a resident engine: import and register every group's plugins once, so that a forked worker's
    command does not (~10 ms of pluggy's registration per command here). Kept only when nothing warned —
    a broken plugin's warning must reach the command's own stderr, so such a command loads for itself."""
    warnings = []
    manager = PluginManager(warn=warnings.append, cache_dir=cache_dir)
    try:
        manager.load()
    except Exception:
        return
    saved = getattr(manager._entry_points(), "saved_as", None)
    if not warnings and saved is not None:
        manager._warn = _warn_stderr
        _preloaded.update(manager=manager, cache_dir=str(cache_dir), disabled=disabled_names(), stamp=saved[1])


def for_command(cache_dir) -> PluginManager:
    """The plugin manager of a command's engine: the resident engine's preloaded one when this process is
    its worker for the same run root and ``PALLET_DISABLE_PLUGINS`` is what the engine had (taken once:
    a second engine in the process gets its own) and no distribution was installed or removed since the
    engine started, else a new one that loads groups as they are needed."""
    manager = _preloaded.get("manager")
    if manager is not None and _preloaded["cache_dir"] == str(cache_dir) and _preloaded["disabled"] == disabled_names():
        from pallet.kernel.entrypoints import install_stamp

        stamp = _preloaded["stamp"]
        _preloaded.clear()
        if install_stamp() == stamp:   # else a distribution was installed or removed since: list them again
            return manager
    return PluginManager(cache_dir=cache_dir)


def _import_target(target: str):
    """The object an entry point's ``module:attr.attr [extras]`` value names, imported."""
    module_name, _, attrs = target.split("[")[0].partition(":")
    obj = importlib.import_module(module_name.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


def _warn_stderr(message: str) -> None:
    print(f"pallet: warning: {message}", file=sys.stderr)
