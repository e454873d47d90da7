"""Compose file v3 -> a stack plan: Docker ``ServiceSpec`` records and the networks, volumes, secrets and configs they use.

Pure apart from reading the compose file and the ``env_file`` files it names: nothing here
touches the engine or the cluster store, so ``stack deploy`` validates the whole file before it
changes anything. The steps are Docker's: YAML, variable interpolation (``${VAR:-default}``),
validation against :data:`~pallet.kernel.cluster.compose_schema.SCHEMA` (the first error, one
line, named by its key path: ``services.web.deploy.replicas: 'x' is not of type 'integer'``),
then conversion with every name prefixed ``<stack>_`` and the label
``com.docker.stack.namespace`` on each object. Secret and config references carry their names;
``stack deploy`` fills in the ids once it has created them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.cluster.compose_schema import IGNORED_SERVICE_KEYS, NAME_PATTERN, SCHEMA
from pallet.kernel.errors import PalletError

NAMESPACE_LABEL = "com.docker.stack.namespace"
IMAGE_LABEL = "com.docker.stack.image"
DEFAULT_NETWORK = "default"
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+|0")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<braced>[^}]*)\}|(?P<bad>))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


class ComposeError(PalletError):
    """A compose file that cannot be deployed: the message names the key (``services.web.ports.0: …``)."""


@dataclass
class StackPlan:
    """What ``stack deploy`` makes of a compose file, every name already ``<stack>_``-prefixed."""

    namespace: str
    services: dict[str, dict] = field(default_factory=dict)   # name -> ServiceSpec
    networks: dict[str, dict] = field(default_factory=dict)   # name -> {Driver, Options, Labels, …, External}
    volumes: dict[str, dict] = field(default_factory=dict)    # name -> {Driver, Options, Labels, External}
    secrets: dict[str, dict] = field(default_factory=dict)    # name -> {Labels, File | External}
    configs: dict[str, dict] = field(default_factory=dict)    # name -> {Labels, File | External}
    warnings: list[str] = field(default_factory=list)


# --- reading, interpolation, validation ---------------------------------------------------
def load(path: str | Path, namespace: str, environ: dict | None = None) -> StackPlan:
    """Read, interpolate, validate and convert the compose file at ``path`` ("-": stdin) for the stack ``namespace``."""
    import sys

    import yaml

    if str(path) == "-":
        text, path = sys.stdin.read(), Path.cwd() / "-"
    else:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ComposeError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ComposeError(f"{path}:{where} {getattr(exc, 'problem', None) or exc}") from None
    environ = dict(os.environ if environ is None else environ)
    warnings: list[str] = []
    document = interpolate(document, environ, warnings)
    validate(document)
    plan = convert(document, namespace, path.resolve().parent, environ)
    plan.warnings[:0] = warnings
    return plan


def interpolate(value, environ: dict, warnings: list[str], path: tuple = ()):
    """``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR:+alt}``, ``$$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, environ, warnings, path + (key,)) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ, warnings, path + (index,)) for index, item in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match):
        if match.group("escaped"):
            return "$"
        if match.group("plain"):
            return lookup(match.group("plain"), None, "")
        braced = match.group("braced")
        parts = _BRACED.match(braced) if braced is not None else None
        if parts is None:
            raise ComposeError(f"{key_path(path)}: invalid interpolation format for {value!r}")
        return lookup(parts.group("name"), parts.group("op"), parts.group("arg") or "")

    def lookup(name, op, arg):
        present = name in environ
        empty = not environ.get(name)
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else not present) else environ[name]
        if op in (":?", "?"):
            if empty if op == ":?" else not present:
                raise ComposeError(f"{key_path(path)}: required variable {name} is missing a value"
                                   + (f": {arg}" if arg else ""))
            return environ[name]
        if op in (":+", "+"):
            return "" if (empty if op == ":+" else not present) else arg
        if not present:
            warnings.append(f"The {name} variable is not set. Defaulting to a blank string.")
        return environ.get(name, "")

    return _VARIABLE.sub(substitute, value)


