"""Example vendor plugins for pallet: ``copyfs`` (storage) and ``macvlan`` (network)."""
