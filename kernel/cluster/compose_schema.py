"""The JSON schema of the compose file v3 subset ``pallet stack deploy`` reads (written from the compose spec's rules).

Every mapping is closed (``additionalProperties: false``) so a misspelt key is an error that names
it; ``x-`` keys are extensions and pass, at the top level and in a service. The formats
``duration`` (Go's ``1m30s``), ``bytes`` (``512m``), ``cpus`` (``0.5``) and ``port`` (the short
port syntax) are checked by :mod:`pallet.kernel.cluster.compose`.
"""

from __future__ import annotations

EXTENSIONS = {"^x-": {}}

# Keys Docker's stack deploy accepts and ignores (with a warning): they only mean something to one host.
IGNORED_SERVICE_KEYS = ("build", "cgroup_parent", "container_name", "depends_on", "devices", "domainname",
                        "expose", "external_links", "ipc", "links", "mac_address", "network_mode", "pid",
                        "privileged", "restart", "security_opt", "shm_size", "tmpfs", "userns_mode")


def _closed(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


STRING = {"type": "string"}
STRINGS = {"type": "array", "items": STRING}
STRING_OR_LIST = {"oneOf": [STRING, STRINGS]}
DURATION = {"type": "string", "format": "duration"}
BYTES = {"type": ["string", "integer"], "format": "bytes"}
CPUS = {"type": ["string", "number"], "format": "cpus"}
SCALAR = {"type": ["string", "number", "boolean", "null"]}
LIST_OR_DICT = {"oneOf": [{"type": "object", "additionalProperties": SCALAR},
                          {"type": "array", "items": STRING, "uniqueItems": True}]}
EXTERNAL = {"oneOf": [{"type": "boolean"}, _closed({"name": STRING})]}

HEALTHCHECK = _closed({
    "test": STRING_OR_LIST, "interval": DURATION, "timeout": DURATION, "start_period": DURATION,
    "start_interval": DURATION, "retries": {"type": "integer", "minimum": 0}, "disable": {"type": "boolean"},
})


def _update_config(actions: list[str]) -> dict:
    return _closed({
        "parallelism": {"type": "integer", "minimum": 0}, "delay": DURATION,
        "failure_action": {"enum": actions}, "monitor": DURATION,
        "max_failure_ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "order": {"enum": ["stop-first", "start-first"]},
    })


DEPLOY = _closed({
    "mode": {"enum": ["replicated", "global"]},
    "replicas": {"type": "integer", "minimum": 0},
    "labels": LIST_OR_DICT,
    "endpoint_mode": {"enum": ["vip", "dnsrr"]},
    "update_config": _update_config(["continue", "pause", "rollback"]),
    "rollback_config": _update_config(["continue", "pause"]),
    "resources": _closed({
        "limits": _closed({"cpus": CPUS, "memory": BYTES, "pids": {"type": "integer", "minimum": 0}}),
        "reservations": _closed({"cpus": CPUS, "memory": BYTES}),
    }),
    "restart_policy": _closed({
        "condition": {"enum": ["none", "on-failure", "any"]}, "delay": DURATION,
        "max_attempts": {"type": "integer", "minimum": 0}, "window": DURATION,
    }),
    "placement": _closed({
        "constraints": STRINGS,
        "preferences": {"type": "array", "items": _closed({"spread": STRING}, required=["spread"])},
        "max_replicas_per_node": {"type": "integer", "minimum": 0},
    }),
})

PORT = {"oneOf": [
    {"type": "integer", "minimum": 1, "maximum": 65535},
    {"type": "string", "format": "port"},
    _closed({
        "target": {"type": "integer", "minimum": 1, "maximum": 65535},
        "published": {"type": ["integer", "string"], "format": "published"},
        "protocol": {"enum": ["tcp", "udp", "sctp"]},
        "mode": {"enum": ["ingress", "host"]},
        "name": STRING,
    }, required=["target"]),
]}

SERVICE_VOLUME = {"oneOf": [
    STRING,
    _closed({
        "type": {"enum": ["volume", "bind", "tmpfs"]}, "source": STRING, "target": STRING,
        "read_only": {"type": "boolean"}, "consistency": STRING,
        "bind": _closed({"propagation": {"enum": ["private", "rprivate", "shared", "rshared", "slave",
                                                  "rslave"]}}),
        "volume": _closed({"nocopy": {"type": "boolean"}}),
        "tmpfs": _closed({"size": BYTES, "mode": {"type": "integer"}}),
    }, required=["type", "target"]),
]}

FILE_REFERENCE = {"oneOf": [
    STRING,
    _closed({"source": STRING, "target": STRING, "uid": STRING, "gid": STRING, "mode": {"type": "integer"}},
            required=["source"]),
]}

SERVICE_NETWORKS = {"oneOf": [
    {"type": "array", "items": STRING, "uniqueItems": True},
    {"type": "object", "additionalProperties": {"oneOf": [
        {"type": "null"},
        _closed({"aliases": STRINGS, "ipv4_address": STRING, "ipv6_address": STRING}),
    ]}},
]}

ULIMITS = {"type": "object", "additionalProperties": {"oneOf": [
    {"type": "integer"},
    _closed({"soft": {"type": "integer"}, "hard": {"type": "integer"}}, required=["soft", "hard"]),
]}}

SERVICE = _closed({
    "image": STRING,
    "command": STRING_OR_LIST,
    "entrypoint": STRING_OR_LIST,
    "environment": LIST_OR_DICT,
    "env_file": STRING_OR_LIST,
    "labels": LIST_OR_DICT,
    "deploy": DEPLOY,
    "healthcheck": HEALTHCHECK,
    "ports": {"type": "array", "items": PORT},
    "networks": SERVICE_NETWORKS,
    "volumes": {"type": "array", "items": SERVICE_VOLUME},
    "secrets": {"type": "array", "items": FILE_REFERENCE},
    "configs": {"type": "array", "items": FILE_REFERENCE},
    "hostname": STRING,
    "working_dir": STRING,
    "user": STRING,
    "stop_grace_period": DURATION,
    "stop_signal": STRING,
    "tty": {"type": "boolean"},
    "stdin_open": {"type": "boolean"},
    "read_only": {"type": "boolean"},
    "init": {"type": "boolean"},
    "extra_hosts": LIST_OR_DICT,
    "dns": STRING_OR_LIST,
    "dns_search": STRING_OR_LIST,
    "cap_add": STRINGS,
    "cap_drop": STRINGS,
    "sysctls": LIST_OR_DICT,
    "ulimits": ULIMITS,
    "logging": _closed({"driver": STRING, "options": {"type": "object", "additionalProperties": SCALAR}}),
    **{key: {} for key in IGNORED_SERVICE_KEYS},
}, required=["image"], patternProperties=EXTENSIONS)

NETWORK = {"oneOf": [{"type": "null"}, _closed({
    "name": STRING, "driver": STRING, "driver_opts": {"type": "object", "additionalProperties": SCALAR},
    "ipam": _closed({"driver": STRING,
                     "config": {"type": "array", "items": _closed({"subnet": STRING, "gateway": STRING,
                                                                   "ip_range": STRING})}}),
    "external": EXTERNAL, "internal": {"type": "boolean"}, "attachable": {"type": "boolean"},
    "labels": LIST_OR_DICT,
}, patternProperties=EXTENSIONS)]}

VOLUME = {"oneOf": [{"type": "null"}, _closed({
    "name": STRING, "driver": STRING, "driver_opts": {"type": "object", "additionalProperties": SCALAR},
    "external": EXTERNAL, "labels": LIST_OR_DICT,
}, patternProperties=EXTENSIONS)]}

FILE_OBJECT = _closed({"name": STRING, "file": STRING, "external": EXTERNAL, "labels": LIST_OR_DICT},
                      patternProperties=EXTENSIONS)

NAME_PATTERN = "^[a-zA-Z0-9][a-zA-Z0-9._-]*$"


def _named(schema: dict) -> dict:
    return {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}, "additionalProperties": schema}


SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    **_closed({
        "version": {"type": ["string", "number"]},
        "name": STRING,
        "services": _named(SERVICE),
        "networks": _named(NETWORK),
        "volumes": _named(VOLUME),
        "secrets": _named(FILE_OBJECT),
        "configs": _named(FILE_OBJECT),
    }, required=["services"], patternProperties=EXTENSIONS),
}
