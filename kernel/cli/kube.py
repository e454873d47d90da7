"""``pallet kube play|down|generate``: Kubernetes Pod/Deployment YAML run as pallet pods (kernel/kube.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from pallet.kernel.errors import NotFound, PalletError, UsageError

RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


@click.group()
def kube():
    """Play, take down and generate Kubernetes YAML."""


def _read(path: str) -> list[dict]:
    import yaml

    from pallet.kernel import kube as schema

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise PalletError(f"cannot read {path}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return [schema.check(doc, i, lambda msg: click.echo(f"Warning: {msg}", err=True)) for i, doc in enumerate(docs)]


def _files_dir(engine, pod_name: str) -> Path:
    return Path(engine.root) / "kube" / pod_name


def _write_files(directory: Path, values: dict, items, mode: int) -> None:
    """A ConfigMap's or Secret's keys as files (atomically written), as the kubelet projects them."""
    from pallet.kernel.fsutil import atomic_write

    directory.mkdir(parents=True, exist_ok=True)
    chosen = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in values]
    for key, rel in chosen:
        if key not in values:
            raise UsageError(f"key {key} not found")
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, values[key].encode(), mode=mode)


def _volumes(engine, pod_name: str, spec: dict, maps: dict, secrets: dict) -> dict:
    """Volume name -> the ``-v`` source (host path or named volume)."""
    sources = {}
    base = _files_dir(engine, pod_name)
    for i, volume in enumerate(spec.get("volumes") or []):
        where = f"spec.volumes[{i}]"
        name = volume.get("name") or ""
        if "configMap" in volume:
            ref = volume["configMap"]["name"]
            if ref not in maps:
                raise UsageError(f"{where}.configMap.name: no ConfigMap {ref} in the file")
            _write_files(base / "volumes" / name, maps[ref], volume["configMap"].get("items"),
                         volume["configMap"].get("defaultMode", 0o644))
            sources[name] = (str(base / "volumes" / name), True)
        elif "secret" in volume:
            ref = volume["secret"]["secretName"]
            if ref not in secrets:
                raise UsageError(f"{where}.secret.secretName: no Secret {ref} in the file")
            _write_files(base / "volumes" / name, secrets[ref], volume["secret"].get("items"),
                         volume["secret"].get("defaultMode", 0o644))
            sources[name] = (str(base / "volumes" / name), True)
        elif "persistentVolumeClaim" in volume:
            sources[name] = (volume["persistentVolumeClaim"]["claimName"],
                             volume["persistentVolumeClaim"].get("readOnly", False))
        elif "emptyDir" in volume:
            (base / "empty" / name).mkdir(parents=True, exist_ok=True)
            sources[name] = (str(base / "empty" / name), False)
        elif "hostPath" in volume:
            sources[name] = (volume["hostPath"]["path"], False)
        else:
            raise UsageError(f"{where}: no supported volume source (configMap, secret, persistentVolumeClaim, "
                             "emptyDir, hostPath)")
    return sources


def _env(container: dict, where: str, maps: dict, secrets: dict) -> list[str]:
    env = []
    for i, item in enumerate(container.get("envFrom") or []):
        kind, ref = ("configMapRef", maps) if "configMapRef" in item else ("secretRef", secrets)
        source = item.get(kind) or {}
        if source.get("name") not in ref:
            if source.get("optional"):
                continue
            raise UsageError(f"{where}.envFrom[{i}].{kind}.name: {source.get('name')} is not in the file")
        env += [f"{item.get('prefix', '')}{k}={v}" for k, v in ref[source["name"]].items()]
    for i, item in enumerate(container.get("env") or []):
        if "valueFrom" in item:
            frm = item["valueFrom"]
            kind, ref = ("configMapKeyRef", maps) if "configMapKeyRef" in frm else ("secretKeyRef", secrets)
            source = frm.get(kind) or {}
            value = (ref.get(source.get("name")) or {}).get(source.get("key"))
            if value is None:
                if source.get("optional"):
                    continue
                raise UsageError(f"{where}.env[{i}].valueFrom.{kind}: {source.get('name')}/{source.get('key')} "
                                 "is not in the file")
            env.append(f"{item['name']}={value}")
        else:
            env.append(f"{item['name']}={item.get('value', '')}")
    return env


def _container_args(pod_name: str, container: dict, where: str, spec: dict, volumes: dict, maps, secrets,
                    init: bool) -> list[str]:
    from pallet.kernel import kube as schema

    if not container.get("name") or not container.get("image"):
        raise UsageError(f"{where}: name and image are required")
    args = ["--name", f"{pod_name}-{container['name']}", "--pod", pod_name]
    for variable in _env(container, where, maps, secrets):
        args += ["-e", variable]
    for i, mount in enumerate(container.get("volumeMounts") or []):
        if mount.get("name") not in volumes:
            raise UsageError(f"{where}.volumeMounts[{i}].name: no volume {mount.get('name')} in the pod")
        if mount.get("subPath"):
            raise UsageError(f"{where}.volumeMounts[{i}].subPath: not supported by pallet")
        source, read_only = volumes[mount["name"]]
        args += ["-v", f"{source}:{mount['mountPath']}{':ro' if read_only or mount.get('readOnly') else ''}"]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    sc = container.get("securityContext") or {}
    if "runAsUser" in sc:
        args += ["--user", f"{sc['runAsUser']}{':' + str(sc['runAsGroup']) if 'runAsGroup' in sc else ''}"]
    if sc.get("privileged"):
        args.append("--privileged")
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in (sc.get("capabilities") or {}).get("add") or []:
        args += ["--cap-add", cap]
    for cap in (sc.get("capabilities") or {}).get("drop") or []:
        args += ["--cap-drop", cap]
    args += _seccomp_args(sc.get("seccompProfile"), f"{where}.securityContext.seccompProfile")
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        args += ["--memory", str(limits["memory"]).replace("Mi", "m").replace("Gi", "g").replace("Ki", "k")]
    if "cpu" in limits:
        cpu = str(limits["cpu"])
        args += ["--cpus", str(int(cpu[:-1]) / 1000) if cpu.endswith("m") else cpu]
    # One health check per container: the liveness probe (unhealthy restarts the container, as the
    # kubelet does) or else the readiness probe (reported only: nothing routes by readiness here).
    for key, action in (("livenessProbe", "restart"), ("readinessProbe", "none")):
        probe = container.get(key)
        if not probe or init:
            continue
        kinds = [k for k in ("exec", "httpGet", "tcpSocket") if k in probe]
        if len(kinds) != 1:
            raise UsageError(f"{where}.{key}: needs exactly one of exec, httpGet or tcpSocket")
        if kinds == ["exec"]:
            args += ["--health-cmd", schema.health_command(probe)]
        else:  # the Test is set on the record once created: no run flag makes one (see _create_member)
            schema.probe_test(probe, container, f"{where}.{key}")
        args += ["--health-interval", f"{probe.get('periodSeconds', 10)}s",
                 "--health-timeout", f"{probe.get('timeoutSeconds', 1)}s",
                 "--health-retries", str(probe.get("failureThreshold", 3)),
                 "--health-on-failure", action]
        if probe.get("initialDelaySeconds"):
            args += ["--health-start-period", f"{probe['initialDelaySeconds']}s"]
        break
    if not init and spec.get("restartPolicy"):
        if spec["restartPolicy"] not in RESTART:
            raise UsageError(f"spec.restartPolicy: {spec['restartPolicy']!r} is not Always, OnFailure or Never")
        args += ["--restart", RESTART[spec["restartPolicy"]]]
    command, extra = container.get("command") or [], container.get("args")
    if command:
        args += ["--entrypoint", command[0], container["image"], *command[1:], *(extra or [])]
    else:
        args += [container["image"], *(extra or [])]
    return args


def _set_net_probe(engine, member, container: dict, where: str):
    """An ``httpGet``/``tcpSocket`` probe becomes the record's health ``Test`` (its timings came as flags)."""
    from pallet.kernel import kube as schema
    from pallet.kernel.containers import ContainerStore

    for key in ("livenessProbe", "readinessProbe"):
        probe = container.get(key)
        if not probe:
            continue
        if "exec" in probe:
            return member
        test = schema.probe_test(probe, container, f"{where}.{key}")
        config = dict(member.config)
        config["Healthcheck"] = {**(config.get("Healthcheck") or {}), "Test": test}
        return ContainerStore(engine).update(member.id, config=config)
    return member


