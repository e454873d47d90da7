"""Sizes in storage options (``size=10G``, ``dm.basesize=10G``), parsed as Docker does (binary units)."""

from __future__ import annotations

from pallet.kernel.errors import UsageError
from pallet.kernel.humanize import parse_bytes


def parse_size(text: str, what: str = "size") -> int:
    """``"512"``, ``"10k"``, ``"1.5G"``, ``"100MiB"``, ``"2GB"`` -> bytes (1k = 1024, like Docker's RAMInBytes)."""
    try:
        return parse_bytes(text)
    except ValueError:
        raise UsageError(f'invalid {what} "{text}": expected a number with an optional unit (k, m, g, t)') from None
