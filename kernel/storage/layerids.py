"""Layer ids and hidden work names shared by the built-in storage drivers (ids become directory names)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pallet.kernel.errors import UsageError

_LAYER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_layer_id(layer_id: str) -> str:
    """Refuse ids that could leave the driver's home or clash with its bookkeeping files (a UsageError)."""
    if not isinstance(layer_id, str) or not _LAYER_ID.fullmatch(layer_id):
        raise UsageError(f'invalid layer id "{layer_id}" (want letters, digits, "_", "." or "-", at most 128)')
    return layer_id


def refuse_options(driver: str, opts: dict[str, str] | None, supported: tuple[str, ...] = ()) -> None:
    """A UsageError for the first per-container option (``create_rw``'s ``opts``) not in ``supported``."""
    for key in sorted(opts or {}):
        if key not in supported:
            known = f" (supported: {', '.join(supported)})" if supported else ""
            raise UsageError(f'storage option "{key}" is not supported by the {driver} driver{known}')


def leftover_name(kind: str, layer_id: str) -> str:
    """A hidden name for a layer being created (``tmp``) or deleted (``rm``) by this process."""
    return f".{kind}-{layer_id}-{os.getpid()}-{os.urandom(4).hex()}"


def sweep_leftovers(directory: Path) -> None:
    """Delete what creations and removals killed half-way left behind (their process is gone)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if not (name.startswith(".tmp-") or name.startswith(".rm-")):
            continue
        try:
            pid = int(name.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(directory / name, ignore_errors=True)


def _alive(pid: int) -> bool:
    from pallet.kernel.procs import pid_exists

    return pid_exists(pid)
