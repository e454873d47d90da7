"""The image store: content-addressed blobs, image and layer records, tags, and unpacking via the storage driver.

``ImageStore(engine)`` is the API other rooms use: ``resolve(ref_or_id)``,
``ensure_layers(record)`` and ``commit(stream, parent, config, history_comment, tags)``.
"""

from __future__ import annotations

from kernel.images.records import ImageRecord, LayerRecord
from kernel.images.store import ImageStore as _Store


class ImageStore(_Store):
    def commit(self, container_layer_tar_stream, parent: ImageRecord | None, config: dict | None,
               history_comment: str = "", tags=(), created_by: str = "", author: str = "") -> str:
        """A new image from ``parent`` plus a layer tar stream (uncompressed; None for none); returns its id.

        ``config`` is the runtime config (``Env``, ``Cmd`` …, the inner ``config`` of the
        image config document); None keeps the parent's.
        """
        from kernel.images.build import commit
        return commit(self, container_layer_tar_stream, parent, config, history_comment, list(tags),
                      created_by, author)


__all__ = ["ImageStore", "ImageRecord", "LayerRecord"]
