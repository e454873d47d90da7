"""Kubernetes YAML: check the documents ``kube play`` reads, and turn pods back into YAML (``kube generate``).

Checking is by a small schema per kind: a field of the wrong type is an error naming its path
(``spec.containers[0].ports[0].containerPort``), a field pallet does not know is a warning with its
path, and a known field pallet cannot honour (it would change behaviour) is an error.
"""

from __future__ import annotations

import base64
import shlex

from pallet.kernel.errors import UsageError

ANY = object()

PORT = (int, str)  # a number or a named container port
PROBE = {"exec": {"command": [str]},
         "httpGet": {"path": str, "port": PORT, "host": str, "scheme": str,
                     "httpHeaders": [{"name": str, "value": str}]},
         "tcpSocket": {"port": PORT, "host": str}, "initialDelaySeconds": int,
         "periodSeconds": int, "timeoutSeconds": int, "failureThreshold": int, "successThreshold": int}
CONTAINER = {
    "name": str, "image": str, "command": [str], "args": [str], "workingDir": str, "imagePullPolicy": str,
    "env": [{"name": str, "value": str, "valueFrom": {
        "configMapKeyRef": {"name": str, "key": str, "optional": bool},
        "secretKeyRef": {"name": str, "key": str, "optional": bool}}}],
    "envFrom": [{"prefix": str, "configMapRef": {"name": str, "optional": bool},
                 "secretRef": {"name": str, "optional": bool}}],
    "ports": [{"name": str, "containerPort": int, "hostPort": int, "protocol": str, "hostIP": str}],
    "volumeMounts": [{"name": str, "mountPath": str, "readOnly": bool, "subPath": str}],
    "securityContext": {"runAsUser": int, "runAsGroup": int, "privileged": bool, "readOnlyRootFilesystem": bool,
                        "allowPrivilegeEscalation": bool,
                        "capabilities": {"add": [str], "drop": [str]},
                        "seccompProfile": {"type": str, "localhostProfile": str}},
    "resources": {"limits": ANY, "requests": ANY},
    "livenessProbe": PROBE, "readinessProbe": PROBE, "tty": bool, "stdin": bool,
}
VOLUME = {"name": str, "configMap": {"name": str, "items": [{"key": str, "path": str}], "defaultMode": int},
          "secret": {"secretName": str, "items": [{"key": str, "path": str}], "defaultMode": int},
          "persistentVolumeClaim": {"claimName": str, "readOnly": bool}, "emptyDir": ANY,
          "hostPath": {"path": str, "type": str}}
POD_SPEC = {"containers": [CONTAINER], "initContainers": [CONTAINER], "volumes": [VOLUME],
            "restartPolicy": str, "hostNetwork": bool, "hostname": str}
METADATA = {"name": str, "labels": {str: str}, "annotations": {str: str}, "namespace": str}
SCHEMAS = {
    "Pod": {"apiVersion": str, "kind": str, "metadata": METADATA, "spec": POD_SPEC},
    "Deployment": {"apiVersion": str, "kind": str, "metadata": METADATA,
                   "spec": {"replicas": int, "selector": ANY, "strategy": ANY,
                            "template": {"metadata": METADATA, "spec": POD_SPEC}}},
    "ConfigMap": {"apiVersion": str, "kind": str, "metadata": METADATA, "data": {str: str}},
    "Secret": {"apiVersion": str, "kind": str, "metadata": METADATA, "type": str, "data": {str: str},
               "stringData": {str: str}},
    "DaemonSet": {"apiVersion": str, "kind": str, "metadata": METADATA,
                  "spec": {"selector": ANY, "updateStrategy": ANY,
                           "template": {"metadata": METADATA, "spec": POD_SPEC}}},
    "Service": {"apiVersion": str, "kind": str, "metadata": METADATA,
                "spec": {"type": str, "selector": {str: str}, "clusterIP": str,
                         "ports": [{"name": str, "port": int, "targetPort": int, "nodePort": int, "protocol": str}]}},
    "PersistentVolumeClaim": {"apiVersion": str, "kind": str, "metadata": METADATA, "spec": ANY},
}
# Fields that exist in Kubernetes and would change what runs: refused rather than ignored.
REFUSED = {"lifecycle", "volumeDevices", "startupProbe", "shareProcessNamespace", "hostPID", "hostIPC"}
TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}


def check(doc: dict, index: int, warn) -> dict:
    """Validate one document against its kind's schema; return it. ``warn(text)`` gets unknown fields."""
    if not isinstance(doc, dict):
        raise UsageError(f"document {index}: expected a mapping")
    kind = doc.get("kind")
    if kind not in SCHEMAS:
        raise UsageError(f"document {index}: kind {kind!r} is not supported (one of {', '.join(SCHEMAS)})")
    _walk(doc, SCHEMAS[kind], "", warn)
    if not (doc.get("metadata") or {}).get("name"):
        raise UsageError(f"{kind}: metadata.name is required")
    return doc


def _walk(value, schema, path: str, warn) -> None:
    if schema is ANY:
        return
    if isinstance(schema, type):
        ok = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
        if not ok:
            raise UsageError(f"{path}: expected {TYPE_NAMES[schema]}, got {_describe(value)}")
        return
    if isinstance(schema, tuple):  # one of several scalar types
        if not any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in schema):
            raise UsageError(f"{path}: expected {' or '.join(TYPE_NAMES[t] for t in schema)}, got {_describe(value)}")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise UsageError(f"{path}: expected a list, got {_describe(value)}")
        for i, item in enumerate(value):
            _walk(item, schema[0], f"{path}[{i}]", warn)
        return
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a mapping, got {_describe(value)}")
    if str in schema:  # a map of free keys
        for key, item in value.items():
            _walk(item, schema[str], f"{path}.{key}" if path else str(key), warn)
        return
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key in REFUSED:
            raise UsageError(f"{where}: not supported by pallet")
        if key not in schema:
            warn(f"unknown field {where} ignored")
            continue
        _walk(item, schema[key], where, warn)


