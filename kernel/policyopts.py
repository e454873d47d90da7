"""Parse the policy and metadata flags of ``run``/``create`` (and ``logs``) as Docker does: health checks,
restart and log policies, detach keys, label files, exposed ports, platform, Go durations and times."""

from __future__ import annotations

import re
from pathlib import Path

from pallet.kernel.errors import UsageError
from pallet.kernel.runopts import port_range, parse_labels


def parse_label_files(paths) -> dict[str, str]:
    """``--label-file``: one ``key=value`` a line, ``#`` comments (given labels override these)."""
    labels = {}
    for path in paths or ():
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
        labels.update(parse_labels([line.strip() for line in lines if line.strip() and not line.startswith("#")]))
    return labels


def parse_expose(specs) -> dict[str, dict]:
    """``--expose 80``, ``--expose 7000-7002/udp`` -> ExposedPorts keys."""
    exposed = {}
    for spec in specs or ():
        port, _sep, proto = spec.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise UsageError(f"invalid proto: {proto}")
        for number in port_range(port, spec):
            exposed[f"{number}/{proto}"] = {}
    return exposed


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def parse_duration(value: str | None, flag: str) -> int:
    """Go's time.ParseDuration (``1m30s``, ``500ms``, ``0``) -> nanoseconds."""
    if value in (None, "", "0"):
        return 0
    if not re.fullmatch(f"(?:{_DURATION.pattern})+", value):
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: time: invalid duration "{value}"')
    return int(sum(float(n) * _DURATION_NS[unit] for n, unit in _DURATION.findall(value)))


def parse_healthcheck(cmd: str | None, interval, timeout, start_period, start_interval, retries,
                      disabled: bool) -> dict | None:
    """The health flags -> Docker's HealthConfig (``{"Test": ["NONE"]}`` for --no-healthcheck)."""
    durations = {"Interval": parse_duration(interval, "--health-interval"),
                 "Timeout": parse_duration(timeout, "--health-timeout"),
                 "StartPeriod": parse_duration(start_period, "--health-start-period"),
                 "StartInterval": parse_duration(start_interval, "--health-start-interval")}
    if disabled:
        if cmd or any(durations.values()) or retries:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    given = {"Interval": interval, "Timeout": timeout, "StartPeriod": start_period, "StartInterval": start_interval}
    for key, value in durations.items():
        flag = "--health-" + re.sub(r"(?<!^)([A-Z])", r"-\1", key).lower()
        if given[key] is not None and not value and key != "StartPeriod":
            raise UsageError(f"{flag} cannot be 0: leave it out for the default")
        if value and value < 1_000_000:
            raise UsageError(f"{flag} cannot be less than 1ms")
    if retries is not None and retries < 0:
        raise UsageError("--health-retries cannot be negative")
    if not cmd and not any(durations.values()) and not retries:
        return None
    return {"Test": ["CMD-SHELL", cmd] if cmd else [], **durations, "Retries": retries or 0}


RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


def parse_restart(value: str) -> dict:
    name, _sep, count = (value or "no").partition(":")
    if name not in RESTART_POLICIES:
        raise UsageError(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                         "'on-failure', or 'unless-stopped'")
    if count and (name != "on-failure" or not (count.isascii() and count.isdigit())):
        raise UsageError("invalid restart policy: maximum retry count can only be used with 'on-failure'"
                         if name != "on-failure" else f"invalid restart policy: invalid count '{count}'")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_log_config(driver: str, opts) -> dict:
    """``--log-driver`` and ``--log-opt`` as given; the driver and its options are checked at create time
    (:func:`pallet.kernel.logdrivers.resolve`: the plugins say which exist). No driver: the config's default."""
    config = {}
    for opt in opts or ():
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise UsageError(f'invalid argument "{opt}" for "--log-opt" flag: invalid key value pair format')
        config[key] = value
    return {"Type": driver or "", "Config": config}


_DETACH_KEY = re.compile(r"^(ctrl-[a-z@\[\\\]^_]|[\x20-\x7e])$")


def parse_detach_keys(value: str | None) -> str:
    """``ctrl-p,ctrl-q`` (Docker's default): each key a character or ``ctrl-<letter>``."""
    if value is None or value == "":
        return ""
    for key in value.split(","):
        if not _DETACH_KEY.match(key):
            raise UsageError(f"Unknown character: '{key}'")
    return value


def parse_storage_opts(specs) -> dict[str, str]:
    opts = {}
    for spec in specs or ():
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid storage option {spec!r}: expected KEY=VALUE")
        opts[key] = value
    return opts


def parse_annotations(specs) -> dict[str, str]:
    annotations = {}
    for spec in specs or ():
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UsageError(f'invalid argument "{spec}" for "--annotation" flag: invalid key value pair format')
        annotations[key] = value
    return annotations


def parse_platform(value: str) -> str:
    """``os[/arch[/variant]]`` in lower case (Docker normalises ``Linux/AMD64``)."""
    if not value:
        return ""
    parts = value.lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise UsageError(f'"{value}": unknown operating system or architecture: invalid argument')
    return "/".join(parts)


def parse_attach(streams) -> list[str]:
    result = []
    for stream in streams or ():
        if stream.lower() not in ("stdin", "stdout", "stderr"):
            raise UsageError(f"invalid argument \"{stream}\" for \"-a, --attach\" flag: valid streams are STDIN, "
                             "STDOUT and STDERR")
        result.append(stream.lower())
    return result


def parse_timestamp(value: str, flag: str) -> float:
    """Docker's --since/--until: RFC 3339 (or a date), Unix seconds (``1700000000.5``) or a Go duration
    before now (``42m``) -> Unix seconds."""
    import time

    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        return time.time() - parse_duration(text, flag) / 1e9
    try:
        return log_time(text if "T" in text else text + "T00:00:00Z")
    except ValueError:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: failed to parse value as time or '
                         "duration") from None


def log_time(stamp: str) -> float:
    """An RFC 3339 time with up to nanoseconds (the json-file log's) -> Unix seconds; no zone means UTC."""
    from datetime import datetime

    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", stamp)
    if not match:
        raise ValueError(stamp)
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + (zone if zone and zone != "Z" else "+00:00"))
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)