def key_path(path) -> str:
    return ".".join(str(part) for part in path) or "top level"


def _jsonschema():
    """jsonschema, imported without ``rfc3987_syntax`` unless something already loaded it.

    jsonschema imports that library when it is installed, for the ``iri`` formats, and it compiles
    a Lark grammar at import: seconds of CPU for every ``stack deploy``. The compose schema uses no
    ``iri`` format, so the first import of jsonschema is made without it.
    """
    import sys

    if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None   # the import of it fails, which jsonschema expects
        try:
            import jsonschema
        finally:
            del sys.modules["rfc3987_syntax"]
    import jsonschema

    return jsonschema


def _format_checker():
    from pallet.kernel.humanize import parse_bytes

    checker = _jsonschema().FormatChecker(formats=())

    @checker.checks("duration", raises=ValueError)
    def _duration(value):
        return not isinstance(value, str) or _DURATION.fullmatch(value) is not None

    @checker.checks("bytes", raises=ValueError)
    def _bytes(value):
        return isinstance(value, int) or parse_bytes(value) >= 0

    @checker.checks("cpus", raises=ValueError)
    def _cpus(value):
        return float(value) >= 0

    @checker.checks("port", raises=ValueError)
    def _port(value):
        return not isinstance(value, str) or bool(parse_short_port(value))

    @checker.checks("published", raises=ValueError)
    def _published(value):
        return 0 <= int(value) <= 65535

    return checker


_TYPE_NAMES = {"object": "mapping", "array": "list", "null": "null"}


def _describe(error) -> str:
    """jsonschema's first error as one line; unknown keys and type mismatches reworded to name what is wanted."""
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed and not str(k).startswith("x-"))
        if extra:
            return f"{where}: unknown key {str(extra[0])!r}"
    if "propertyNames" in error.schema_path:
        return f"{where}: invalid name {error.instance!r} (letters, digits, '_', '.', '-')"
    if error.validator == "oneOf":
        types = []
        for branch in error.validator_value:
            for kind in (branch.get("type") if isinstance(branch.get("type"), list) else [branch.get("type")]):
                if kind and kind not in types:
                    types.append(kind)
        if types:
            names = [repr(_TYPE_NAMES.get(t, t)) for t in types]
            wanted = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
            return f"{where}: {error.instance!r} is not of type {wanted}"
    return f"{where}: {error.message}"


def validate(document) -> None:
    """The first schema error as a :class:`ComposeError` naming its key; Docker's version check first."""
    jsonschema = _jsonschema()
    if not isinstance(document, dict):
        raise ComposeError("top level: the compose file must be a mapping of keys (services, networks, …)")
    version = document.get("version")
    if version is not None and not str(version).startswith("3"):
        raise ComposeError(f"version: unsupported compose file version {str(version)!r}: stack deploy reads "
                           "version 3 files (3, 3.0 … 3.9)")
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=_format_checker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise ComposeError(_describe(error))


# --- conversion ----------------------------------------------------------------------------
def duration_ns(value) -> int:
    if value in (None, "", "0"):
        return 0
    return int(sum(float(n) * _DURATION_NS[unit] for n, unit in _DURATION_PART.findall(value)))


def nano_cpus(value) -> int:
    return int(round(float(value) * 1e9))


def memory_bytes(value) -> int:
    from pallet.kernel.humanize import parse_bytes

    return value if isinstance(value, int) else parse_bytes(value)


def mapping(value, environ: dict | None = None) -> dict[str, str]:
    """A list-or-dict (``["A=1", "B"]`` or ``{A: 1, B: null}``) as strings; a bare name takes ``environ``'s value."""
    if value is None:
        return {}
    if isinstance(value, dict):
        items = value.items()
    else:
        items = [(key, item if sep else None) for key, sep, item in (entry.partition("=") for entry in value)]
    result = {}
    for key, item in items:
        if item is None:
            if environ is None:
                result[key] = ""
            elif key in environ:
                result[key] = environ[key]
            continue
        result[key] = _string(item)
    return result


