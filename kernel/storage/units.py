"""Human sizes for storage options (``size=10G``, ``dm.basesize=10G``), parsed as Docker does (binary units)."""

from __future__ import annotations

import re

from pallet.kernel.errors import UsageError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """``"512"``, ``"10k"``, ``"1.5G"``, ``"100MiB"``, ``"2GB"`` -> bytes (1k = 1024, like Docker's RAMInBytes)."""
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f'invalid {what} "{text}": expected a number with an optional unit (k, m, g, t)')
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])
