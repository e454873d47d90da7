"""Transport contract: where images come from and go to (a registry, an OCI layout, an archive)."""

from __future__ import annotations

from pallet.kernel.drivers.base import Driver


class Transport(Driver):
    """Move images between a location and pallet's image store.

    A reference is ``NAME:LOCATION`` (``docker://busybox:latest``, ``oci:/tmp/layout:tag``);
    the core strips the prefix and passes the location. A transport is opened for one pull or
    push; its context's ``options`` are that operation's: ``platform`` (``os/arch[/variant]``
    or None for the host's) and ``tls_verify`` (a bool). Its ``home`` is
    ``<root>/transports/<name>``; the built-in transports keep nothing there.
    """

    kind = "registry"

    def pull(self, location: str, store, progress=None) -> str:
        """Copy the image at ``location`` into ``store`` (a :class:`pallet.kernel.images.ImageStore`); return its image id."""
        raise NotImplementedError

    def push(self, image_id: str, location: str, store, progress=None) -> str:
        """Copy the stored image ``image_id`` to ``location``; return the manifest digest written."""
        raise NotImplementedError

    def resolve(self, location: str) -> str:
        """Return the manifest digest (``sha256:…``) that ``location`` names now, without copying anything.

        Called by image trust (``kernel/trust/enforce.py``) to check a policy before pulling.
        """
        raise NotImplementedError

    def list_tags(self, location: str) -> list[str]:
        """Tags known at ``location``'s repository."""
        raise NotImplementedError
