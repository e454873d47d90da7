"""pallet's core: the plugin contract, the plugin manager, config, stores, runtime and CLI."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pallet")
