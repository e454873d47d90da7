"""Stacks: a compose file deployed as services, overlay networks, secrets and configs of one namespace.

As in Docker there is no stack record: a stack is every object carrying the label
``com.docker.stack.namespace=<name>``, so ``stack ls`` and ``stack rm`` can never disagree with
what exists. ``deploy`` checks everything the file refers to before it makes anything (the
whole file was validated already by :mod:`~pallet.kernel.cluster.compose`), creates what is
missing, and updates only the services whose spec changed, compared as ``services.normalize``
stores them, so a re-deploy of the same file restarts no task.

Secrets go to the cluster store sealed with the secrets key (:mod:`.secrets`, through
``kernel/secrets.open_store``); configs, which are not secret, go there as they are (:mod:`.configs`).
"""

from __future__ import annotations

import time

from pallet.kernel.cluster import configs, services, store
from pallet.kernel.cluster.compose import NAMESPACE_LABEL, StackPlan
from pallet.kernel.errors import Conflict, NotFound, PalletError

TASKS_GONE_TIMEOUT = 60.0   # stack rm: how long the leader and agents get to retire the tasks


def label_filter(namespace: str) -> str:
    return f"{NAMESPACE_LABEL}={namespace}"


def network_store(engine):
    """This root's network store: a joined root reaches its cluster's store for the overlay networks."""
    from pallet.kernel.network.store import NetworkStore

    store.require_membership(engine)
    return NetworkStore(engine)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise PalletError(f"{what}: open {path}: {(exc.strerror or str(exc)).lower()}") from None


def deploy(engine, plan: StackPlan, prune: bool = False, say=print) -> None:
    """Make the stack what ``plan`` says; ``say`` gets Docker's progress lines (``Creating service demo_web``)."""
    from pallet.kernel.secrets import open_store
    from pallet.kernel.volumes import VolumeStore

    etcd = store.connect(engine)
    networks = network_store(engine)
    secret_store = open_store(engine)
    existing_networks = {r.name: r for r in networks.all()}
    existing_secrets = {r.name: r for r in secret_store.all()}
    existing_configs = {c["Spec"]["Name"]: c for c in configs.list_configs(engine)}

    # Everything the file points at is checked before anything is made.
    for name, spec in plan.networks.items():
        if spec.get("External") and name not in existing_networks:
            raise NotFound(f'network "{name}" is declared as external, but could not be found. You need to create '
                           "a swarm-scoped network before the stack is deployed")
        record = existing_networks.get(name)
        if record is not None and not spec.get("External") and record.labels.get(NAMESPACE_LABEL) != plan.namespace:
            raise Conflict(f"network {name} already exists and is not part of stack {plan.namespace}")
    for kind, wanted, have in (("secret", plan.secrets, existing_secrets), ("config", plan.configs, existing_configs)):
        for name, spec in wanted.items():
            if spec.get("External") and name not in have:
                raise NotFound(f"{kind} not found: {name} (declared as external)")
    secret_values = {name: _read(spec["File"], f"secret {name}") for name, spec in plan.secrets.items()
                     if not spec.get("External")}
    config_values = {name: _read(spec["File"], f"config {name}") for name, spec in plan.configs.items()
                     if not spec.get("External")}
    for name, value in secret_values.items():
        if name in existing_secrets and secret_store.value(name) != value:
            raise Conflict(f"failed to update secret {name}: only updates to Labels are allowed (the file changed: "
                           f"remove the stack, or give the secret another name)")
    for name, value in config_values.items():
        if name in existing_configs and configs.data(engine, name) != value:
            raise Conflict(f"failed to update config {name}: only updates to Labels are allowed (the file changed: "
                           f"remove the stack, or give the config another name)")

    for name, spec in plan.networks.items():
        if spec.get("External") or name in existing_networks:
            continue
        say(f"Creating network {name}")
        ipam = (spec["IPAM"]["Config"] or [{}])[0]
        networks.create(name, driver=spec["Driver"], subnet=ipam.get("Subnet", ""), gateway=ipam.get("Gateway", ""),
                        ip_range=ipam.get("IPRange", ""), internal=spec["Internal"], labels=spec["Labels"],
                        options=spec["Options"], ipam_driver=spec["IPAM"]["Driver"])
    volume_store = VolumeStore(engine)
    for name, spec in plan.volumes.items():
        if not spec.get("External"):   # on this node; an agent elsewhere makes it where a task needs it
            volume_store.create(name, driver=spec["Driver"], options=spec["Options"], labels=spec["Labels"])
    secret_ids = {name: r.id for name, r in existing_secrets.items()}
    for name, value in secret_values.items():
        if name not in existing_secrets:
            say(f"Creating secret {name}")
            secret_ids[name] = secret_store.create(name, value, plan.secrets[name]["Labels"]).id
    config_ids = {name: c["ID"] for name, c in existing_configs.items()}
    for name, value in config_values.items():
        if name not in existing_configs:
            say(f"Creating config {name}")
            config_ids[name] = configs.create(engine, name, value, plan.configs[name]["Labels"])

    current = {s["Spec"]["Name"]: s for s in services.list_services(engine, {"label": [label_filter(plan.namespace)]})}
    for name, spec in plan.services.items():
        container = spec["TaskTemplate"]["ContainerSpec"]
        for ref in container.get("Secrets") or ():
            ref["SecretID"] = secret_ids[ref["SecretName"]]
        for ref in container.get("Configs") or ():
            ref["ConfigID"] = config_ids[ref["ConfigName"]]
        service = current.get(name)
        if service is None:
            say(f"Creating service {name}")
            services.create(engine, spec)
        elif services.normalize(spec, etcd) != service["Spec"]:
            say(f"Updating service {name} (id: {service['ID']})")
            services.update(engine, service["ID"], spec)
    if prune:
        for name, service in sorted(current.items()):
            if name not in plan.services:
                say(f"Removing service {name}")
                services.remove(engine, service["ID"])


