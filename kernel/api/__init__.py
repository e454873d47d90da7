"""The Docker Engine API over pallet (``pallet serve``): a thin translation onto the kernel the CLI uses."""