def _string(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _words(value) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value)


def _port_numbers(text: str) -> list[int]:
    low, sep, high = text.partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise ValueError(f"invalid port {text!r}")
    start, end = int(low), int(high if sep else low)
    if not 0 < start <= end <= 65535:
        raise ValueError(f"invalid port range {text!r}")
    return list(range(start, end + 1))


def parse_short_port(text: str) -> list[dict]:
    """``80``, ``8080:80/udp``, ``127.0.0.1:8080:80``, ``8000-8001:80-81`` -> PortConfigs (ingress)."""
    spec, _sep, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid protocol {protocol!r}")
    address = ""
    if spec.startswith("["):  # [::1]:8080:80
        address, _sep, spec = spec[1:].partition("]:")
    parts = spec.rsplit(":", 2)
    if len(parts) == 3:
        address = parts[0]
    if address:
        ipaddress.ip_address(address)   # a ValueError names it
    target = parts[-1]
    published = parts[-2] if len(parts) >= 2 else ""
    targets = _port_numbers(target)
    publishes = _port_numbers(published) if published else []
    if publishes and len(publishes) != len(targets):
        if len(targets) != 1:
            raise ValueError(f"port ranges of different lengths in {text!r}")
        targets = targets * len(publishes)
    ports = []
    for index, number in enumerate(targets):
        port = {"Protocol": protocol, "TargetPort": number, "PublishMode": "ingress"}
        if publishes:
            port["PublishedPort"] = publishes[index]
        ports.append(port)
    return ports


def _ports(items) -> list[dict]:
    ports = []
    for item in items or ():
        if isinstance(item, int):
            ports.append({"Protocol": "tcp", "TargetPort": item, "PublishMode": "ingress"})
        elif isinstance(item, str):
            ports.extend(parse_short_port(item))
        else:
            port = {"Protocol": item.get("protocol", "tcp"), "TargetPort": item["target"],
                    "PublishMode": item.get("mode", "ingress")}
            if item.get("published") not in (None, ""):
                port["PublishedPort"] = int(item["published"])
            if item.get("name"):
                port["Name"] = item["name"]
            ports.append(port)
    return ports


