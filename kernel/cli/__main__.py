"""``python -m pallet.kernel.cli`` runs the pallet command (used by tests and the monitor)."""

from pallet.kernel.cli import main

main()