# Where the kubelet looks for a ``Localhost`` profile named by a relative path.
KUBELET_SECCOMP_ROOT = "/var/lib/kubelet/seccomp"


def _seccomp_args(profile: dict | None, where: str) -> list[str]:
    """``seccompProfile``: RuntimeDefault (pallet's default profile), Unconfined, or Localhost with a
    ``localhostProfile`` path (Docker's JSON format; relative to the kubelet's seccomp root)."""
    kind = (profile or {}).get("type")
    if kind in (None, "RuntimeDefault"):
        return []
    if kind == "Unconfined":
        return ["--security-opt", "seccomp=unconfined"]
    if kind == "Localhost":
        path = profile.get("localhostProfile")
        if not path:
            raise UsageError(f"{where}.localhostProfile: required with type Localhost")
        return ["--security-opt", f"seccomp={os.path.join(KUBELET_SECCOMP_ROOT, path)}"]
    raise UsageError(f"{where}.type: {kind!r} is not one of RuntimeDefault, Unconfined, Localhost")


def play_pod(engine, pod_name: str, labels: dict, spec: dict, maps: dict, secrets: dict,
             published: list[str] = ()) -> str:
    from pallet.kernel import lifecycle
    from pallet.kernel.cli import pod as pods_cli

    ports = list(published)
    for c, container in enumerate(spec.get("containers") or []):
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                host = f"{port['hostIP']}:" if port.get("hostIP") else ""
                ports.append(f"{host}{port['hostPort']}:{port['containerPort']}/{port.get('protocol', 'TCP').lower()}")
    if not spec.get("containers"):
        raise UsageError(f"pod {pod_name}: spec.containers must not be empty")
    record = pods_cli.create_pod(engine, pod_name, tuple(ports), "host" if spec.get("hostNetwork") else "",
                                 "", spec.get("hostname", ""), labels)
    try:
        volumes = _volumes(engine, pod_name, spec, maps, secrets)
        for i, container in enumerate(spec.get("initContainers") or []):
            where = f"spec.initContainers[{i}]"
            member = pods_cli._create_container(engine, _container_args(pod_name, container, where, spec, volumes,
                                                                        maps, secrets, init=True))
            pods_cli._start(engine, member)
            lifecycle.wait_stopped(engine, member, 600)
            member = lifecycle.refresh(engine, member)
            if member.exit_code != 0:
                raise PalletError(f"init container {container['name']} of pod {pod_name} exited with code "
                                  f"{member.exit_code}")
        for i, container in enumerate(spec["containers"]):
            where = f"spec.containers[{i}]"
            member = pods_cli._create_container(engine, _container_args(
                pod_name, container, where, spec, volumes, maps, secrets, init=False))
            member = _set_net_probe(engine, member, container, where)
            pods_cli._start(engine, member)
    except BaseException:
        pods_cli.remove_pod(engine, record, force=True)
        shutil.rmtree(_files_dir(engine, pod_name), ignore_errors=True)
        raise
    return record.id