class Converter:
    """One compose document for one stack: :meth:`plan` builds the :class:`StackPlan`."""

    def __init__(self, document: dict, namespace: str, workdir: Path, environ: dict):
        if not re.fullmatch(NAME_PATTERN, namespace or ""):
            raise ComposeError(f"invalid stack name {namespace!r}: letters, digits, '_', '.' and '-', "
                               "starting with a letter or digit")
        self.doc, self.namespace, self.workdir, self.environ = document, namespace, workdir, environ
        self.result = StackPlan(namespace)
        self.refs: dict[tuple[str, str], str] = {}   # ("secrets", key) -> the secret's name

    def scoped(self, name: str) -> str:
        return f"{self.namespace}_{name}"

    def labels(self, value=None) -> dict[str, str]:
        return {**mapping(value), NAMESPACE_LABEL: self.namespace}

    def _external_name(self, key: str, definition: dict) -> str | None:
        """The existing object's name for ``external: true`` (or ``external: {name: …}``), else None."""
        external = definition.get("external")
        if not external:
            return None
        if isinstance(external, dict) and external.get("name"):
            return external["name"]
        return definition.get("name") or key

    def plan(self) -> StackPlan:
        self._files("secrets", self.result.secrets)
        self._files("configs", self.result.configs)
        for name, service in self.doc["services"].items():
            full = self.scoped(name)
            if len(full) > 63:
                raise ComposeError(f"services.{name}: the service name {full!r} is longer than 63 characters "
                                   "(it must be a DNS label)")
            self.result.services[full] = self.service(name, service)
        return self.result

    # top-level objects
    def _files(self, kind: str, into: dict) -> None:
        for key, definition in (self.doc.get(kind) or {}).items():
            definition = definition or {}
            external = self._external_name(key, definition)
            if external:
                self.refs[(kind, key)] = external
                into[external] = {"External": True}
                continue
            if not definition.get("file"):
                raise ComposeError(f"{kind}.{key}: needs 'file' (a path) or 'external: true'")
            name = definition.get("name") or self.scoped(key)
            self.refs[(kind, key)] = name
            into[name] = {"Labels": self.labels(definition.get("labels")),
                          "File": str((self.workdir / os.path.expanduser(definition["file"])).resolve())}

    def network(self, key: str, where: str) -> str:
        definitions = self.doc.get("networks") or {}
        if key not in definitions and key != DEFAULT_NETWORK:
            raise ComposeError(f"{where}: undefined network {key!r}")
        definition = definitions.get(key) or {}
        external = self._external_name(key, definition)
        if external:
            self.result.networks[external] = {"External": True}
            return external
        name = definition.get("name") or self.scoped(key)
        ipam = definition.get("ipam") or {}
        self.result.networks[name] = {
            "Driver": definition.get("driver", "overlay"),
            "Options": {k: _string(v) for k, v in (definition.get("driver_opts") or {}).items()},
            "Labels": self.labels(definition.get("labels")),
            "Internal": bool(definition.get("internal")), "Attachable": bool(definition.get("attachable")),
            "IPAM": {"Driver": ipam.get("driver", "default"),
                     "Config": [{"Subnet": c.get("subnet", ""), "Gateway": c.get("gateway", ""),
                                 "IPRange": c.get("ip_range", "")} for c in ipam.get("config") or ()]},
        }
        return name

    def volume(self, key: str, where: str) -> tuple[str, dict]:
        """The volume's name and its VolumeOptions; declared in the top-level ``volumes``, as Docker requires."""
        definitions = self.doc.get("volumes") or {}
        if key not in definitions:
            raise ComposeError(f"{where}: undefined volume {key!r}")
        definition = definitions[key] or {}
        external = self._external_name(key, definition)
        if external:
            self.result.volumes[external] = {"External": True}
            return external, {}
        name = definition.get("name") or self.scoped(key)
        labels = self.labels(definition.get("labels"))
        driver = {"Name": definition.get("driver", "local"),
                  "Options": {k: _string(v) for k, v in (definition.get("driver_opts") or {}).items()}}
        self.result.volumes[name] = {"Driver": driver["Name"], "Options": driver["Options"], "Labels": labels}
        options = {"Labels": labels}
        if definition.get("driver") or definition.get("driver_opts"):
            options["DriverConfig"] = driver
        return name, options

    # one service
    def service(self, name: str, service: dict) -> dict:
        where = f"services.{name}"
        ignored = sorted(k for k in service if k in IGNORED_SERVICE_KEYS)
        if ignored:
            self.result.warnings.append(f"Ignoring unsupported options: {', '.join(ignored)}")
        deploy = service.get("deploy") or {}
        container = self.container(name, service, where)
        template = {"ContainerSpec": container, "Networks": self.networks(name, service, where)}
        resources = self.resources(deploy.get("resources") or {})
        if resources:
            template["Resources"] = resources
        restart = self.restart_policy(deploy.get("restart_policy"), service.get("restart"))
        if restart:
            template["RestartPolicy"] = restart
        placement = self.placement(deploy.get("placement") or {})
        if placement:
            template["Placement"] = placement
        if service.get("logging"):
            template["LogDriver"] = {"Name": service["logging"].get("driver", "json-file"),
                                     "Options": {k: _string(v) for k, v in
                                                 (service["logging"].get("options") or {}).items()}}
        spec = {"Name": self.scoped(name),
                "Labels": {**mapping(deploy.get("labels")), IMAGE_LABEL: service["image"],
                           NAMESPACE_LABEL: self.namespace},
                "TaskTemplate": template, "Mode": self.mode(deploy, where)}
        for key, field_name in (("update_config", "UpdateConfig"), ("rollback_config", "RollbackConfig")):
            if deploy.get(key) is not None:
                spec[field_name] = self.update_config(deploy[key])
        spec["EndpointSpec"] = self.endpoint(service, deploy, where)
        return spec

    def container(self, name: str, service: dict, where: str) -> dict:
        spec = {"Image": service["image"], "Labels": self.labels(service.get("labels"))}
        if service.get("entrypoint") is not None:
            spec["Command"] = _words(service["entrypoint"])
        if service.get("command") is not None:
            spec["Args"] = _words(service["command"])
        env = self.environment(service, where)
        if env:
            spec["Env"] = env
        for key, field_name in (("hostname", "Hostname"), ("working_dir", "Dir"), ("user", "User"),
                                ("stop_signal", "StopSignal"), ("tty", "TTY"), ("stdin_open", "OpenStdin"),
                                ("read_only", "ReadOnly"), ("init", "Init"), ("cap_add", "CapabilityAdd"),
                                ("cap_drop", "CapabilityDrop")):
            if service.get(key) is not None:
                spec[field_name] = service[key]
        if service.get("stop_grace_period") is not None:
            spec["StopGracePeriod"] = duration_ns(service["stop_grace_period"])
        if service.get("healthcheck") is not None:
            spec["Healthcheck"] = self.healthcheck(service["healthcheck"])
        mounts = [self.mount(item, f"{where}.volumes.{i}") for i, item in enumerate(service.get("volumes") or ())]
        if mounts:
            spec["Mounts"] = mounts
        for kind, field_name, id_key, name_key in (("secrets", "Secrets", "SecretID", "SecretName"),
                                                   ("configs", "Configs", "ConfigID", "ConfigName")):
            refs = [self.file_reference(kind, item, f"{where}.{kind}.{i}", id_key, name_key)
                    for i, item in enumerate(service.get(kind) or ())]
            if refs:
                spec[field_name] = refs
        if service.get("extra_hosts"):
            hosts = mapping(service["extra_hosts"]) if isinstance(service["extra_hosts"], dict) else {
                host: address for host, _s, address in
                (item.replace("=", ":", 1).partition(":") for item in service["extra_hosts"])}
            spec["Hosts"] = [f"{address} {host}" for host, address in hosts.items()]
        dns = {"Nameservers": service.get("dns"), "Search": service.get("dns_search")}
        dns = {k: [v] if isinstance(v, str) else v for k, v in dns.items() if v}
        if dns:
            spec["DNSConfig"] = dns
        if service.get("sysctls"):
            spec["Sysctls"] = mapping(service["sysctls"])
        if service.get("ulimits"):
            spec["Ulimits"] = [{"Name": key, "Soft": v, "Hard": v} if isinstance(v, int) else
                               {"Name": key, "Soft": v["soft"], "Hard": v["hard"]}
                               for key, v in sorted(service["ulimits"].items())]
        return spec

    def environment(self, service: dict, where: str) -> list[str]:
        env: dict[str, str] = {}
        files = service.get("env_file") or []
        for index, file in enumerate([files] if isinstance(files, str) else files):
            path = self.workdir / os.path.expanduser(file)
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise ComposeError(f"{where}.env_file: open {path}: {(exc.strerror or str(exc)).lower()}") from None
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                if not key or any(c.isspace() for c in key):
                    raise ComposeError(f"{where}.env_file: {path} line {number}: invalid variable {line!r}")
                if sep:
                    env[key] = value
                elif key in self.environ:
                    env[key] = self.environ[key]
        env.update(mapping(service.get("environment"), self.environ))
        return sorted(f"{k}={v}" for k, v in env.items())

    def healthcheck(self, check: dict) -> dict:
        if check.get("disable"):
            return {"Test": ["NONE"]}
        result = {}
        test = check.get("test")
        if test is not None:
            result["Test"] = ["CMD-SHELL", test] if isinstance(test, str) else list(test)
        for key, field_name in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                                ("start_interval", "StartInterval")):
            if check.get(key) is not None:
                result[field_name] = duration_ns(check[key])
        if check.get("retries") is not None:
            result["Retries"] = check["retries"]
        return result

    def mount(self, item, where: str) -> dict:
        if isinstance(item, str):
            item = self._short_volume(item, where)
        kind = item["type"]
        mount = {"Type": kind, "Target": item["target"]}
        source = item.get("source") or ""
        if item.get("read_only"):
            mount["ReadOnly"] = True
        if kind == "volume":
            if source:
                source, options = self.volume(source, where)
            else:
                options = {"Labels": self.labels()}
            if (item.get("volume") or {}).get("nocopy"):
                options["NoCopy"] = True
            mount["Source"] = source
            mount["VolumeOptions"] = options
        elif kind == "bind":
            if not source:
                raise ComposeError(f"{where}: a bind mount needs a source")
            mount["Source"] = str((self.workdir / os.path.expanduser(source)).resolve())
            if (item.get("bind") or {}).get("propagation"):
                mount["BindOptions"] = {"Propagation": item["bind"]["propagation"]}
        else:
            if source:
                raise ComposeError(f"{where}: a tmpfs mount takes no source")
            tmpfs = item.get("tmpfs") or {}
            options = {}
            if tmpfs.get("size") is not None:
                options["SizeBytes"] = memory_bytes(tmpfs["size"])
            if tmpfs.get("mode") is not None:
                options["Mode"] = tmpfs["mode"]
            if options:
                mount["TmpfsOptions"] = options
        return mount

    @staticmethod
    def _short_volume(text: str, where: str) -> dict:
        """``data:/var/lib/x:ro``, ``./conf:/etc/x``, ``/cache`` -> the long syntax."""
        parts = text.split(":")
        if len(parts) == 1:
            return {"type": "volume", "target": parts[0]}
        if len(parts) > 3 or not parts[0] or not parts[1]:
            raise ComposeError(f"{where}: invalid volume specification {text!r}")
        source, target = parts[0], parts[1]
        modes = parts[2].split(",") if len(parts) == 3 else []
        unknown = [m for m in modes if m not in ("ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared",
                                                 "rshared", "slave", "rslave")]
        if unknown:
            raise ComposeError(f"{where}: invalid mode {unknown[0]!r} in {text!r}")
        bind = source.startswith(("/", ".", "~"))
        item = {"type": "bind" if bind else "volume", "source": source, "target": target, "read_only": "ro" in modes}
        if "nocopy" in modes:
            item["volume"] = {"nocopy": True}
        propagation = [m for m in modes if m.endswith(("private", "shared", "slave"))]
        if bind and propagation:
            item["bind"] = {"propagation": propagation[-1]}
        return item

    def file_reference(self, kind: str, item, where: str, id_key: str, name_key: str) -> dict:
        item = {"source": item} if isinstance(item, str) else item
        source = item["source"]
        if (kind, source) not in self.refs:
            raise ComposeError(f"{where}: undefined {kind[:-1]} {source!r}")
        return {"File": {"Name": item.get("target") or source, "UID": item.get("uid", "0"),
                         "GID": item.get("gid", "0"), "Mode": item.get("mode", 0o444)},
                id_key: "", name_key: self.refs[(kind, source)]}

    def networks(self, name: str, service: dict, where: str) -> list[dict]:
        wanted = service.get("networks")
        if not wanted:
            wanted = {DEFAULT_NETWORK: None}
        elif isinstance(wanted, list):
            wanted = {key: None for key in wanted}
        attachments = []
        for key, options in wanted.items():
            target = self.network(key, f"{where}.networks")
            attachments.append({"Target": target, "Aliases": [name, *((options or {}).get("aliases") or ())]})
        return sorted(attachments, key=lambda a: a["Target"])

    @staticmethod
    def resources(resources: dict) -> dict:
        result = {}
        for key, field_name in (("limits", "Limits"), ("reservations", "Reservations")):
            given = resources.get(key) or {}
            part = {}
            if given.get("cpus") is not None:
                part["NanoCPUs"] = nano_cpus(given["cpus"])
            if given.get("memory") is not None:
                part["MemoryBytes"] = memory_bytes(given["memory"])
            if given.get("pids") is not None:
                part["Pids"] = given["pids"]
            if part:
                result[field_name] = part
        return result

    @staticmethod
    def restart_policy(policy: dict | None, restart: str | None) -> dict:
        """``deploy.restart_policy``, else Docker's reading of the ``restart`` key (``no``, ``always``, ``on-failure:3``)."""
        if policy is not None:
            result = {"Condition": policy.get("condition", "any")}
            for key, field_name in (("delay", "Delay"), ("window", "Window")):
                if policy.get(key) is not None:
                    result[field_name] = duration_ns(policy[key])
            if policy.get("max_attempts") is not None:
                result["MaxAttempts"] = policy["max_attempts"]
            return result
        if not restart:
            return {}
        condition, _sep, attempts = str(restart).partition(":")
        if condition in ("no", "none"):
            return {"Condition": "none"}
        if condition in ("always", "unless-stopped"):
            return {"Condition": "any"}
        if condition == "on-failure":
            return {"Condition": "on-failure", **({"MaxAttempts": int(attempts)} if attempts.isdigit() else {})}
        return {}

    @staticmethod
    def placement(placement: dict) -> dict:
        result = {}
        if placement.get("constraints"):
            result["Constraints"] = list(placement["constraints"])
        if placement.get("preferences"):
            result["Preferences"] = [{"Spread": {"SpreadDescriptor": p["spread"]}} for p in placement["preferences"]]
        if placement.get("max_replicas_per_node"):
            result["MaxReplicas"] = placement["max_replicas_per_node"]
        return result

    @staticmethod
    def mode(deploy: dict, where: str) -> dict:
        if deploy.get("mode", "replicated") == "global":
            if deploy.get("replicas") is not None:
                raise ComposeError(f"{where}.deploy.replicas: replicas can only be used with replicated mode")
            return {"Global": {}}
        return {"Replicated": {"Replicas": deploy.get("replicas", 1)}}

    @staticmethod
    def update_config(config: dict) -> dict:
        result = {"Parallelism": config.get("parallelism", 1)}
        for key, field_name in (("delay", "Delay"), ("monitor", "Monitor")):
            if config.get(key) is not None:
                result[field_name] = duration_ns(config[key])
        for key, field_name in (("failure_action", "FailureAction"), ("max_failure_ratio", "MaxFailureRatio"),
                                ("order", "Order")):
            if config.get(key) is not None:
                result[field_name] = config[key]
        return result

    @staticmethod
    def endpoint(service: dict, deploy: dict, where: str) -> dict:
        mode = deploy.get("endpoint_mode", "vip")
        ports = _ports(service.get("ports"))
        if mode == "dnsrr" and any(p["PublishMode"] == "ingress" for p in ports):
            raise ComposeError(f"{where}.ports: a port published with ingress mode can't be used with "
                               "endpoint_mode dnsrr (use mode: host)")
        return {"Mode": mode, "Ports": ports}


def convert(document: dict, namespace: str, workdir: Path, environ: dict | None = None) -> StackPlan:
    """A validated compose document -> the :class:`StackPlan` of stack ``namespace`` (files relative to ``workdir``)."""
    return Converter(document, namespace, Path(workdir), dict(os.environ if environ is None else environ)).plan()
