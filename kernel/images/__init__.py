"""The image store: content-addressed blobs, image and layer records, tags, and unpacking via the storage driver.

``ImageStore(engine)`` is the API the rest of pallet uses: ``resolve(ref_or_id)``,
``ensure_layers(record)``, ``commit(stream, parent, config, history_comment, tags)`` and
``inspect(record)``; ``pallet.kernel.images.transfer.pull(engine, name)`` pulls through a transport.
"""

from __future__ import annotations

from pallet.kernel.images.records import ImageRecord, LayerRecord
from pallet.kernel.images.store import ImageStore

__all__ = ["ImageStore", "ImageRecord", "LayerRecord"]
