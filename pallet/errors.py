"""The errors a driver raises and the core turns into one line and an exit code (``pallet.kernel.errors``)."""

from pallet.kernel.errors import *  # noqa: F401,F403
from pallet.kernel.errors import __all__  # noqa: F401
