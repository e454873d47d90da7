"""oci transport: OCI image layout directories (oci:PATH[:TAG])."""

from __future__ import annotations

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Transport
from pallet.kernel.errors import NotFound
from pallet.kernel.images import layout
from pallet.kernel.images import manifest as mf
from pallet.kernel.images.progress import Quiet


class OciTransport(Transport):
    description = "OCI image layout directories (oci:PATH[:TAG])"

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    def pull(self, location: str, store, progress=None) -> str:
        path, tag = layout.split_location(location)
        with store.transaction() as txn:
            manifest_digest, index_digest = layout.read_oci(txn, path, tag, mf.parse_platform(self.options.get("platform")))
            record = store.add_image(txn, manifest_digest, [layout.image_name(tag, path)], index_digest,
                                     progress=progress or Quiet())
        return record.id

    def push(self, image_id: str, location: str, store, progress=None) -> str:
        path, tag = layout.split_location(location)
        return layout.write_oci(store, store.load(image_id), path, tag)

    def resolve(self, location: str) -> str:
        import json
        path, tag = layout.split_location(location)
        try:
            entries = json.loads((path / "index.json").read_text())["manifests"]
        except (FileNotFoundError, KeyError, ValueError):
            raise NotFound(f"{path} is not an OCI image layout") from None
        for entry in entries:
            if tag is None or (entry.get("annotations") or {}).get(layout.REF_NAME) == tag:
                return entry["digest"]
        raise NotFound(f'no image tagged "{tag}" in OCI layout {path}')

    def list_tags(self, location: str) -> list[str]:
        import json
        path, _ = layout.split_location(location)
        entries = json.loads((path / "index.json").read_text()).get("manifests", [])
        return [e["annotations"][layout.REF_NAME] for e in entries if layout.REF_NAME in (e.get("annotations") or {})]


@hookimpl
def pallet_register_transports(register):
    register("oci", OciTransport)
