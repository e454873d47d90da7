"""Services as one network sees them on this host: their DNS names and their virtual IPs' balancing rules.

Written by the cluster's mesh (:mod:`pallet.kernel.cluster.mesh`), read here so the network store
needs nothing from the cluster package. Per network, beside its endpoint records in
``<root>/networks/endpoints/``:

``<network id>.services``
    ``{name: [ip, …]}`` that the embedded DNS answers before any container name (a service's
    name -> its VIP or, with dnsrr, its tasks; ``tasks.<name>`` -> its healthy tasks).
``<network id>.vip.nft``
    the ``nft -f`` script of table ``pallet_svc_<network id[:12]>``, applied in the sandbox of
    every container on the network: new connections to a VIP are DNAT-ed to one healthy task,
    taken in turn (``numgen inc``). A sandbox that joins later gets it from ``apply_to`` when it
    connects, so no container on the network ever sees a VIP without rules.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write, atomic_write_json
from pallet.kernel.network.nftables import chain, replace_script, run_nft


def table(network_id: str) -> str:
    return f"pallet_svc_{network_id[:12]}"


def names_file(networks_dir: Path, network_id: str) -> Path:
    return Path(networks_dir) / "endpoints" / f"{network_id}.services"


def rules_file(networks_dir: Path, network_id: str) -> Path:
    return Path(networks_dir) / "endpoints" / f"{network_id}.vip.nft"


def render(network_id: str, vips: dict[str, list[str]]) -> str | None:
    """The table for ``{vip: [task ip, …]}``; None when there is no VIP (the table is removed)."""
    if not vips:
        return None
    jumps, chains, empty = [], [], []
    for n, (vip, backends) in enumerate(sorted(vips.items())):
        if not backends:
            empty.append(vip)
            continue
        targets = ", ".join(f"{i} : {ip}" for i, ip in enumerate(backends))
        jumps.append(f"{vip} : jump vip_{n}")
        chains.append(chain(f"vip_{n}", None, [f"dnat to numgen inc mod {len(backends)} map {{ {targets} }}"]))
    body = ""
    if jumps:
        body += chain("output", "type nat hook output priority -100", [f"ip daddr vmap {{ {', '.join(jumps)} }}"])
    if empty:  # a service without a healthy task refuses at once rather than letting ARP time out
        body += chain("refuse", "type filter hook output priority 0",
                      [f"ip daddr {{ {', '.join(empty)} }} reject with icmp type host-unreachable"])
    return body + "".join(chains)


def publish(networks_dir: Path, network_id: str, names: dict, vips: dict, sandboxes: list[str]) -> None:
    """Record the network's service names and VIP rules; re-apply the rules in ``sandboxes`` if they changed.

    The caller holds the network store's lock, so no container joins between the write and the apply.
    """
    names_path, rules_path = names_file(networks_dir, network_id), rules_file(networks_dir, network_id)
    names_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(names_path, names, durable=False)
    script = replace_script(table(network_id), render(network_id, vips))
    with contextlib.suppress(FileNotFoundError):
        if rules_path.read_text() == script:
            return
    atomic_write(rules_path, script.encode(), durable=False)
    for sandbox in sandboxes:
        _apply(script, sandbox)


def apply_to(networks_dir: Path, network_id: str, sandbox: str) -> None:
    """Give a sandbox joining the network the current VIP rules (nothing when the network has none)."""
    with contextlib.suppress(FileNotFoundError):
        _apply(rules_file(networks_dir, network_id).read_text(), sandbox)


def withdraw(networks_dir: Path, network_id: str, sandboxes: list[str]) -> None:
    """Remove the network's service names and rules (from ``sandboxes`` too)."""
    names_file(networks_dir, network_id).unlink(missing_ok=True)
    rules = rules_file(networks_dir, network_id)
    if rules.exists():
        for sandbox in sandboxes:
            _apply(replace_script(table(network_id), None), sandbox)
        rules.unlink(missing_ok=True)


def published(networks_dir: Path) -> list[str]:
    """Ids of the networks that have service records here."""
    return sorted(p.name[: -len(".services")] for p in (Path(networks_dir) / "endpoints").glob("*.services"))


def lookup(networks_dir: Path, network_id: str, name: str) -> list[str] | None:
    """The addresses of service ``name`` on the network ([] for a known service with none), None if unknown."""
    try:
        return json.loads(names_file(networks_dir, network_id).read_text()).get(name)
    except (OSError, ValueError):
        return None


def _apply(script: str, sandbox: str) -> None:
    if not Path(sandbox).exists():
        return  # a container that stopped meanwhile: its namespace is gone with its rules
    try:
        run_nft(script, sandbox)
    except PalletError:
        if Path(sandbox).exists():
            raise
