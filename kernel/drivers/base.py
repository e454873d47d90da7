"""What every driver shares: the context it is opened with, and a probe of the host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pallet.kernel.config import DEFAULT_ROOT, DEFAULT_RUN_ROOT, Config
from pallet.kernel.errors import Unavailable


@dataclass(frozen=True)
class Availability:
    """Whether a driver can work on this host, and if not, the exact reason."""

    available: bool
    reason: str = ""

    @classmethod
    def ok(cls, detail: str = "") -> Availability:
        return cls(True, detail)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)

    def __str__(self) -> str:
        if self.available:
            return "available" + (f": {self.reason}" if self.reason else "")
        return f"unavailable: {self.reason}"


@dataclass(frozen=True)
class DriverContext:
    """Everything the core gives a driver when it opens one; the same for every kind of driver.

    ``home`` is the driver's own directory (see each kind's base class for where it is; the core
    passes the path, the driver creates it when it first needs it). ``options`` are the driver's
    configured options (read-only). ``root`` and ``run_root`` are the engine's ``--root`` and
    ``--run-root``; ``config`` is the whole :class:`pallet.kernel.config.Config` (``pallet.toml``
    and the global flags), for a driver that has a section of its own. A driver used outside an
    engine (the conformance kit, a test) gets the defaults.
    """

    home: Path
    options: Mapping = field(default_factory=dict)
    root: Path = DEFAULT_ROOT
    run_root: Path = DEFAULT_RUN_ROOT
    config: Config = field(default_factory=Config)

    def __post_init__(self):
        object.__setattr__(self, "home", Path(self.home))
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "run_root", Path(self.run_root))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options or {})))


class Driver:
    """Common base. Subclasses set ``kind`` (via their kind base) and override ``probe``.

    Every driver is made the same way, by :meth:`pallet.kernel.plugins.PluginManager.open`:
    ``cls(context)`` with a :class:`DriverContext`, once ``probe`` said it is available. A
    subclass that overrides ``__init__`` calls ``super().__init__(context)`` first; it may then
    refuse bad options with a :class:`pallet.kernel.errors.UsageError`.
    """

    kind = "driver"
    description = ""  # one line about the driver, in ``pallet plugins ls --json``

    def __init__(self, context: DriverContext):
        self.context = context
        self.home = context.home
        self.options = dict(context.options)

    @classmethod
    def probe(cls, home=None, options: Mapping | None = None) -> Availability:
        """Check the host (kernel features, commands, devices) without changing anything.

        ``home`` is the directory the driver would use (its context's ``home``) or None when
        pallet only lists plugins; ``options`` are the driver's configured options. Called
        before every construction (the answer is kept for the rest of the process for the
        same home and options) and once per process for ``pallet plugins ls``.
        """
        return Availability.ok()


@dataclass(frozen=True)
class Change:
    """One path changed in a storage layer relative to its parent. ``kind`` is "A", "C" or "D" as in ``docker diff``.

    Defined here, beside ``Driver``, so that the naive diff code can make them without
    importing the storage driver base that calls it.
    """

    kind: str
    path: str


KIND_LABELS = {"registry": "transport", "runtime": "runtime", "security": "security profile", "logging": "log driver"}


def open_driver(cls: type[Driver], kind: str, name: str, context: DriverContext,
                availability: Availability | None = None) -> Driver:
    """``cls(context)`` once the driver's probe (``availability``, else asked now) says it works here.

    The one place a driver object is made; an unavailable driver raises
    :class:`pallet.kernel.errors.Unavailable` naming it and the probe's reason.
    """
    if availability is None:
        availability = cls.probe(context.home, dict(context.options))
    if not availability.available:
        label = KIND_LABELS.get(kind, f"{kind} driver")
        raise Unavailable(f'{label} "{name}" is unavailable on this host: {availability.reason}')
    return cls(context)
