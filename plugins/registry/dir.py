"""dir transport: plain directories of manifest and blobs (dir:PATH)."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, Transport


class DirTransport(Transport):
    description = "plain directories of manifest and blobs (dir:PATH)"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_transports(register):
    register("dir", DirTransport)
