"""Layer id checks shared by the built-in storage drivers (ids become directory names)."""

from __future__ import annotations

import re

from kernel.errors import PalletError

_LAYER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_layer_id(layer_id: str) -> str:
    """Refuse ids that could leave the driver's home or clash with its bookkeeping files."""
    if not isinstance(layer_id, str) or not _LAYER_ID.fullmatch(layer_id):
        raise PalletError(f'invalid layer id "{layer_id}"')
    return layer_id


def refuse_options(driver: str, opts: dict[str, str] | None, supported: tuple[str, ...] = ()) -> None:
    for key in opts or {}:
        if key not in supported:
            raise PalletError(f'storage option "{key}" is not supported by the {driver} driver')
