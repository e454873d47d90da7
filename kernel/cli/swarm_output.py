"""Rows of ``service ls`` and ``service ps`` (and ``stack services``/``stack ps``) from Docker's swarm objects."""

from __future__ import annotations

import time

SERVICE_COLUMNS = [("ID", "ID"), ("NAME", "Name"), ("MODE", "Mode"), ("REPLICAS", "Replicas"), ("IMAGE", "Image"),
                   ("PORTS", "Ports")]
TASK_COLUMNS = [("ID", "ID"), ("NAME", "Name"), ("IMAGE", "Image"), ("NODE", "Node"),
                ("DESIRED STATE", "DesiredState"), ("CURRENT STATE", "CurrentState"), ("ERROR", "Error"),
                ("PORTS", "Ports")]


def short_image(image: str, no_trunc: bool = False) -> str:
    """Docker drops the pinned digest from the IMAGE column unless --no-trunc."""
    return image if no_trunc else image.split("@", 1)[0]


def _ports(ports, mode: str) -> str:
    return ", ".join(f"*:{p.get('PublishedPort', 0)}->{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
                     for p in ports or () if p.get("PublishMode", "ingress") == mode)


def service_row(service: dict, no_trunc: bool = False) -> dict:
    spec = service["Spec"]
    status = service.get("ServiceStatus") or {}
    mode = "global" if "Global" in spec["Mode"] else "replicated"
    replicas = f"{status.get('RunningTasks', 0)}/{status.get('DesiredTasks', 0)}"
    max_replicas = (spec["TaskTemplate"].get("Placement") or {}).get("MaxReplicas")
    if max_replicas and mode == "replicated":
        replicas += f" (max {max_replicas} per node)"
    ports = (service.get("Endpoint") or {}).get("Ports") or spec.get("EndpointSpec", {}).get("Ports")
    return {"ID": service["ID"] if no_trunc else service["ID"][:12], "Name": spec["Name"], "Mode": mode,
            "Replicas": replicas, "Image": short_image(spec["TaskTemplate"]["ContainerSpec"]["Image"], no_trunc),
            "Ports": _ports(ports, "ingress")}


def _ago(stamp: str) -> str:
    from pallet.kernel.cluster.store import parse_time
    from pallet.kernel.humanize import duration

    when = parse_time(stamp)
    return duration(max(0.0, time.time() - when)) + " ago" if when else ""


def task_rows(tasks: list[dict], services: dict[str, dict], nodes: dict[str, dict], no_trunc: bool = False) -> list[dict]:
    """One row a task, the newest of each slot first and its older ones under it as `` \\_ name``, as Docker shows."""
    groups: dict[tuple, list[dict]] = {}
    for task in tasks:
        groups.setdefault((task.get("ServiceID"), task.get("Slot") or task.get("NodeID")), []).append(task)

    def name_of(task):
        service = services.get(task.get("ServiceID")) or {}
        service_name = (service.get("Spec") or {}).get("Name") or (task.get("ServiceAnnotations") or {}).get(
            "Name", task.get("ServiceID", ""))
        return f"{service_name}.{task.get('Slot') or task.get('NodeID', '')}", service_name

    def order(key):
        slot = key[1]
        return (name_of(groups[key][0])[1], slot if isinstance(slot, int) else 0, str(slot))

    rows = []
    for key in sorted(groups, key=order):
        history = sorted(groups[key], key=lambda t: t.get("CreatedAt", ""), reverse=True)
        for index, task in enumerate(history):
            name = name_of(task)[0]
            status = task.get("Status") or {}
            state = status.get("State", "")
            node = nodes.get(task.get("NodeID", "")) or {}
            hostname = (node.get("Description") or {}).get("Hostname", task.get("NodeID", ""))
            error = status.get("Err", "")
            if error and not no_trunc and len(error) > 30:
                error = error[:29] + "…"
            image = (task.get("Spec") or {}).get("ContainerSpec", {}).get("Image", "")
            rows.append({"ID": task["ID"] if no_trunc else task["ID"][:12],
                         "Name": name if index == 0 else f" \\_ {name}", "Image": short_image(image, no_trunc),
                         "Node": hostname, "DesiredState": task.get("DesiredState", "").capitalize(),
                         "CurrentState": f"{state.capitalize()} {_ago(status.get('Timestamp', ''))}".strip(),
                         "Error": f'"{error}"' if error else "",
                         "Ports": _ports((status.get("PortStatus") or {}).get("Ports"), "host")})
    return rows