def _describe(value) -> str:
    if value is None:
        return "null"
    return {str: "a string", int: "an integer", bool: "a boolean", float: "a number", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__) + f" ({value!r})"[:60]


def secret_values(doc: dict) -> dict:
    values = {}
    for key, text in (doc.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(text, validate=True).decode()
        except ValueError:
            raise UsageError(f"Secret {doc['metadata']['name']}: data.{key} is not base64") from None
    values.update(doc.get("stringData") or {})
    return values


def pods_of(doc: dict) -> list[tuple[str, dict, dict]]:
    """(pod name, labels, pod spec) for a Pod or each replica of a Deployment."""
    meta = doc["metadata"]
    if doc["kind"] == "Pod":
        return [(meta["name"], meta.get("labels") or {}, doc.get("spec") or {})]
    if doc["kind"] == "DaemonSet":  # one node: one pod
        template = (doc.get("spec") or {}).get("template") or {}
        return [(f"{meta['name']}-pod", (template.get("metadata") or {}).get("labels") or {},
                 template.get("spec") or {})]
    if doc["kind"] == "Deployment":
        spec = doc.get("spec") or {}
        template = spec.get("template") or {}
        replicas = spec.get("replicas", 1)
        if replicas < 0:
            raise UsageError(f"Deployment {meta['name']}: spec.replicas must not be negative")
        labels = (template.get("metadata") or {}).get("labels") or {}
        return [(f"{meta['name']}-pod-{i}", labels, template.get("spec") or {}) for i in range(replicas)]
    return []


def service_ports(services: list[dict], labels: dict) -> list[str]:
    """``-p`` values for the NodePort services whose selector matches a pod's labels (other types publish nothing)."""
    ports = []
    for service in services:
        spec = service.get("spec") or {}
        selector = spec.get("selector") or {}
        if spec.get("type") != "NodePort" or not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for i, port in enumerate(spec.get("ports") or []):
            if "nodePort" not in port:
                raise UsageError(f"Service {service['metadata']['name']}: spec.ports[{i}].nodePort is required "
                                 "(pallet picks none)")
            target = port.get("targetPort", port.get("port"))
            ports.append(f"{port['nodePort']}:{target}/{port.get('protocol', 'TCP').lower()}")
    return ports


def generate(pod_name: str, labels: dict, members: list, published: dict) -> dict:
    """A Pod document for containers (ContainerRecords): what ``kube play`` makes them again from."""
    containers = []
    ports_by_container = {}
    for key, bindings in (published or {}).items():
        port, _, proto = key.partition("/")
        for binding in bindings or []:
            ports_by_container.setdefault(0, []).append(
                {"containerPort": int(port), "hostPort": int(binding["HostPort"]), "protocol": proto.upper() or "TCP"})
    for i, record in enumerate(members):
        config = record.config
        entry = {"name": record.name.removeprefix(f"{pod_name}-"), "image": record.image_ref}
        if config.get("Entrypoint"):
            entry["command"] = list(config["Entrypoint"])
        if config.get("Cmd"):
            entry["args"] = list(config["Cmd"])
        env = [e for e in config.get("Env") or [] if not e.startswith(("PATH=", "HOSTNAME="))]
        if env:
            entry["env"] = [{"name": e.partition("=")[0], "value": e.partition("=")[2]} for e in env]
        if config.get("WorkingDir"):
            entry["workingDir"] = config["WorkingDir"]
        if i == 0 and ports_by_container.get(0):
            entry["ports"] = ports_by_container[0]
        containers.append(entry)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, **({"labels": labels} if labels else {})},
            "spec": {"containers": containers}}


def health_command(probe: dict) -> str:
    return shlex.join(probe["exec"]["command"])


def probe_test(probe: dict, container: dict, where: str) -> list[str]:
    """A health check ``Test`` for an ``httpGet`` or ``tcpSocket`` probe (see :mod:`pallet.kernel.health`).

    The host defaults to ``localhost``: the probe runs in the pod's network namespace, where that is
    the pod (the kubelet uses the pod's IP, which reaches the same sockets unless one binds loopback only)."""
    kind = "httpGet" if "httpGet" in probe else "tcpSocket"
    action = probe[kind]
    port = _probe_port(action.get("port"), container, f"{where}.{kind}.port")
    host = action.get("host") or "localhost"
    if kind == "tcpSocket":
        return ["TCP-SOCKET", host, str(port)]
    scheme = (action.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise UsageError(f"{where}.httpGet.scheme: {action['scheme']!r} is not HTTP or HTTPS")
    path = action.get("path") or "/"
    url = f"{scheme.lower()}://{f'[{host}]' if ':' in host else host}:{port}{path if path.startswith('/') else '/' + path}"
    return ["HTTP-GET", url, *(f"{h['name']}: {h.get('value', '')}" for h in action.get("httpHeaders") or [])]


def _probe_port(port, container: dict, where: str) -> int:
    """A port number, or the ``containerPort`` of the container's port of that name."""
    if port is None:
        raise UsageError(f"{where}: is required")
    if isinstance(port, str) and not (port.isascii() and port.isdigit()):
        for entry in container.get("ports") or []:
            if entry.get("name") == port:
                return int(entry["containerPort"])
        raise UsageError(f"{where}: no port named {port!r} in the container's ports")
    if not 0 < int(port) < 65536:
        raise UsageError(f"{where}: {port} is not a port number (1-65535)")
    return int(port)
