"""docker-archive transport: docker save tar archives (docker-archive:PATH[:REF])."""

from __future__ import annotations

import tarfile
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Transport
from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.images import archive
from pallet.kernel.images import reference as refs


def _split(location: str) -> tuple[Path, refs.Reference | None]:
    path, sep, ref = location.partition(":")
    return Path(path), (refs.parse(ref) if sep and ref else None)


class DockerArchiveTransport(Transport):
    description = "docker save tar archives (docker-archive:PATH[:REF])"

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    def pull(self, location: str, store, progress=None) -> str:
        path, ref = _split(location)
        if not path.is_file():
            raise NotFound(f"no such archive: {path}")
        try:
            with tarfile.open(path, "r:*") as tar:
                return archive.load_docker_archive(store, tar, ref)[1][0]
        except (tarfile.TarError, OSError) as exc:
            raise PalletError(f"invalid archive {path}: {exc}") from None

    def push(self, image_id: str, location: str, store, progress=None) -> str:
        path, ref = _split(location)
        record = store.load(image_id)
        archive.save(store, [(str(ref) if ref else image_id, record)], str(path), "docker-archive")
        return record.manifest_digest

    def list_tags(self, location: str) -> list[str]:
        return []


@hookimpl
def pallet_register_transports(register):
    register("docker-archive", DockerArchiveTransport)
