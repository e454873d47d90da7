"""The driver base classes a vendor subclasses (re-exported from ``pallet.kernel.drivers``)."""

from pallet.kernel.drivers import *  # noqa: F401,F403
from pallet.kernel.drivers import __all__  # noqa: F401
