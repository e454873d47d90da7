"""nftables from the kernel: run a script with ``nft -f`` in this or another network namespace, replace one table atomically."""

from __future__ import annotations

import subprocess

from pallet.kernel.errors import PalletError


def run_nft(script: str, netns: str | None = None) -> None:
    """Apply ``script`` as one transaction (all of it or nothing), in the namespace at ``netns`` if given."""
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    proc = subprocess.run([*prefix, "nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PalletError(f"nft failed{f' in {netns}' if netns else ''}: {proc.stderr.strip()}")


def replace_table(name: str, body: str | None, netns: str | None = None) -> None:
    """Swap table ``ip name`` for ``body`` in one transaction; ``None`` deletes it (absent is fine)."""
    run_nft(replace_script(name, body), netns)


def replace_script(name: str, body: str | None) -> str:
    # Declaring the table first makes the delete valid when it does not exist yet.
    script = f"table ip {name}\ndelete table ip {name}\n"
    if body is not None:
        script += f"table ip {name} {{\n{body}}}\n"
    return script


def table_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    return subprocess.run([*prefix, "nft", "list", "table", "ip", name], capture_output=True).returncode == 0


def chain(name: str, head: str | None, rules: list[str]) -> str:
    """One chain in ``nft -f`` syntax; ``head`` is its ``type … hook … priority …`` line for a base chain."""
    lines = [f"  chain {name} {{"]
    if head:
        lines.append(f"    {head}; policy accept;")
    lines += [f"    {rule}" for rule in rules]
    return "\n".join(lines) + "\n  }\n"
