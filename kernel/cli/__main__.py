"""``python -m kernel.cli`` runs the pallet command (used by tests and the monitor)."""

from kernel.cli import main

main()
