"""Configs in the cluster store: Docker ``Config`` objects (``configs/<id>``, names claimed in ``config-names/``).

A config is not secret (Docker keeps it unencrypted too), so its data is stored in the record
itself, base64 as the API carries it, and every node reads it from there. Only the labels of a
config can change; its data cannot (Docker's rule), so a container always sees what it was given.
"""

from __future__ import annotations

import base64
import re

from pallet.kernel.cluster import PREFIX, store
from pallet.kernel.errors import Conflict, NotFound, UsageError

CONFIGS, CONFIG_NAMES = f"{PREFIX}configs/", f"{PREFIX}config-names/"
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
MAX_SIZE = 1000 * 1024   # Docker's limit for one config


def create(engine, name: str, data: bytes, labels: dict | None = None) -> str:
    """Store a config; its id. A taken name is a Conflict."""
    if not NAME.match(name or ""):
        raise UsageError(f'invalid config name "{name}": only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, '
                         "at most 64 characters")
    if len(data) > MAX_SIZE:
        raise UsageError(f"config {name} is {len(data)} bytes: a config holds at most {MAX_SIZE} bytes")
    etcd = store.connect(engine)
    config_id = store.new_id()
    stamp = store.now()
    record = {"ID": config_id, "CreatedAt": stamp, "UpdatedAt": stamp,
              "Spec": {"Name": name, "Labels": dict(labels or {}), "Data": base64.b64encode(data).decode()}}
    name_key = f"{CONFIG_NAMES}{name}"
    if not etcd.txn({name_key: 0}, puts={name_key: config_id, f"{CONFIGS}{config_id}": record}):
        raise Conflict(f"config {name} already exists (name conflicts with an existing object)")
    return config_id


def resolve(records: list[dict], id_or_name: str) -> dict:
    for match in ([r for r in records if r["ID"] == id_or_name], [r for r in records if r["Spec"]["Name"] == id_or_name],
                  [r for r in records if r["ID"].startswith(id_or_name)]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise Conflict(f"config {id_or_name} is ambiguous ({len(match)} matches found)")
    raise NotFound(f"config {id_or_name} not found")


def inspect(engine, id_or_name: str) -> dict:
    return resolve(store.records(store.connect(engine), CONFIGS), id_or_name)


def data(engine, id_or_name: str) -> bytes:
    """The config's content, for the container a task runs."""
    return base64.b64decode(inspect(engine, id_or_name)["Spec"].get("Data") or "")


def list_configs(engine, filters: dict | None = None) -> list[dict]:
    """Configs matching ``filters`` (id, name, label), sorted by name."""
    shown = []
    for record in store.records(store.connect(engine), CONFIGS):
        if _match(filters or {}, record):
            shown.append(record)
    return sorted(shown, key=lambda r: r["Spec"]["Name"])


def _match(filters: dict, record: dict) -> bool:
    for key, wanted in filters.items():
        values = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        if key == "id" and not any(record["ID"].startswith(v) for v in values):
            return False
        if key == "name" and not any(record["Spec"]["Name"].startswith(v) for v in values):
            return False
        if key == "label":
            labels = record["Spec"].get("Labels") or {}
            for value in values:
                name, sep, expected = value.partition("=")
                if name not in labels or (sep and labels[name] != expected):
                    return False
    return True


def update(engine, id_or_name: str, spec: dict) -> None:
    """Docker's config update: only ``Labels`` may change."""
    etcd = store.connect(engine)
    current = resolve(store.records(etcd, CONFIGS), id_or_name)

    def change(record):
        if spec.get("Name", record["Spec"]["Name"]) != record["Spec"]["Name"] or \
                spec.get("Data", record["Spec"]["Data"]) != record["Spec"]["Data"]:
            raise UsageError("only updates to Labels are allowed")
        record["Spec"]["Labels"] = dict(spec.get("Labels") or {})

    store.update_record(etcd, f"{CONFIGS}{current['ID']}", change, f"config {id_or_name} not found")


def remove(engine, id_or_name: str) -> str:
    """Remove a config no service uses; its id."""
    etcd = store.connect(engine)
    record = resolve(store.records(etcd, CONFIGS), id_or_name)
    snap = store.snapshot(etcd)
    users = sorted(s["Spec"]["Name"] for s in snap.services.values() if isinstance(s, dict) and any(
        ref.get("ConfigID") == record["ID"] for ref in s["Spec"]["TaskTemplate"]["ContainerSpec"].get("Configs") or ()))
    if users:
        raise Conflict(f"config '{record['Spec']['Name']}' is in use by the following service: {', '.join(users)}")
    name_key = f"{CONFIG_NAMES}{record['Spec']['Name']}"
    deletes = [f"{CONFIGS}{record['ID']}"] + ([name_key] if etcd.get(name_key) == record["ID"] else [])
    etcd.txn({f"{CONFIGS}{record['ID']}": record["Version"]["Index"]}, deletes=deletes)
    return record["ID"]


def parse_reference(engine, spec: str) -> dict:
    """``--config NAME[,source=NAME][,target=PATH][,uid=][,gid=][,mode=]`` -> Docker's ConfigReference
    (the target defaults to ``/NAME``, the mode to 0444)."""
    fields, name = {}, ""
    for index, item in enumerate(spec.split(",")):
        key, sep, value = item.partition("=")
        if not sep and index == 0:
            name = key
            continue
        if key not in ("source", "src", "target", "uid", "gid", "mode") or not sep:
            raise UsageError(f'invalid --config "{spec}": unknown field "{item}" (known: source, target, uid, gid, mode)')
        fields["source" if key == "src" else key] = value
    name = fields.get("source", name)
    if not name:
        raise UsageError(f'invalid --config "{spec}": no config name')
    try:
        uid, gid = int(fields.get("uid", "0")), int(fields.get("gid", "0"))
        mode = int(fields.get("mode", "0444"), 8)
    except ValueError:
        raise UsageError(f'invalid --config "{spec}": uid and gid are numbers, mode an octal number') from None
    if uid < 0 or gid < 0 or not 0 <= mode <= 0o777:
        raise UsageError(f'invalid --config "{spec}": uid/gid out of range or mode not in 0000-0777')
    record = inspect(engine, name)
    return {"File": {"Name": fields.get("target") or "/" + record["Spec"]["Name"], "UID": str(uid), "GID": str(gid),
                     "Mode": mode}, "ConfigID": record["ID"], "ConfigName": record["Spec"]["Name"]}
