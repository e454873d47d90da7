"""Whether a plugin's declared ``PALLET_PLUGIN_API`` range admits this pallet's ``PLUGIN_API``.

A range is comma-separated comparisons of dotted versions, all of which must hold, as in
``">=1.0,<2"``; missing parts count as 0 (``1`` is ``1.0.0``). That is the whole grammar:
no pre-releases, no wildcards, so no packaging library is needed at start-up.
"""

from __future__ import annotations

import operator
import re

OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
             ">": operator.gt, "<": operator.lt}
CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+){0,2})\s*$")


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))[:3]


def admits(declared: str, version: str) -> bool:
    """True when ``version`` satisfies every clause of ``declared``; ValueError for a malformed range."""
    if not isinstance(declared, str) or not declared.strip():
        raise ValueError(f"invalid PALLET_PLUGIN_API {declared!r}: expected e.g. '>=1.0,<2'")
    have = parse_version(version)
    for clause in declared.split(","):
        match = CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"invalid PALLET_PLUGIN_API {declared!r}: expected e.g. '>=1.0,<2'")
        if not OPERATORS[match.group(1)](have, parse_version(match.group(2))):
            return False
    return True


def mismatch(module) -> str:
    """Why ``module`` cannot be loaded by this pallet's plugin API, or "" when it can (or declares nothing)."""
    from pallet.kernel import PLUGIN_API

    declared = getattr(module, "PALLET_PLUGIN_API", None)
    if declared is None:
        return ""
    try:
        if admits(declared, PLUGIN_API):
            return ""
    except ValueError as exc:
        return str(exc)
    return f"needs pallet plugin API {declared}, this pallet has {PLUGIN_API}"