def list_stacks(engine) -> list[dict]:
    """``[{"Name", "Services"}]``, one per namespace that has a service, sorted by name."""
    counts: dict[str, int] = {}
    for service in services.list_services(engine, {"label": [NAMESPACE_LABEL]}):
        namespace = service["Spec"]["Labels"][NAMESPACE_LABEL]
        counts[namespace] = counts.get(namespace, 0) + 1
    return [{"Name": name, "Services": count} for name, count in sorted(counts.items())]


def stack_services(engine, namespace: str) -> list[dict]:
    return services.list_services(engine, {"label": [label_filter(namespace)]})


def remove(engine, namespace: str, say=print, timeout: float = TASKS_GONE_TIMEOUT) -> bool:
    """Remove the stack's services, then (once their tasks are gone) its secrets, configs and networks.

    False when nothing carried the namespace. The tasks must be gone first: their containers hold
    the networks' endpoints and the secrets' mounts.
    """
    from pallet.kernel.secrets import open_store

    etcd = store.connect(engine)
    found = False
    removed = []
    for service in sorted(stack_services(engine, namespace), key=lambda s: s["Spec"]["Name"]):
        say(f"Removing service {service['Spec']['Name']}")
        removed.append(services.remove(engine, service["ID"]))
        found = True
    _wait_tasks_gone(etcd, set(removed), timeout)
    errors = []
    secret_store = open_store(engine)
    for record in secret_store.all():
        if record.labels.get(NAMESPACE_LABEL) == namespace:
            say(f"Removing secret {record.name}")
            found = True
            try:
                secret_store.remove(record.id)
            except PalletError as exc:
                errors.append(str(exc))
    for config in configs.list_configs(engine, {"label": [label_filter(namespace)]}):
        say(f"Removing config {config['Spec']['Name']}")
        found = True
        try:
            configs.remove(engine, config["ID"])
        except PalletError as exc:
            errors.append(str(exc))
    networks = network_store(engine)
    for record in networks.all():
        if record.labels.get(NAMESPACE_LABEL) == namespace:
            say(f"Removing network {record.name}")
            found = True
            try:
                networks.remove(record.id)
            except PalletError as exc:
                errors.append(str(exc))
    if errors:
        raise PalletError(f"failed to remove some resources from stack: {namespace}: " + "; ".join(errors))
    return found


def _wait_tasks_gone(etcd, service_ids: set[str], timeout: float) -> None:
    """Until the store holds no task of the removed services (the leader retires them, agents stop them)."""
    if not service_ids:
        return
    deadline = time.monotonic() + timeout
    while True:
        snap = store.snapshot(etcd)
        left = [t for t in snap.tasks.values() if isinstance(t, dict) and t.get("ServiceID") in service_ids]
        if not left:
            return
        if time.monotonic() > deadline:
            raise PalletError(f"{len(left)} task(s) of the removed services are still in the cluster store after "
                              f"{timeout:.0f}s: is the leader's agent running? (run stack rm again once they are gone)")
        time.sleep(0.25)
