"""Storage (graph) driver contract: the moby ProtoDriver shape plus diff operations.

A layer is identified by a string id chosen by the core (image layers use their chain id,
containers their container id). A driver keeps everything it owns under its context's ``home``
(``<root>/<driver name>``); the core never reads inside it. Its ``options`` are
``[storage.options.NAME]`` from ``pallet.toml`` overridden by ``--storage-opt``.
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
    """

    kind = "storage"
    # ``(uid, gid) -> (uid, gid)`` applied to layers as they are unpacked, and its inverse for the
    # diffs made from them; the engine sets both on a user-namespace-remapped home
    # (``[security] userns_remap``), whose layers are kept ID-shifted.
    id_shift = None
    id_unshift = None

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
        """Release everything held by this process (mounts, devices) at shutdown."""

    def layers(self) -> list[str]:
        """Every layer id the driver holds (used by migration and repair)."""
        raise NotImplementedError

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