@kube.command("play")
@click.argument("file")
@click.pass_obj
def play(engine, file):
    """Create pods, ConfigMaps, Secrets and volumes from Kubernetes YAML (FILE, or - for stdin)."""
    from pallet.kernel import kube as schema

    docs = _read(file)
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: schema.secret_values(d) for d in docs if d["kind"] == "Secret"}
    for doc in docs:
        if doc["kind"] == "PersistentVolumeClaim":
            from pallet.kernel.volumes import VolumeStore

            store = VolumeStore(engine)
            try:
                store.get(doc["metadata"]["name"])
            except NotFound:
                store.create(doc["metadata"]["name"])
            click.echo(f"Volume: {doc['metadata']['name']}")
    services = [d for d in docs if d["kind"] == "Service"]
    for doc in docs:
        for pod_name, labels, spec in schema.pods_of(doc):
            published = schema.service_ports(services, labels)
            click.echo(f"Pod: {play_pod(engine, pod_name, labels, spec, maps, secrets, published)}")


@kube.command("down")
@click.argument("file")
@click.pass_obj
def down(engine, file):
    """Remove the pods a Kubernetes YAML file made (volumes stay, as with podman)."""
    from pallet.kernel import kube as schema
    from pallet.kernel.cli import pod as pods_cli

    store = pods_cli._stores(engine)
    for doc in _read(file):
        for pod_name, _labels, _spec in schema.pods_of(doc):
            try:
                record = store.get(pod_name)
            except NotFound:
                continue
            pods_cli.remove_pod(engine, record, force=True)
            shutil.rmtree(_files_dir(engine, pod_name), ignore_errors=True)
            click.echo(f"Pod: {record.id}")


@kube.command("generate")
@click.argument("name")
@click.pass_obj
def generate(engine, name):
    """Kubernetes Pod YAML for a pod or a container, which ``kube play`` accepts back."""
    import yaml

    from pallet.kernel import kube as schema
    from pallet.kernel.cli import pod as pods_cli
    from pallet.kernel.containers import ContainerStore

    store = pods_cli._stores(engine)
    try:
        record = store.get(name)
        members = store.members(record, infra=False)
        infra = ContainerStore(engine).get(record.infra_id)
        doc = schema.generate(record.name, record.labels, members, infra.host_config.get("PortBindings") or {})
    except NotFound:
        container = ContainerStore(engine).get(name)
        doc = schema.generate(container.name, {}, [container], container.host_config.get("PortBindings") or {})
        doc["spec"]["containers"][0]["name"] = container.name
    click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
