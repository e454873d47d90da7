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


    def inspect(self, record: ImageRecord) -> dict:
        """The ``docker image inspect`` document for ``record``."""
        config = record.config
        driver = self.engine.storage
        top = record.top_layer
        return {
            "Id": record.id, "RepoTags": record.repo_tags, "RepoDigests": record.repo_digests, "Parent": "",
            "Comment": (config.get("history") or [{}])[-1].get("comment", ""), "Created": record.created,
            "Author": config.get("author", ""), "Config": record.runtime_config,
            "Architecture": config.get("architecture", ""), "Variant": config.get("variant", ""),
            "Os": config.get("os", ""), "Size": record.size,
            "GraphDriver": {"Name": self.engine.storage_driver_name,
                            "Data": driver.metadata(top) if top and driver.exists(top) else {}},
            "RootFS": {"Type": "layers", "Layers": config.get("rootfs", {}).get("diff_ids", [])},
            "Metadata": {"LastTagTime": record.added},
            "Descriptor": {"mediaType": record.manifest_media_type, "digest": record.manifest_digest},
        }


__all__ = ["ImageStore", "ImageRecord", "LayerRecord"]
