"""What every driver shares: a name, a probe of the host, and an honest 'not implemented yet'."""

from __future__ import annotations

from dataclasses import dataclass

from pallet.kernel.errors import NotImplementedYet


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


class Driver:
    """Common base. Subclasses set ``kind`` (via their kind base) and override ``probe``.

    ``implemented`` is False for a driver whose host probe is real but whose operations
    are not written yet; selecting it fails with a clear message instead of faking work.
    """

    kind = "driver"
    implemented = True
    description = ""

    @classmethod
    def probe(cls, home=None, options: dict[str, str] | None = None) -> Availability:
        """Check the host (kernel features, commands, devices) without changing anything.

        ``home`` is the directory the driver would use (``<root>/<name>`` for storage) or
        None when pallet only lists plugins; ``options`` are the driver's configured options.
        """
        return Availability.ok()

    @classmethod
    def not_implemented(cls, name: str, issue: str) -> NotImplementedYet:
        return NotImplementedYet(
            f'{cls.kind} driver "{name}" is not implemented yet in this version of pallet ({issue})'
        )


@dataclass(frozen=True)
class Change:
    """One path changed in a storage layer relative to its parent. ``kind`` is "A", "C" or "D" as in ``docker diff``.

    Defined here, beside ``Driver``, so that the naive diff code can make them without
    importing the storage driver base that calls it.
    """

    kind: str
    path: str
