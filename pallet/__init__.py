"""pallet: the vendor-facing API. ``from pallet import hookimpl``; drivers in ``pallet.drivers``, errors in
``pallet.errors``. The core lives in ``pallet.kernel`` (the checkout's ``kernel/``), the built-in plugins in
``pallet.plugins`` (``plugins/``)."""

from pallet.kernel import PLUGIN_API, __version__

__all__ = ["PLUGIN_API", "__version__", "hookimpl"]


def __getattr__(name):
    # ``hookimpl`` is made on first use so that ``pallet --help``/``--version`` never import pluggy.
    if name == "hookimpl":
        from pallet.kernel import hookimpl

        globals()["hookimpl"] = hookimpl
        return hookimpl
    raise AttributeError(f"module 'pallet' has no attribute {name!r}")
