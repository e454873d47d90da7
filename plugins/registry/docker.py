"""docker transport: OCI distribution v2 registries (docker://HOST/REPO:TAG)."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, Transport


class DockerTransport(Transport):
    description = "OCI distribution v2 registries (docker://HOST/REPO:TAG)"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_transports(register):
    register("docker", DockerTransport)
