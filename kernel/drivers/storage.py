"""Storage (graph) driver contract: the moby ProtoDriver shape plus diff operations.

A layer is identified by a string id chosen by the core (image layers use their chain id,
containers their container id). A driver keeps everything it owns under its context's ``home``
(``<root>/<driver name>``; the driver creates it, the core only passes the path and never reads
inside it). Its ``options`` are ``[storage.options.NAME]`` from ``pallet.toml`` overridden by
``--storage-opt``.

Errors (``pallet.errors``), which the conformance kit checks: a bad layer id or an unsupported
option is a :class:`UsageError` (see :meth:`StorageDriver.check_id` and
:meth:`StorageDriver.refuse_options`); creating a layer that exists is a :class:`Conflict`;
``get`` of a missing layer, or a missing ``parent``, is a :class:`NotFound`; any other failure
the user can act on is a :class:`PalletError` with a one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterator

from pallet.kernel.drivers.base import Change, Driver


class StorageDriver(Driver):
    """Create, mount and remove layers; produce and apply tar diffs.

    Only ``create``, ``create_rw``, ``remove``, ``get``, ``put``, ``exists`` are required.
    ``diff``, ``changes``, ``apply_diff`` and ``diff_size`` have a naive implementation
    here (mount both layers and compare / extract through the core's safe tar code); a
    driver overrides them when it knows a faster way (overlay2 reads its upper dir).
    ``layers`` has a fallback too: the layers this object created and did not remove, which
    is right only for a driver whose layers do not outlive the process; a driver that keeps
    layers on disk overrides it (migration and ``storage repair`` rely on it).
    """

    kind = "storage"
    # ``(uid, gid) -> (uid, gid)`` applied to layers as they are unpacked, and its inverse for the
    # diffs made from them; the engine sets both on a user-namespace-remapped home
    # (``[security] userns_remap``), whose layers are kept ID-shifted.
    id_shift = None
    id_unshift = None
    # True when ``apply_diff`` of a layer reads nothing of its parent (overlay2 fills each layer's own
    # diff directory), so a pull may fill the layers of a chain at once, each created (empty) in chain
    # order first. False (the default) unpacks them one after the other, parent first.
    parallel_apply = False

    # --- required ---------------------------------------------------------------------
    def create(self, layer_id: str, parent: str | None = None) -> None:
        """Create an empty read-only layer ``layer_id`` on top of ``parent`` (or a base layer)."""
        raise NotImplementedError

    def create_rw(self, layer_id: str, parent: str | None = None, opts: dict[str, str] | None = None) -> None:
        """Create a read-write (container) layer; ``opts`` carries per-container storage options (e.g. ``size``)."""
        raise NotImplementedError

    def remove(self, layer_id: str) -> None:
        """Remove a layer and everything the driver keeps for it. Removing a missing layer is not an error."""
        raise NotImplementedError

    def get(self, layer_id: str, mount_label: str = "") -> Path:
        """Mount the layer (with its parents) and return the directory holding its root filesystem.

        Mounts are reference counted: each ``get`` is balanced by one ``put``.
        ``mount_label`` is an SELinux context for the ``context=`` mount option, or "".
        """
        raise NotImplementedError

    def put(self, layer_id: str) -> None:
        """Release one ``get``; unmount when the count drops to zero."""
        raise NotImplementedError

    def exists(self, layer_id: str) -> bool:
        """Whether the driver holds ``layer_id``."""
        raise NotImplementedError

    # --- optional ---------------------------------------------------------------------
    def status(self) -> list[tuple[str, str]]:
        """Rows for ``pallet info`` (backing filesystem, pool, versions …)."""
        return [("Home", str(self.home))]

    def metadata(self, layer_id: str) -> dict[str, str]:
        """Low-level facts about a layer for ``inspect`` (e.g. UpperDir/LowerDir)."""
        return {}

    def cleanup(self) -> None:
        """Release everything held by this process (mounts, devices).

        Called after ``storage migrate`` removed the driver's layers and by the conformance kit
        after each test; a CLI process does not call it at exit, so nothing may depend on it.
        """

    def layers(self) -> list[str]:
        """Every layer id the driver holds (used by migration, repair and the conformance kit).

        The fallback lists the ids created through this object and not removed since, in
        creation order, checked against ``exists``; override it to read the driver's own
        bookkeeping, so that layers made by other processes are listed too.
        """
        return [layer for layer in self._created_here() if self.exists(layer)]

    # --- helpers for drivers ----------------------------------------------------------
    @staticmethod
    def check_id(layer_id: str) -> str:
        """Return ``layer_id``, or raise a UsageError when it is not safe as a file name.

        Ids are letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, at most
        128 characters: what the core ever passes (chain ids' hex, container ids). Call it at
        the top of every method that takes an id, before touching the disk.
        """
        from pallet.kernel.storage.layerids import check_layer_id

        return check_layer_id(layer_id)

    def refuse_options(self, opts: dict[str, str] | None, supported: tuple[str, ...] = ()) -> None:
        """Raise a UsageError for the first key of ``create_rw``'s ``opts`` not in ``supported``."""
        from pallet.kernel.storage.layerids import refuse_options

        # The driver's name for the message: the last part of its home (``<root>/<name>``).
        refuse_options(self.home.name or type(self).__name__, opts, supported)

    def _created_here(self) -> list[str]:
        # Kept by the fallback ``layers``: the base class wraps create/create_rw/remove below.
        return list(self.__dict__.setdefault("_pallet_created", {}))

    def __init_subclass__(cls, **kwargs):
        """Record creations and removals for the ``layers`` fallback, in subclasses that lack ``layers``."""
        super().__init_subclass__(**kwargs)
        if any("layers" in base.__dict__ for base in cls.__mro__ if base is not StorageDriver):
            return
        for method in ("create", "create_rw", "remove"):
            if method in cls.__dict__ and not getattr(cls.__dict__[method], "_pallet_tracked", False):
                setattr(cls, method, _tracked(cls.__dict__[method], method))

    # --- diff operations with a naive fallback ----------------------------------------
    def diff(self, layer_id: str, parent: str | None) -> Iterator[bytes]:
        """Yield an uncompressed tar of the changes from ``parent`` to ``layer_id`` (OCI whiteouts)."""
        from pallet.kernel.storage import naive
        return naive.diff(self, layer_id, parent)

    def changes(self, layer_id: str, parent: str | None) -> list[Change]:
        """List the paths added, changed or deleted in ``layer_id`` relative to ``parent``."""
        from pallet.kernel.storage import naive
        return naive.changes(self, layer_id, parent)

    def apply_diff(self, layer_id: str, parent: str | None, stream: BinaryIO) -> int:
        """Extract an uncompressed tar layer stream into ``layer_id``; return the bytes of content applied.

        Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are turned into the driver's own
        deletion markers. Entries escaping the layer root must be refused.
        """
        from pallet.kernel.storage import naive
        return naive.apply_diff(self, layer_id, parent, stream)

    def diff_size(self, layer_id: str, parent: str | None) -> int:
        """Size in bytes of the changes from ``parent`` to ``layer_id``."""
        from pallet.kernel.storage import naive
        return naive.diff_size(self, layer_id, parent)


def _tracked(function, method: str):
    """``function`` that also notes, for the ``layers`` fallback, the layer it created or removed."""
    import functools

    @functools.wraps(function)
    def wrapper(self, layer_id, *args, **kwargs):
        result = function(self, layer_id, *args, **kwargs)
        created = self.__dict__.setdefault("_pallet_created", {})
        if method == "remove":
            created.pop(layer_id, None)
        else:
            created[layer_id] = None
        return result

    wrapper._pallet_tracked = True
    return wrapper
