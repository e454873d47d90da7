"""dir transport: plain directories of manifest and blobs (dir:PATH), the layout ``skopeo copy … dir:`` writes."""

from __future__ import annotations

from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Transport
from pallet.kernel.images import layout
from pallet.kernel.images.blobs import sha256_digest
from pallet.kernel.images.progress import Quiet


class DirTransport(Transport):
    description = "plain directories of manifest and blobs (dir:PATH)"

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    def pull(self, location: str, store, progress=None) -> str:
        path = Path(location)
        with store.transaction() as txn:
            manifest_digest = layout.read_dir(txn, path)
            record = store.add_image(txn, manifest_digest, [layout.image_name(None, path)],
                                     progress=progress or Quiet())
        return record.id

    def push(self, image_id: str, location: str, store, progress=None) -> str:
        return layout.write_dir(store, store.load(image_id), Path(location))

    def resolve(self, location: str) -> str:
        return sha256_digest((Path(location) / "manifest.json").read_bytes())

    def list_tags(self, location: str) -> list[str]:
        return []


@hookimpl
def pallet_register_transports(register):
    register("dir", DirTransport)
