"""Choose the transport a reference names (``docker://``, ``oci:``, ``docker-archive:``, ``dir:``) and run pulls/pushes."""

from __future__ import annotations


def split(engine, text: str) -> tuple[str, str]:
    """``("docker", "busybox")`` for ``busybox`` or ``docker://busybox``; ``("oci", "/p:tag")`` for ``oci:/p:tag``."""
    if text.startswith("docker://"):
        return "docker", text[len("docker://"):]
    name, sep, location = text.partition(":")
    if sep and "/" not in name and name in engine.plugins.names("registry") and name != "docker":
        return name, location
    return "docker", text


def transport(engine, name: str, options: dict):
    """Transport ``name`` opened for one pull or push with ``options`` (``platform``, ``tls_verify``)."""
    return engine.open_driver("registry", name, options)


def pull(engine, name: str, progress=None, platform: str | None = None, tls_verify: bool = True,
         credentials: dict | None = None):
    """Pull ``name`` (any transport prefix) into the engine's store; return the ImageRecord (``run`` uses this).
    ``credentials`` (registry host -> (user, password)) win over the auth files (an API client's)."""
    from pallet.kernel.images import ImageStore

    from pallet.kernel.trust.enforce import admit

    engine.storage  # noqa: B018 - opened first: a storage driver that cannot work here fails before the download
    kind, location = split(engine, name)
    driver = transport(engine, kind, {"platform": platform, "tls_verify": tls_verify, "credentials": credentials})
    store = ImageStore(engine)
    admission = admit(engine, kind, location, driver)   # the trust policy, before anything is stored
    image_id = driver.pull(admission.location, store, progress)
    admission.stored(engine, store, image_id)
    engine.plugins.broadcast("pallet_image_pulled", reference=location, image_id=image_id)
    from pallet.kernel import events

    events.emit(engine, "image", "pull", location, {"name": location, "id": image_id})
    return store.load(image_id)
