"""oci transport: OCI image layout directories (oci:PATH[:TAG])."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, Transport


class OciTransport(Transport):
    description = "OCI image layout directories (oci:PATH[:TAG])"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_transports(register):
    register("oci", OciTransport)
