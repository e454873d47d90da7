"""Sizes and ages as Docker shows and reads them: ``1.5MB``, ``12.3MiB``, ``2 hours ago``, ``512m``."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
_MULTIPLES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def _scaled(value: float, base: int, units: list[str], precision: int) -> str:
    amount, unit = float(value), 0
    while abs(amount) >= base and unit < len(units) - 1:
        amount /= base
        unit += 1
    text = f"{amount:.{precision}g}"
    if "e" in text:  # 999.9 at 3 digits
        text = f"{amount:.0f}"
    return f"{text}{units[unit]}"


def size(value: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units (``docker images`` uses 3 digits, ``prune`` 4)."""
    return _scaled(value, 1000, _DECIMAL, precision)


def binary_size(value: float) -> str:
    """go-units BytesSize: binary units, 4 digits (``docker stats``)."""
    return _scaled(value, 1024, _BINARY, 4)


def parse_bytes(text: str) -> int:
    """go-units RAMInBytes: ``"512"``, ``"10k"``, ``"1.5G"``, ``"100MiB"``, ``"2GB"`` -> bytes (1k = 1024).

    Raises ``ValueError``; callers phrase the message for their flag or option.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"invalid size {text!r}")
    number, unit = match.groups()
    return int(float(number) * _MULTIPLES[unit.lower()])


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    cleaned = text.strip().replace("Z", "+00:00")
    if "." in cleaned:
        head, _, rest = cleaned.partition(".")
        frac = "".join(c for c in rest if (c.isascii() and c.isdigit()))
        zone = rest[len(frac):]
        cleaned = f"{head}.{frac[:6].ljust(6, '0')}{zone}"
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def since(text: str) -> str:
    """``About an hour ago``, ``3 days ago`` … as ``docker images`` prints CREATED."""
    when = parse_time(text)
    if when is None:
        return "N/A"
    seconds = max(0, (datetime.now(timezone.utc) - when).total_seconds())
    return duration(seconds) + " ago"


def duration(seconds: float) -> str:
    # Thresholds follow go-units HumanDuration.
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 1.5:
        return "About an hour"
    if hours < 48:
        return f"{int(round(hours))} hours"
    if hours < 24 * 7 * 2:
        return f"{int(hours // 24)} days"
    if hours < 24 * 30 * 2:
        return f"{int(hours // 24 // 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{int(hours // 24 // 30)} months"
    return f"{int(hours // 24 // 365)} years"
