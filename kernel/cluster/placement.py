"""Where a new task may run and where it should: constraints, then resources, then spread.

Constraints are Docker's (``node.id``, ``node.hostname``, ``node.role``, ``node.platform.os``,
``node.platform.arch``, ``node.labels.KEY``, with ``==`` or ``!=``); placement preferences are
``spread=node.labels.KEY`` (tasks are balanced over the label's values first, then over nodes).
"""

from __future__ import annotations

import re

from pallet.kernel.errors import UsageError

_CONSTRAINT = re.compile(r"^\s*([\w.\-]+)\s*(==|!=)\s*(.*?)\s*$")
_FIELDS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")


def parse_constraint(text: str) -> tuple[str, str, str]:
    match = _CONSTRAINT.match(text)
    if not match or not match.group(3):
        raise UsageError(f'invalid constraint "{text}": expected KEY==VALUE or KEY!=VALUE')
    key, op, value = match.groups()
    if key not in _FIELDS and not key.startswith(("node.labels.", "engine.labels.")):
        raise UsageError(f'invalid constraint "{text}": unknown key {key}')
    return key, op, value


def node_value(node: dict, key: str) -> str | None:
    spec, description = node.get("Spec") or {}, node.get("Description") or {}
    if key == "node.id":
        return node.get("ID")
    if key == "node.hostname":
        return description.get("Hostname")
    if key == "node.role":
        return spec.get("Role")
    if key == "node.platform.os":
        return (description.get("Platform") or {}).get("OS")
    if key == "node.platform.arch":
        return (description.get("Platform") or {}).get("Architecture")
    if key.startswith("node.labels."):
        return (spec.get("Labels") or {}).get(key[len("node.labels."):])
    if key.startswith("engine.labels."):
        return ((description.get("Engine") or {}).get("Labels") or {}).get(key[len("engine.labels."):])
    return None


def satisfies(node: dict, constraints: list[str]) -> bool:
    for text in constraints or ():
        key, op, value = parse_constraint(text)
        actual = node_value(node, key)
        matched = actual is not None and actual.lower() == value.lower() if key in _FIELDS \
            else actual is not None and actual == value
        if matched != (op == "=="):
            return False
    return True


def spread_keys(preferences: list[dict]) -> list[str]:
    keys = []
    for preference in preferences or ():
        descriptor = (preference.get("Spread") or {}).get("SpreadDescriptor", "")
        if not descriptor.startswith(("node.labels.", "engine.labels.")):
            raise UsageError(f'invalid placement preference "spread={descriptor}": expected node.labels.KEY')
        keys.append(descriptor)
    return keys


def reservations(template: dict) -> tuple[int, int]:
    """(NanoCPUs, MemoryBytes) a task of this template reserves."""
    reserved = (template.get("Resources") or {}).get("Reservations") or {}
    return int(reserved.get("NanoCPUs") or 0), int(reserved.get("MemoryBytes") or 0)


def choose(nodes: list[dict], template: dict, service_id: str, load: dict[str, list[dict]]) -> tuple[str | None, str]:
    """The node for one new task of ``service_id`` and an empty reason, or None and why none fits.

    ``nodes`` are the ready, active ones; ``load`` maps node id -> the live tasks on it (every
    service's), which the caller extends with each task it places, so one pass spreads a batch.
    """
    placement = template.get("Placement") or {}
    fit = [n for n in nodes if satisfies(n, placement.get("Constraints") or [])]
    if not fit:
        return None, f"no suitable node (scheduling constraints not satisfied on {len(nodes)} nodes)"
    cpu, memory = reservations(template)
    if cpu or memory:
        def free(node):
            resources = (node.get("Description") or {}).get("Resources") or {}
            used = [reservations(t.get("Spec") or {}) for t in load.get(node["ID"], [])]
            return (int(resources.get("NanoCPUs") or 0) - sum(u[0] for u in used) >= cpu
                    and int(resources.get("MemoryBytes") or 0) - sum(u[1] for u in used) >= memory)
        roomy = [n for n in fit if free(n)]
        if not roomy:
            return None, f"no suitable node (insufficient resources on {len(fit)} nodes)"
        fit = roomy
    maximum = int(placement.get("MaxReplicas") or 0)
    if maximum:
        fit = [n for n in fit if sum(t["ServiceID"] == service_id for t in load.get(n["ID"], [])) < maximum]
        if not fit:
            return None, f"no suitable node (max replicas per node limit exceed)"

    def mine(node_ids):
        return sum(t["ServiceID"] == service_id for i in node_ids for t in load.get(i, []))

    for key in spread_keys(placement.get("Preferences") or []):
        groups: dict[str | None, list[dict]] = {}
        for node in fit:
            groups.setdefault(node_value(node, key), []).append(node)
        fewest = min(groups.values(), key=lambda group: (mine([n["ID"] for n in group]), len(group) * -1))
        fit = fewest
    best = min(fit, key=lambda n: (mine([n["ID"]]), len(load.get(n["ID"], [])), n["ID"]))
    return best["ID"], ""
