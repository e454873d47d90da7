"""docker-archive transport: docker save tar archives (docker-archive:PATH[:REF])."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, Transport


class DockerArchiveTransport(Transport):
    description = "docker save tar archives (docker-archive:PATH[:REF])"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_transports(register):
    register("docker-archive", DockerArchiveTransport)
