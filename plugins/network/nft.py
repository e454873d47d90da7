"""nftables for pallet: one ``ip`` table per root (and an ``ip6`` one while it has IPv6 networks), replaced
atomically from the drivers' state on disk."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from pallet.kernel.errors import PalletError

PORT_COMMENT = "pallet-port"


def table_name(root: Path) -> str:
    """``pallet_<hash of the root>``: parallel roots never share, and teardown deletes exactly its own."""
    return "pallet_" + hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:10]


def run_nft(script: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PalletError(f"nft failed: {proc.stderr.strip()}")


def replace_table(name: str, body: str | None, family: str = "ip") -> None:
    """Swap the whole table for ``body`` in one transaction; ``None`` deletes it. ``family`` ``ip6``
    is the root's table for its IPv6 networks (the same name)."""
    script = f"table {family} {name}\ndelete table {family} {name}\n"
    if body is not None:
        script += f"table {family} {name} {{\n{body}}}\n"
    run_nft(script)


def table_exists(name: str, family: str = "ip") -> bool:
    proc = subprocess.run(["nft", "list", "table", family, name], capture_output=True, text=True)
    return proc.returncode == 0


def published_ports() -> set[tuple[str, str, int]]:
    """(proto, host ip, port) DNAT-ed by any pallet table on this host, read back from rule comments."""
    proc = subprocess.run(["nft", "-j", "list", "ruleset", "ip"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PalletError(f"nft failed: {proc.stderr.strip()}")
    found = set()
    for item in json.loads(proc.stdout).get("nftables", []):
        rule = item.get("rule")
        if not rule or not rule.get("table", "").startswith("pallet_"):
            continue
        parts = rule.get("comment", "").split("|")
        if len(parts) == 4 and parts[0] == PORT_COMMENT:
            found.add((parts[1], parts[2], int(parts[3])))
    return found


def port_comment(proto: str, host_ip: str, port: int) -> str:
    return f"{PORT_COMMENT}|{proto}|{host_ip}|{port}"
