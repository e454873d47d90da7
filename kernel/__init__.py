"""pallet's core: the plugin contract, the plugin manager, config, stores, runtime and CLI."""

__version__ = "0.1.0"

# The plugin contract's version (semver): see docs/plugins.md for what each part promises.
PLUGIN_API = "1.0.0"


def __getattr__(name):
    # ``hookimpl`` is made on first use so that ``pallet --help``/``--version`` never import pluggy.
    if name == "hookimpl":
        import pluggy

        global hookimpl
        hookimpl = pluggy.HookimplMarker("pallet")
        return hookimpl
    raise AttributeError(f"module 'pallet.kernel' has no attribute {name!r}")
