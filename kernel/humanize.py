"""Docker's way of showing sizes (decimal units, 3 significant digits) and ages ("2 hours ago")."""

from __future__ import annotations

from datetime import datetime, timezone

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"]


def size(value: int) -> str:
    amount = float(value)
    unit = 0
    while amount >= 1000 and unit < len(_UNITS) - 1:
        amount /= 1000
        unit += 1
    text = f"{amount:.3g}"
    if "e" in text:
        text = f"{amount:.0f}"
    return f"{text}{_UNITS[unit]}"


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    cleaned = text.strip().replace("Z", "+00:00")
    if "." in cleaned:
        head, _, rest = cleaned.partition(".")
        frac = "".join(c for c in rest if c.isdigit())
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
